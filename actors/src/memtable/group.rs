//! The WAL records of one mailbox turn, queued as one job ([`WalQueue`]).
//!
//! Without it each write was its own WAL job: in relaxed mode (no fdatasync to wait for)
//! the writer thread picked jobs up as fast as they came, about five per group commit, and
//! every group commit cost a `write(2)`, a wake-up of the writer and a `DurableBatch`
//! message back. Now a write's record is encoded into the open group, and the first write
//! of a group sends the actor a [`FlushWal`]; it is handled after the messages already in
//! the mailbox, so the group holds every write of the turn and never waits for work that
//! is not there (at low load a group is one write, queued one message later).
//!
//! Invariants:
//! - Records reach the WAL queue in submission order (sequence order): a group is queued
//!   whole, and before any rotation or sync ([`WalQueue::rotate`], [`WalQueue::sync`]), so
//!   a rotation still follows every write of its generation.
//! - A group is bounded ([`MAX_GROUP_WRITES`], [`MAX_GROUP_BYTES`]): past either it is
//!   queued at once. Its bytes count in `queued_bytes` from the moment they are encoded.
//! - A group the WAL queue refuses is answered at once (`overloaded` when full, `stopped`
//!   when the writer is gone), its bytes released: nothing of it was written. After a
//!   partial write from the loop part of it may be in the file: then `timeout`.
//! - In relaxed mode a group of at most [`MAX_NOW_BYTES`] is first offered to
//!   [`WalWriter::append_now`] (written from this loop when the kernel can take it without
//!   blocking, and acknowledged in the same turn), and only when no job queued on the
//!   writer thread is unfinished (`outstanding`: appends until their `DurableBatch`,
//!   rotations until their `WalRotated`, as the actor sees them), so the log's order and
//!   the order in which groups are applied stay the order of submission, and no write of
//!   a new generation can land in the segment a queued rotation is closing.

use super::*;
use std::sync::atomic::Ordering;

/// Most writes in one group.
pub(super) const MAX_GROUP_WRITES: usize = 512;
/// Most record bytes in one group.
pub(super) const MAX_GROUP_BYTES: usize = 1 << 20;
/// Emptied write lists kept for reuse ([`WalQueue::recycle`]).
const SPARE_WRITE_LISTS: usize = 8;
/// Largest group offered to [`WalWriter::append_now`]. The hop to the writer thread costs
/// the loop about the same per group whatever its size, sealing (a CRC-32 per record) costs
/// it per byte: a small group (requests one at a time per connection: 2-3 KiB under 50
/// connections) is cheaper written here, a larger one (a pipelined burst: 35 KiB under 50
/// connections x16, where the loop is the bound) is sealed and copied by the thread.
/// docs/BENCHMARKS.md has the counts.
pub(super) const MAX_NOW_BYTES: usize = 8 << 10;

/// Queues the open group on the WAL (sent by the actor to itself; see the module docs).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FlushWal;

/// The WAL writer and the group of records not yet queued on it.
pub(super) struct WalQueue {
    wal: WalWriter<Vec<Pending>>,
    bytes: Vec<u8>,
    writes: Vec<Pending>,
    /// Emptied write lists of groups made durable ([`WalQueue::recycle`]).
    spare_writes: Vec<Vec<Pending>>,
    /// A [`FlushWal`] is on its way for the open group.
    flush_sent: bool,
    /// Jobs queued on the writer thread whose completion the actor has not seen yet (see
    /// the module docs).
    outstanding: usize,
    queued_bytes: Arc<AtomicUsize>,
    limit: usize,
    counters: Arc<ActorCounters>,
}

/// What the caller does after [`WalQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// The first write of a group: send [`FlushWal`] (or, before the actor has an address,
    /// call [`WalQueue::flush`]).
    First,
    /// The group is full: call [`WalQueue::flush`] now.
    Full,
    /// Nothing: the group's flush is already on its way.
    Joined,
}

impl WalQueue {
    pub(super) fn new(
        wal: WalWriter<Vec<Pending>>,
        queued_bytes: Arc<AtomicUsize>,
        limit: usize,
        counters: Arc<ActorCounters>,
    ) -> Self {
        WalQueue {
            wal,
            bytes: Vec::new(),
            writes: Vec::new(),
            spare_writes: Vec::new(),
            flush_sent: false,
            outstanding: 0,
            queued_bytes,
            limit,
            counters,
        }
    }

    pub(super) fn writer(&self) -> &WalWriter<Vec<Pending>> {
        &self.wal
    }

    /// Encodes `record` into the open group, or answers `reply` `overloaded` when the bytes
    /// queued for the WAL would pass the limit (then nothing else happens: `None`).
    pub(super) fn push(
        &mut self,
        record: WalRecord,
        hash: KeyHash,
        generation: u64,
        reply: WriteReply,
    ) -> Option<(usize, Pushed)> {
        let start = self.bytes.len();
        wal::encode_record_unsealed(&record, &mut self.bytes);
        let len = self.bytes.len() - start;
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > self.limit {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.bytes.truncate(start);
            self.counters.error();
            reply.send(Err(StorageError::Overloaded {
                queued,
                limit: self.limit,
            }));
            return None;
        }
        let WalRecord { seq, key, value } = record;
        self.writes.push(Pending {
            seq,
            generation,
            key,
            hash,
            value,
            len,
            reply,
        });
        let pushed = if self.writes.len() >= MAX_GROUP_WRITES || self.bytes.len() >= MAX_GROUP_BYTES
        {
            Pushed::Full
        } else if !self.flush_sent {
            self.flush_sent = true;
            Pushed::First
        } else {
            Pushed::Joined
        };
        Some((len, pushed))
    }

    /// Keeps the emptied write list of a durable group for a later group (at most a few,
    /// none longer than a full group), so the hot path does not allocate one per group.
    pub(super) fn recycle(&mut self, mut writes: Vec<Pending>) {
        if self.spare_writes.len() < SPARE_WRITE_LISTS && writes.capacity() <= MAX_GROUP_WRITES {
            writes.clear();
            self.spare_writes.push(writes);
        }
    }

    /// The [`FlushWal`] of the open group arrived: write it from here if the log takes it
    /// without waiting (see the module docs), else queue it. Returns the writes of a group
    /// written here, for the caller to apply and acknowledge (their bytes are released).
    pub(super) fn flush_arrived(&mut self) -> Option<Vec<Pending>> {
        self.flush_sent = false;
        let mut tried = wal::AppendNow::NotNow;
        if self.outstanding == 0 && !self.writes.is_empty() && self.bytes.len() <= MAX_NOW_BYTES {
            tried = self.wal.append_now(&mut self.bytes);
        }
        match tried {
            wal::AppendNow::Written => {
                self.bytes.clear();
                let spare = self.spare_writes.pop().unwrap_or_default();
                let writes = std::mem::replace(&mut self.writes, spare);
                self.release(&writes);
                Some(writes)
            }
            wal::AppendNow::NotNow | wal::AppendNow::Partial => {
                // After a partial write part of the group is in the file until the thread
                // writes over it. A refusal is answered to the group's writes.
                let _ = self.queue(tried == wal::AppendNow::Partial);
                None
            }
        }
    }

    /// Releases the bytes of `writes` from `queued_bytes`: they left the WAL queue.
    fn release(&self, writes: &[Pending]) {
        let len: usize = writes.iter().map(|w| w.len).sum();
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// The actor saw `jobs` queued appends or rotations complete.
    pub(super) fn returned(&mut self, jobs: usize) {
        debug_assert!(
            self.outstanding >= jobs,
            "more WAL jobs returned than queued"
        );
        self.outstanding = self.outstanding.saturating_sub(jobs);
    }

    /// Queues the open group as one WAL job. Refused, its writes are answered with why.
    pub(super) fn flush(&mut self) -> Result<(), wal::SubmitError> {
        self.queue(false)
    }

    /// [`WalQueue::flush`]; `partial`: part of the group may already be in the file (a
    /// partial write from the loop), so a refusal answers its writes `timeout`, not
    /// `overloaded` or `stopped`.
    fn queue(&mut self, partial: bool) -> Result<(), wal::SubmitError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        // The next group starts in buffers the writer thread and the `DurableBatch` handler
        // handed back, else with room for one like this (the vectors go with the job).
        let room = (self.bytes.len().min(64 * 1024), self.writes.len());
        let bytes = std::mem::replace(&mut self.bytes, self.wal.buffer(room.0));
        let spare = self.spare_writes.pop();
        let writes = std::mem::replace(
            &mut self.writes,
            spare.unwrap_or_else(|| Vec::with_capacity(room.1)),
        );
        let Err((e, writes)) = self.wal.append(bytes, writes) else {
            self.outstanding += 1;
            return Ok(());
        };
        self.release(&writes);
        let err = match e {
            _ if partial => StorageError::Indeterminate(format!(
                "{e} after part of the group was written; it may be replayed at restart"
            )),
            wal::SubmitError::Full => StorageError::Overloaded {
                queued: self.queued_bytes.load(Ordering::Relaxed),
                limit: self.limit,
            },
            wal::SubmitError::Stopped => StorageError::Stopped,
        };
        for w in writes {
            self.counters.error();
            w.reply.send(Err(err.clone()));
        }
        Err(e)
    }

    /// Queues the open group, then a rotation behind it.
    pub(super) fn rotate(
        &mut self,
        done: Box<dyn FnOnce(Result<u64, WalError>) + Send>,
    ) -> Result<(), wal::SubmitError> {
        self.flush()?;
        self.wal.rotate(done)?;
        self.outstanding += 1;
        Ok(())
    }

    /// Queues the open group, then a sync of everything written.
    pub(super) fn sync(&mut self, done: wal::Done) -> Result<(), wal::SubmitError> {
        self.flush()?;
        self.wal.sync(done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::tests::{open_with, Gate};
    use super::*;
    use std::sync::mpsc as std_mpsc;

    fn write(key: String) -> Write {
        Write {
            key: key.into_bytes(),
            value: Some(b"v".to_vec()),
        }
    }

    /// The writes of one mailbox turn are one WAL job: with the WAL writer held inside a
    /// sync and room for two jobs in its queue, a hundred writes sent at once are all taken
    /// (one job each would have overflowed the queue) and become durable as one batch.
    #[actix_rt::test]
    async fn the_writes_of_one_turn_are_one_wal_job() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        let config = MemtableConfig {
            wal_queue_jobs: 2,
            ..crate::memtable::tests::config(dir.path(), 1 << 20, 1 << 20)
        };
        let addr = open_with(gate.clone(), config).start();
        addr.send(write("first".into())).await.unwrap().unwrap();
        let (entered_tx, entered) = std_mpsc::channel();
        let (open_gate, open_rx) = std_mpsc::channel();
        gate.close(entered_tx, open_rx);
        let held = tokio::spawn(addr.send(write("held".into())));
        tokio::task::spawn_blocking(move || entered.recv().unwrap())
            .await
            .unwrap();
        let before = addr.send(GetMemtableStats).await.unwrap().wal_batches;
        // Queued in the mailbox before the actor runs again: one turn.
        let asks: Vec<_> = (0..100)
            .map(|i| addr.send(write(format!("k{i:03}"))))
            .collect();
        tokio::task::yield_now().await;
        open_gate.send(()).unwrap();
        held.await.unwrap().unwrap().unwrap();
        for (i, ask) in asks.into_iter().enumerate() {
            let r = ask.await.unwrap();
            assert!(r.is_ok(), "write {i}: {r:?}");
        }
        let after = addr.send(GetMemtableStats).await.unwrap().wal_batches;
        assert_eq!(
            after - before,
            2,
            "the held batch, then the turn's one group"
        );
    }

    /// A relaxed group is written from the loop only when no job the queue put on the writer
    /// thread is unfinished as the actor has seen it (`returned`), whether or not the thread
    /// itself is done: a queued append, then a queued rotation, each keep it on the thread.
    /// The recorder's files take non-blocking writes in a cycle: a partial write (the group
    /// goes to the thread), then whole ones.
    #[test]
    fn groups_are_written_from_the_loop_only_when_no_queued_job_is_unfinished() {
        let root = tempfile::tempdir().unwrap();
        let io = Arc::new(crate::crash_sim::RecordingIo::new(root.path()));
        let dir = root.path().join("wal");
        wal::recover(io.as_ref(), &dir).unwrap();
        let (tx, batches) = std_mpsc::channel();
        let sink: wal::DurableSink<Vec<Pending>> = Box::new(move |groups, r| {
            tx.send((groups.len(), r.is_ok())).unwrap();
        });
        let relaxed = Durability::Relaxed {
            interval: std::time::Duration::from_secs(3600),
        };
        let writer = WalWriter::start(io, &dir, 1, relaxed, 16, sink).unwrap();
        let counters = Arc::new(ActorCounters::default());
        let mut q = WalQueue::new(writer, Arc::new(AtomicUsize::new(0)), 1 << 20, counters);
        let mut replies = Vec::new();
        let mut push = |q: &mut WalQueue, seq: u64| {
            let (reply, rx) = oneshot::channel();
            let key = format!("k{seq}").into_bytes();
            let hash = KeyHash::of(&key);
            let value = Some(vec![b'v'; 100]);
            let record = WalRecord { seq, key, value };
            q.push(record, hash, 0, WriteReply::Channel(reply)).unwrap();
            replies.push(rx);
        };
        // Waits for the thread's batch, then for a sync behind it: the thread is then idle
        // (its scheduled sync is an hour away), so the tail is free for the loop.
        let thread_done = |q: &mut WalQueue| {
            assert_eq!(batches.recv().unwrap(), (1, true));
            let (tx, synced) = std_mpsc::channel();
            q.sync(Box::new(move |r| tx.send(r.is_ok()).unwrap()))
                .unwrap();
            assert!(synced.recv().unwrap());
        };
        // 1: no preallocated room yet: the thread writes it (and makes room).
        push(&mut q, 1);
        assert!(q.flush_arrived().is_none());
        thread_done(&mut q);
        // 2: the thread is done with 1, but the actor has not seen it.
        push(&mut q, 2);
        assert!(q.flush_arrived().is_none());
        thread_done(&mut q);
        q.returned(2);
        // 3: a partial write from the loop; the group goes to the thread.
        push(&mut q, 3);
        assert!(q.flush_arrived().is_none());
        thread_done(&mut q);
        q.returned(1);
        // 4: written from the loop.
        push(&mut q, 4);
        let written = q.flush_arrived().expect("written from the loop");
        assert_eq!(written.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![4]);
        // 5: a rotation is queued and not yet seen complete.
        let (tx, rotated) = std_mpsc::channel();
        q.rotate(Box::new(move |r| tx.send(r.unwrap()).unwrap()))
            .unwrap();
        assert_eq!(
            q.outstanding, 1,
            "the rotation counts until it is seen complete"
        );
        assert_eq!(rotated.recv().unwrap(), 2);
        push(&mut q, 5);
        assert!(q.flush_arrived().is_none(), "a rotation is outstanding");
        thread_done(&mut q);
        q.returned(2);
        // 6: the new segment's file starts its cycle over: a partial write.
        push(&mut q, 6);
        assert!(q.flush_arrived().is_none());
        thread_done(&mut q);
        q.returned(1);
        push(&mut q, 7);
        assert!(q.flush_arrived().is_some(), "written from the loop again");
        drop(q);
        let recovered = wal::recover(&crate::engine::io::RealIo, &dir).unwrap();
        let seqs: Vec<u64> = recovered.records.iter().map(|r| r.seq).collect();
        assert_eq!(
            (recovered.segments, seqs),
            (vec![1, 2], vec![1, 2, 3, 4, 5, 6, 7])
        );
    }

    /// Emptied write lists are kept for later groups: at most `SPARE_WRITE_LISTS`, and
    /// none longer than a full group; the next flush takes one of them.
    #[test]
    fn durable_groups_write_lists_are_reused_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let sink: wal::DurableSink<Vec<Pending>> = Box::new(|_, _| {});
        let writer = WalWriter::start(
            crate::engine::io::real(),
            dir.path(),
            1,
            Durability::Sync,
            16,
            sink,
        )
        .unwrap();
        let counters = Arc::new(ActorCounters::default());
        let mut q = WalQueue::new(writer, Arc::new(AtomicUsize::new(0)), 1 << 20, counters);
        q.recycle(Vec::with_capacity(MAX_GROUP_WRITES + 1));
        assert!(q.spare_writes.is_empty(), "longer than a group: dropped");
        for _ in 0..SPARE_WRITE_LISTS + 2 {
            q.recycle(Vec::with_capacity(32));
        }
        assert_eq!(q.spare_writes.len(), SPARE_WRITE_LISTS);
        let (reply, _rx) = oneshot::channel();
        let record = WalRecord {
            seq: 1,
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        };
        q.push(record, KeyHash::of(b"k"), 0, WriteReply::Channel(reply))
            .unwrap();
        q.flush().unwrap();
        assert_eq!(
            q.spare_writes.len(),
            SPARE_WRITE_LISTS - 1,
            "the flush took one"
        );
        assert_eq!(q.writes.capacity(), 32);
    }
}
