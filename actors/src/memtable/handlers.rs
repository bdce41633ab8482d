//! Message handlers of the Memtable actor: the write path (submit, seal, stall), the WAL's
//! completions, flush completions, and reads that fall through to the SSTables.

use super::*;
use crate::engine::read::EntryIter;
use reads::{DiskReads, QueueFull};
use std::sync::atomic::Ordering;
use tokio::sync::OwnedSemaphorePermit;

/// The WAL writer's per-batch callback: releases the batch's queued bytes and hands the
/// batch to the actor. Runs on the writer thread.
pub(super) fn durable_sink(
    self_addr: SelfAddr,
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<ActorCounters>,
) -> wal::DurableSink<Pending> {
    Box::new(move |writes: Vec<Pending>, result: Result<(), WalError>| {
        let bytes: usize = writes.iter().map(|w| w.len).sum();
        queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(addr) = self_addr.get() {
            counters.sent();
            // Bounded by the WAL queue: a batch holds at most `wal_queue_jobs` writes.
            addr.do_send(DurableBatch { writes, result });
        }
        // Before the actor started nothing can have been appended, so no reply is lost.
    })
}

fn lock(h: &wal::Health) -> std::sync::MutexGuard<'_, Option<String>> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemtableActor {
    fn poisoned(&self) -> Option<String> {
        self.wal
            .poisoned()
            .or_else(|| lock(&self.engine_poison).clone())
            .or_else(|| self.tables.poisoned())
    }

    /// Writes wait while the flusher is behind, and behind any write already waiting (so a
    /// connection's writes keep their order).
    fn must_stall(&self) -> bool {
        !self.stalled.is_empty() || self.sealed.len() >= self.config.max_sealed
    }

    fn accept(&mut self, write: Write, reply: oneshot::Sender<Result<u64, StorageError>>) {
        if let Some(reason) = self.poisoned() {
            self.counters.error();
            let _ = reply.send(Err(StorageError::Poisoned(reason)));
            return;
        }
        if self.must_stall() {
            if self.stalled.len() >= self.config.max_stalled_writes {
                self.counters.error();
                let _ = reply.send(Err(StorageError::Overloaded {
                    queued: self.queued_bytes.load(Ordering::Relaxed),
                    limit: self.config.max_queued_bytes,
                }));
            } else {
                self.write_stalls += 1;
                self.stalled.push_back(Stalled { write, reply });
            }
            return;
        }
        self.submit(write, reply);
    }

    fn submit(&mut self, write: Write, reply: oneshot::Sender<Result<u64, StorageError>>) {
        let seq = self.next_seq;
        let record = WalRecord {
            seq,
            key: write.key,
            value: write.value,
        };
        let mut bytes =
            Vec::with_capacity(32 + record.key.len() + record.value.as_ref().map_or(0, Vec::len));
        wal::encode_record(&record, &mut bytes);
        let len = bytes.len();
        let limit = self.config.max_queued_bytes;
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > limit {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.counters.error();
            let _ = reply.send(Err(StorageError::Overloaded { queued, limit }));
            return;
        }
        let WalRecord { key, value, .. } = record;
        let pending = Pending {
            seq,
            generation: self.generation,
            key,
            value,
            len,
            reply,
        };
        if let Err((e, pending)) = self.wal.append(bytes, pending) {
            // Nothing was queued: answer the writer with why.
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.counters.error();
            let err = match e {
                wal::SubmitError::Full => StorageError::Overloaded {
                    queued: self.queued_bytes.load(Ordering::Relaxed),
                    limit,
                },
                wal::SubmitError::Stopped => StorageError::Stopped,
            };
            let _ = pending.reply.send(Err(err));
            return;
        }
        self.next_seq += 1;
        self.active_submitted += len;
        if self.active_submitted >= self.config.memtable_bytes
            || std::mem::take(&mut self.seal_after_rotation)
        {
            self.seal();
        }
    }

    /// Freezes the active generation behind a WAL rotation (see the module doc). A no-op
    /// while a rotation is already in progress or nothing was written.
    pub(super) fn seal(&mut self) {
        if self.closing.is_some() || self.active_submitted == 0 {
            return;
        }
        let Some(addr) = self.self_addr.get().cloned() else {
            return;
        };
        let old = std::mem::take(&mut self.active);
        self.closing = Some(old);
        self.generation += 1;
        let submitted = std::mem::take(&mut self.active_submitted);
        let queued = self.wal.rotate(Box::new(move |result| {
            addr.do_send(WalRotated { result });
        }));
        if let Err(e) = queued {
            // Undo: nothing was written to the new generation yet (we are single-threaded).
            log::warn!("cannot queue a WAL rotation ({e}); will retry on the next write");
            self.active = self.closing.take().unwrap_or_default();
            self.generation -= 1;
            self.active_submitted = submitted;
            return;
        }
        self.seals += 1;
    }

    fn resume_stalled(&mut self) {
        while self.sealed.len() < self.config.max_sealed {
            let Some(s) = self.stalled.pop_front() else {
                return;
            };
            self.submit(s.write, s.reply);
        }
    }

    /// Memory sources newest first: active, closing, sealed (newest to oldest).
    fn memory(&self) -> impl Iterator<Item = &MemTable> {
        std::iter::once(&self.active)
            .chain(self.closing.as_ref())
            .chain(self.sealed.iter().rev().map(|(t, _)| t.as_ref()))
    }
}

impl Handler<Write> for MemtableActor {
    type Result = ResponseFuture<Result<u64, StorageError>>;

    fn handle(&mut self, msg: Write, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let (tx, rx) = oneshot::channel();
        self.accept(msg, tx);
        Box::pin(async move { rx.await.unwrap_or(Err(StorageError::Stopped)) })
    }
}

impl Handler<DurableBatch> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self>) {
        self.counters.handled();
        if let Err(e) = msg.result {
            self.counters.error();
            let err = match e {
                WalError::Indeterminate(_) => StorageError::Indeterminate(e.to_string()),
                e => StorageError::Poisoned(e.to_string()),
            };
            for w in msg.writes {
                let _ = w.reply.send(Err(err.clone()));
            }
            return;
        }
        for w in msg.writes {
            let table = if w.generation == self.generation {
                &mut self.active
            } else if let Some(closing) = self.closing.as_mut() {
                closing
            } else {
                // Cannot happen: the closing table lives until its rotation, which the
                // writer thread completes only after this batch.
                log::error!(
                    "BUG: durable write of generation {} has no table",
                    w.generation
                );
                let _ = w.reply.send(Err(StorageError::Stopped));
                continue;
            };
            table.apply(w.key, w.seq, w.value);
            let _ = w.reply.send(Ok(w.seq));
        }
    }
}

impl Handler<WalRotated> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: WalRotated, ctx: &mut Context<Self>) {
        self.counters.handled();
        let Some(table) = self.closing.take() else {
            log::error!("BUG: WAL rotated with no closing memtable");
            return;
        };
        let table = Arc::new(table);
        match msg.result {
            Ok(new_segment) => {
                let segment = new_segment - 1;
                self.sealed.push_back((table.clone(), segment));
                match &self.flusher {
                    Some(f) => f.do_send(FlushMemtable {
                        table,
                        segment,
                        reply_to: ctx.address(),
                    }),
                    None => log::warn!("no flusher connected; sealed memtable stays in memory"),
                }
            }
            Err(e) => {
                // Keep serving its data from memory; writes are refused from now on.
                self.counters.error();
                log::error!("WAL rotation failed: {e}");
                self.sealed.push_back((table, 0));
            }
        }
        // A write burst may have filled the new generation while the rotation ran.
        if self.active_submitted >= self.config.memtable_bytes
            || std::mem::take(&mut self.seal_after_rotation)
        {
            self.seal();
        }
    }
}

impl Handler<TableFlushed> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: TableFlushed, _: &mut Context<Self>) {
        self.counters.handled();
        match self.sealed.front() {
            Some((_, seg)) if *seg == msg.segment => {
                self.sealed.pop_front();
                self.flushed += 1;
                let flushed = self.flushed;
                for (_, tx) in self.flush_waiters.extract_if(.., |(t, _)| *t <= flushed) {
                    let _ = tx.send(Ok(()));
                }
            }
            other => log::error!(
                "BUG: flushed segment {} but the oldest sealed table is {:?}",
                msg.segment,
                other.map(|(_, s)| s)
            ),
        }
        self.resume_stalled();
    }
}

impl Handler<FlushFailed> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: FlushFailed, _: &mut Context<Self>) {
        self.counters.handled();
        self.counters.error();
        log::error!("flush failed, refusing writes from now on: {}", msg.reason);
        lock(&self.engine_poison).get_or_insert(msg.reason.clone());
        for s in self.stalled.drain(..) {
            let _ = s
                .reply
                .send(Err(StorageError::Poisoned(msg.reason.clone())));
        }
        for (_, tx) in self.flush_waiters.drain(..) {
            let _ = tx.send(Err(StorageError::Poisoned(msg.reason.clone())));
        }
    }
}

/// The answer to [`Get`]. A memory hit replies at once. A miss hands the caller's reply
/// channel to the disk-read queue, so the worker that reads the tables answers the caller
/// directly and this actor's event loop does nothing more for that read; only when all
/// `max_disk_reads` permits are taken does a small future wait here for one.
pub enum GetResponse {
    Ready(Option<Versioned>),
    Disk {
        key: Vec<u8>,
        reads: DiskReads,
        permits: Arc<Semaphore>,
    },
}

type GetReply = actix::dev::OneshotSender<Result<Option<Versioned>, StorageError>>;

fn to_reply(got: crate::engine::Result<Option<Entry>>) -> Result<Option<Versioned>, StorageError> {
    match got {
        Ok(e) => Ok(e.map(|e| Versioned {
            seq: e.seq,
            value: e.value,
        })),
        Err(e) => {
            log::error!("read failed: {e}");
            Err(StorageError::Read(e.to_string()))
        }
    }
}

/// Queue the lookup; the permit is released once the answer is sent.
fn submit_read(reads: &DiskReads, key: Vec<u8>, permit: OwnedSemaphorePermit, tx: GetReply) {
    let reply = Box::new(move |got| {
        let _ = tx.send(to_reply(got));
        drop(permit);
    });
    if let Err(QueueFull(reply)) = reads.submit(key, reply) {
        // Holding a permit means fewer than `max_disk_reads` lookups are queued.
        reply(Err(crate::engine::EngineError::InvalidArgument(
            "BUG: disk read queue full while holding a permit".into(),
        )));
    }
}

impl actix::dev::MessageResponse<MemtableActor, Get> for GetResponse {
    fn handle(self, _: &mut Context<MemtableActor>, tx: Option<GetReply>) {
        let Some(tx) = tx else {
            return; // sent with do_send: nobody wants the answer
        };
        match self {
            GetResponse::Ready(v) => {
                let _ = tx.send(Ok(v));
            }
            GetResponse::Disk {
                key,
                reads,
                permits,
            } => match permits.clone().try_acquire_owned() {
                Ok(permit) => submit_read(&reads, key, permit, tx),
                Err(_) => {
                    actix::spawn(async move {
                        match permits.acquire_owned().await {
                            Ok(permit) => submit_read(&reads, key, permit, tx),
                            Err(_) => drop(tx.send(Err(StorageError::Stopped))),
                        }
                    });
                }
            },
        }
    }
}

impl Handler<Get> for MemtableActor {
    type Result = GetResponse;

    /// Memory first (active, closing, sealed; newest first); on a miss the SSTables, through
    /// the disk-read queue (see [`GetResponse`]).
    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> GetResponse {
        self.counters.handled();
        if let Some(v) = self.memory().find_map(|t| t.get(&msg.key)) {
            return GetResponse::Ready(Some(v.clone()));
        }
        GetResponse::Disk {
            key: msg.key,
            reads: self.reads.clone(),
            permits: self.disk_reads.clone(),
        }
    }
}

/// The key right after `k` in byte order.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut s = k.to_vec();
    s.push(0);
    s
}

impl Handler<Scan> for MemtableActor {
    type Result = ResponseFuture<Result<ScanResult, StorageError>>;

    fn handle(&mut self, msg: Scan, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let limit = msg.limit.max(1);
        // Take at most `limit` entries from each memory source. A source that hit the limit
        // may hold more keys past its last one, so the merged answer is only complete up to
        // the smallest such last key; the scan stops there and says where to continue.
        let mut sources: Vec<EntryIter> = Vec::new();
        let mut bound: Option<Vec<u8>> = None;
        for t in self.memory() {
            let entries = t.range(msg.start.as_deref(), msg.end.as_deref(), limit);
            if entries.len() == limit {
                let last = &entries[limit - 1].key;
                if bound.as_ref().is_none_or(|b| last < b) {
                    bound = Some(last.clone());
                }
            }
            sources.push(Box::new(entries.into_iter().map(Ok)));
        }
        let end = match (&bound, &msg.end) {
            (Some(b), Some(e)) => Some(successor(b).min(e.clone())),
            (Some(b), None) => Some(successor(b)),
            (None, e) => e.clone(),
        };
        let tables = self.tables.clone();
        let permits = self.disk_reads.clone();
        let start = msg.start;
        Box::pin(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| StorageError::Stopped)?;
            let end2 = end.clone();
            let entries =
                tokio::task::spawn_blocking(move || -> crate::engine::Result<Vec<Entry>> {
                    tables
                        .range(start.as_deref(), end2.as_deref(), sources)?
                        .take(limit)
                        .collect()
                })
                .await
                .map_err(|_| StorageError::Stopped)?
                .map_err(|e| StorageError::Read(e.to_string()))?;
            let next = if entries.len() == limit {
                entries.last().map(|e| successor(&e.key))
            } else if bound.is_some() {
                end // the memory sources were cut short: continue past the bound
            } else {
                None
            };
            Ok(ScanResult { entries, next })
        })
    }
}

impl Handler<Seal> for MemtableActor {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, _: Seal, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        if let Some(reason) = self.poisoned() {
            return Box::pin(async move { Err(StorageError::Poisoned(reason)) });
        }
        let mut target = self.seals;
        if self.closing.is_some() && self.active_submitted > 0 {
            // A rotation is in progress; seal what was written since, right after it.
            self.seal_after_rotation = true;
            target += 1;
        } else {
            self.seal();
            target = self.seals;
        }
        if self.flushed >= target {
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push((target, tx));
        Box::pin(async move { rx.await.unwrap_or(Err(StorageError::Stopped)) })
    }
}

impl Handler<SyncWal> for MemtableActor {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, _: SyncWal, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let (tx, rx) = oneshot::channel();
        let queued = self.wal.sync(Box::new(move |r| {
            let _ = tx.send(r.map_err(|e| StorageError::Poisoned(e.to_string())));
        }));
        Box::pin(async move {
            match queued {
                Ok(()) => rx.await.unwrap_or(Err(StorageError::Stopped)),
                Err(_) => Err(StorageError::Stopped),
            }
        })
    }
}

impl Handler<GetMemtableStats> for MemtableActor {
    type Result = MessageResult<GetMemtableStats>;

    fn handle(&mut self, _: GetMemtableStats, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        MessageResult(MemtableStats {
            active_bytes: self.active.bytes(),
            active_keys: self.active.len(),
            sealed_tables: self.sealed.len() + usize::from(self.closing.is_some()),
            sealed_bytes: self.sealed.iter().map(|(t, _)| t.bytes()).sum::<usize>()
                + self.closing.as_ref().map_or(0, MemTable::bytes),
            stalled_writes_now: self.stalled.len(),
            write_stalls: self.write_stalls,
            seals: self.seals,
            next_seq: self.next_seq,
            wal_fsyncs: self.wal.fsyncs(),
        })
    }
}
