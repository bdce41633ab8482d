//! Message handlers of the Memtable actor: the write path (submit to the WAL; sealing,
//! stalls and flush waiters are decided by the pure `pipeline` and carried out here), the
//! WAL's completions, flush completions, and reads that fall through to the SSTables.

use super::*;
use crate::engine::read::EntryIter;
use pipeline::{Admit, Effect, RotateRefused};
use reads::{DiskReads, QueueFull};
use std::sync::atomic::Ordering;
use tokio::sync::OwnedSemaphorePermit;

/// The WAL writer's per-batch callback: releases the batch's queued bytes and hands the
/// batch to the actor. Runs on the writer thread.
///
/// The sink also holds `exit`, the sending half of [`WalThreadExit`]: the writer thread owns
/// the sink and drops it as the thread ends, which is what `WalThreadExit::wait` sees.
pub(super) fn durable_sink(
    self_addr: SelfAddr,
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<ActorCounters>,
    exit: std::sync::mpsc::Sender<()>,
) -> wal::DurableSink<Vec<Pending>> {
    Box::new(
        move |groups: Vec<Vec<Pending>>, result: Result<(), WalError>| {
            let _owned_until_the_thread_ends = &exit;
            let bytes: usize = groups.iter().flatten().map(|w| w.len).sum();
            queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            if let Some(addr) = self_addr.get() {
                counters.sent();
                // Bounded by the WAL queue: a batch holds at most `wal_queue_jobs` groups of
                // at most `MAX_GROUP_WRITES` writes.
                addr.do_send(DurableBatch { groups, result });
            }
            // Before the actor started nothing can have been appended, so no reply is lost.
        },
    )
}

fn lock(h: &wal::Health) -> std::sync::MutexGuard<'_, Option<String>> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemtableActor {
    fn poisoned(&self) -> Option<String> {
        self.wal
            .writer()
            .poisoned()
            .or_else(|| lock(&self.engine_poison).clone())
            .or_else(|| self.tables.poisoned())
    }

    /// What a stalled write or a `Seal` waiter hears when the pipeline fails: the poison
    /// if there is one, else the WAL writer stopped (the fate of queued writes is unknown).
    fn failure(&self) -> StorageError {
        self.poisoned()
            .map_or(StorageError::Stopped, StorageError::Poisoned)
    }

    /// `hash` is `KeyHash::of(&write.key)`.
    pub(super) fn accept(&mut self, write: Write, hash: KeyHash, reply: WriteReply) {
        if let Some(reason) = self.poisoned() {
            self.counters.error();
            reply.send(Err(StorageError::Poisoned(reason)));
            return;
        }
        match self.pipe.accept(Stalled { write, hash, reply }) {
            Admit::Submit(s) => self.submit(s.write, s.hash, s.reply),
            Admit::Stalled => {}
            Admit::Refused(s) => {
                self.counters.error();
                s.reply.send(Err(StorageError::Overloaded {
                    queued: self.queued_bytes.load(Ordering::Relaxed),
                    limit: self.config.max_queued_bytes,
                }));
            }
        }
    }

    fn submit(&mut self, write: Write, hash: KeyHash, reply: WriteReply) {
        let seq = self.next_seq;
        let record = WalRecord {
            seq,
            key: write.key,
            value: write.value,
        };
        let Some((len, pushed)) = self.wal.push(record, hash, self.pipe.generation(), reply) else {
            return; // over the queued-bytes limit: answered `overloaded`
        };
        match (pushed, self.self_addr.get()) {
            (group::Pushed::Joined, _) => {}
            (group::Pushed::First, Some(me)) => {
                self.counters.sent();
                me.do_send(group::FlushWal);
            }
            // Before the actor has an address (nothing submits then): write or queue it now.
            (group::Pushed::First, None) => {
                if let Some(writes) = self.wal.flush_arrived() {
                    self.written_now(writes);
                }
            }
            (group::Pushed::Full, _) => {
                let _ = self.wal.flush(); // a refusal is answered to its writes
            }
        }
        self.next_seq += 1;
        let fx = self
            .pipe
            .submitted(len, &mut rotator(&mut self.wal, &self.self_addr));
        self.carry_out(fx);
    }

    /// Seals the active memtable if it is full or a `Seal` waits for it (see
    /// [`Pipeline::seal_if_due`]).
    pub(super) fn seal_if_due(&mut self) {
        let fx = self
            .pipe
            .seal_if_due(&mut rotator(&mut self.wal, &self.self_addr));
        self.carry_out(fx);
    }

    /// Carries out the pipeline's effects, in order.
    fn carry_out(&mut self, fx: Vec<Effect<Arc<MemTable>, Stalled, FlushWaiter>>) {
        self.sync_view();
        for e in fx {
            match e {
                Effect::Flush { table, segment } => match (&self.flusher, self.self_addr.get()) {
                    (Some(f), Some(me)) => f.do_send(FlushMemtable {
                        table: Arc::clone(&table),
                        segment,
                        reply_to: me.clone(),
                    }),
                    _ => log::warn!("no flusher connected; sealed memtable stays in memory"),
                },
                Effect::Flushed(tx) => {
                    let _ = tx.send(Ok(()));
                }
                // `submit` never resumes writes, so this recursion is one level deep.
                Effect::Resume(s) => self.submit(s.write, s.hash, s.reply),
                Effect::FailWrite(s) => {
                    self.counters.error();
                    s.reply.send(Err(self.failure()));
                }
                Effect::FailWaiter(tx) => {
                    let _ = tx.send(Err(self.failure()));
                }
            }
        }
    }

    /// Memory sources newest first: active, closing, sealed (newest to oldest).
    pub(super) fn memory(&self) -> impl Iterator<Item = &MemTable> {
        self.pipe.memory().map(|t| &**t)
    }

    /// Publishes the memory tables to readers (`view`) if a seal or a flush changed them
    /// since the last time. Called by every path that changes the pipeline, in the same
    /// turn, so no durable write is applied to a table readers cannot see yet.
    fn sync_view(&mut self) {
        let at = (self.pipe.seals(), self.pipe.flushed());
        if at != self.view_at {
            self.view_at = at;
            self.view.publish(self.pipe.memory().cloned().collect());
        }
    }
}

/// Queues a WAL rotation whose completion comes back as [`WalRotated`].
fn rotator<'a>(
    wal: &'a mut group::WalQueue,
    me: &'a SelfAddr,
) -> impl FnMut() -> Result<(), RotateRefused> + 'a {
    move || {
        // Before the actor starts nothing seals; `started` checks again.
        let Some(addr) = me.get().cloned() else {
            return Err(RotateRefused::Full);
        };
        let done = Box::new(move |result| addr.do_send(WalRotated { result }));
        wal.rotate(done).map_err(|e| match e {
            wal::SubmitError::Full => RotateRefused::Full,
            wal::SubmitError::Stopped => RotateRefused::Stopped,
        })
    }
}

impl Handler<Write> for MemtableActor {
    type Result = ResponseFuture<Result<u64, StorageError>>;

    fn handle(&mut self, msg: Write, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let (tx, rx) = oneshot::channel();
        let hash = KeyHash::of(&msg.key);
        self.accept(msg, hash, WriteReply::Channel(tx));
        Box::pin(async move { rx.await.unwrap_or(Err(StorageError::Stopped)) })
    }
}

impl Handler<DurableBatch> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self>) {
        self.counters.handled();
        self.wal_batches += 1;
        self.wal.returned(msg.groups.len());
        if let Err(e) = msg.result {
            self.counters.error();
            let err = match e {
                WalError::Indeterminate(_) => StorageError::Indeterminate(e.to_string()),
                e => StorageError::Poisoned(e.to_string()),
            };
            for w in msg.groups.into_iter().flatten() {
                w.reply.send(Err(err.clone()));
            }
            // The batch left the WAL queue: a seal the queue refused may fit now (it then
            // fails, and the waiting flushes hear why).
            self.seal_if_due();
            return;
        }
        for group in msg.groups {
            self.apply_group(group);
        }
        // The batch left the WAL queue: a seal the queue refused may fit now.
        self.seal_if_due();
    }
}

impl MemtableActor {
    /// A group this loop wrote to the WAL itself ([`group::WalQueue::flush_arrived`]): as
    /// durable as one the writer thread completed (relaxed mode), applied and acknowledged
    /// in this turn.
    fn written_now(&mut self, writes: Vec<Pending>) {
        self.wal_batches += 1;
        self.wal_batches_now += 1;
        self.apply_group(writes);
    }

    /// Applies a durable group's writes in log order and keeps its emptied list.
    fn apply_group(&mut self, mut group: Vec<Pending>) {
        for w in group.drain(..) {
            self.apply_durable(w);
        }
        self.wal.recycle(group);
    }

    /// Applies a write the WAL made durable to its generation's table and acknowledges it.
    fn apply_durable(&mut self, w: Pending) {
        let Some(table) = self.pipe.durable(w.generation, w.len) else {
            // Cannot happen: the closing table lives until its rotation, which the
            // writer thread completes only after this batch.
            log::error!(
                "BUG: durable write of generation {} has no table",
                w.generation
            );
            return w.reply.send(Err(StorageError::Stopped));
        };
        table.apply(w.key, w.hash, w.seq, w.value);
        w.reply.send(Ok(w.seq));
    }
}

impl Handler<WalRotated> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: WalRotated, _: &mut Context<Self>) {
        self.counters.received();
        self.wal.returned(1);
        let new_segment = match msg.result {
            Ok(segment) => Some(segment),
            Err(e) => {
                // Its table stays in memory; writes, stalled writes and flushes fail.
                self.counters.error();
                log::error!("WAL rotation failed: {e}");
                None
            }
        };
        let fx = self
            .pipe
            .rotation_completed(new_segment, &mut rotator(&mut self.wal, &self.self_addr));
        self.carry_out(fx);
    }
}

impl Handler<group::FlushWal> for MemtableActor {
    type Result = ();

    fn handle(&mut self, _: group::FlushWal, _: &mut Context<Self>) {
        self.counters.handled();
        if let Some(writes) = self.wal.flush_arrived() {
            self.written_now(writes);
            // Its bytes left the WAL queue: a seal the queue refused may fit now.
            self.seal_if_due();
        }
    }
}

impl Handler<TableFlushed> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: TableFlushed, _: &mut Context<Self>) {
        self.counters.received();
        let fx = self.pipe.flush_completed(msg.segment);
        self.carry_out(fx);
    }
}

impl Handler<FlushFailed> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: FlushFailed, _: &mut Context<Self>) {
        self.counters.received();
        self.counters.error();
        log::error!("flush failed, refusing writes from now on: {}", msg.reason);
        lock(&self.engine_poison).get_or_insert(msg.reason.clone());
        let fx = self.pipe.failed();
        self.carry_out(fx);
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
    got.map(|e| {
        e.map(|e| Versioned {
            seq: e.seq,
            value: e.value,
        })
    })
    .map_err(lookup_error)
}

/// A tables lookup that failed (corruption, I/O error): logged, and reported by file.
pub(super) fn lookup_error(e: crate::engine::EngineError) -> StorageError {
    log::error!("read failed: {e}");
    StorageError::Read(e.to_string())
}

/// Where a key's newest durable version is.
pub(super) enum Lookup<V> {
    /// Answered without I/O (`None`: absent, or a tombstone): from memory, the bloom
    /// filters or the block cache.
    Memory(V),
    /// Possibly in the SSTables: read them off the event loop.
    Disk,
}

impl MemtableActor {
    /// Memory first (active, closing, sealed; newest first), then the tables as far as
    /// their bloom filters and the block cache answer without reading a file. Tables change
    /// only by a flush (whose memtable stays in memory until its table is installed) or a
    /// compaction (same entries), so the answer is the newest durable version.
    fn lookup_versioned(&mut self, key: &[u8]) -> Lookup<Option<Versioned>> {
        self.lookup_with(key, KeyHash::of(key), None, |v| {
            v.map(|(seq, value)| Versioned {
                seq,
                value: value.map(<[u8]>::to_vec),
            })
        })
    }

    /// The walk of [`lookup_versioned`](Self::lookup_versioned), handing `f` the newest
    /// version's sequence number and value (`None`: a tombstone) where they lie, in a
    /// memory table or a cached block, with no copy; `None` when the key is absent.
    /// [`Lookup::Disk`] when the tables must be read off the event loop: `f` was not called.
    pub(super) fn lookup_with<R>(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        digest: Option<&blake3::Hash>,
        f: impl FnOnce(Option<(u64, Option<&[u8]>)>) -> R,
    ) -> Lookup<R> {
        let mut f = Some(f);
        let mut call = |v: Option<(u64, Option<&[u8]>)>| (f.take().expect("called once"))(v);
        if let Some(r) = self.in_memory_with(key, hash, |seq, value| call(Some((seq, value)))) {
            return Lookup::Memory(r);
        }
        match self
            .tables
            .get_cached_with(key, digest, |e| call(e.map(|e| (e.seq, e.value))))
        {
            Some(Ok(r)) => Lookup::Memory(r),
            // Errors are reported by the disk path, which names the file.
            Some(Err(_)) | None => {
                self.disk_lookups += 1;
                Lookup::Disk
            }
        }
    }

    /// `f` of the key's newest version in memory (sequence number, value; `None`: a
    /// tombstone) under its table's read lock, or `None` (`f` not called) when memory does
    /// not hold the key.
    pub(super) fn in_memory_with<R>(
        &self,
        key: &[u8],
        hash: KeyHash,
        f: impl FnOnce(u64, Option<&[u8]>) -> R,
    ) -> Option<R> {
        let mut f = Some(f);
        self.memory().find_map(|t| {
            t.with(key, hash, |v| {
                (f.take().expect("called once"))(v.seq, v.value.as_deref())
            })
        })
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
        // Counted as sent by the coordinator, its one sender.
        self.counters.handled();
        match self.lookup_versioned(&msg.key) {
            Lookup::Memory(v) => GetResponse::Ready(v),
            Lookup::Disk => GetResponse::Disk {
                key: msg.key,
                reads: self.reads.clone(),
                permits: self.disk_reads.clone(),
            },
        }
    }
}

/// The key right after `k` in byte order.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut s = k.to_vec();
    s.push(0);
    s
}

/// Bounds one scan page. `ranges` are the memory sources' entries in the scanned range
/// (key order, tombstones included), at most `limit` each. A source that holds `limit` may
/// have more keys past its last one, so the page is complete only below the smallest such
/// last key: returns every source cut to keys below the page's end (just past that key, or
/// `end`), that end, and whether the page was cut short there.
///
/// Every source is cut, not only the tables (which are read up to the returned end): an
/// entry of another memory source past the bound would be merged in ahead of table keys
/// below it that were never read, and `next` would skip those keys.
pub(super) fn bound_page(
    mut ranges: Vec<Vec<Entry>>,
    limit: usize,
    end: Option<Vec<u8>>,
) -> (Vec<Vec<Entry>>, Option<Vec<u8>>, bool) {
    let bound = ranges
        .iter()
        .filter(|r| r.len() >= limit)
        .filter_map(|r| r.last())
        .map(|e| &e.key)
        .min();
    let Some(bound) = bound else {
        return (ranges, end, false);
    };
    let page_end = match end {
        Some(e) => successor(bound).min(e),
        None => successor(bound),
    };
    for r in &mut ranges {
        let keep = r.partition_point(|e| e.key < page_end);
        r.truncate(keep);
    }
    (ranges, Some(page_end), true)
}

/// Where the scan continues after a page of `entries` (the merge of the sources
/// [`bound_page`] returned, cut short there if `cut`, up to `end`).
pub(super) fn page_next(
    entries: &[Entry],
    limit: usize,
    cut: bool,
    end: Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    if entries.len() == limit {
        entries.last().map(|e| successor(&e.key))
    } else if cut {
        end // the memory sources were cut short: continue past the bound
    } else {
        None
    }
}

impl Handler<Scan> for MemtableActor {
    type Result = ResponseFuture<Result<ScanResult, StorageError>>;

    fn handle(&mut self, msg: Scan, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let limit = msg.limit.max(1);
        // Take at most `limit` entries from each memory source, then bound the page.
        let ranges = self
            .memory()
            .map(|t| t.range(msg.start.as_deref(), msg.end.as_deref(), limit))
            .collect();
        let (ranges, end, cut) = bound_page(ranges, limit, msg.end);
        let sources: Vec<EntryIter> = ranges
            .into_iter()
            .map(|r| Box::new(r.into_iter().map(Ok)) as EntryIter)
            .collect();
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
            let next = page_next(&entries, limit, cut, end);
            Ok(ScanResult { entries, next })
        })
    }
}

impl Handler<Seal> for MemtableActor {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, _: Seal, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        if let Some(reason) = self.poisoned() {
            return Box::pin(async move { Err(StorageError::Poisoned(reason)) });
        }
        let (tx, rx) = oneshot::channel();
        let fx = self
            .pipe
            .seal_requested(tx, &mut rotator(&mut self.wal, &self.self_addr));
        self.carry_out(fx);
        Box::pin(async move { rx.await.unwrap_or(Err(StorageError::Stopped)) })
    }
}

impl Handler<SyncWal> for MemtableActor {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, _: SyncWal, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
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
        self.counters.received();
        MessageResult(MemtableStats {
            active_bytes: self.pipe.active().bytes(),
            active_keys: self.pipe.active().len(),
            sealed_tables: self.pipe.frozen().count(),
            sealed_bytes: self.pipe.frozen().map(|t| t.bytes()).sum(),
            stalled_writes_now: self.pipe.stalled_now(),
            write_stalls: self.pipe.write_stalls(),
            seals: self.pipe.seals(),
            next_seq: self.next_seq,
            wal_fsyncs: self.wal.writer().fsyncs(),
            wal_batches: self.wal_batches,
            wal_batches_now: self.wal_batches_now,
            disk_lookups: self.disk_lookups,
        })
    }
}
