//! The Memtable actor: owns the active and sealed memtables and the WAL writer, and answers
//! reads by looking through memory first and then (off the event loop) the SSTables.
//!
//! Receives: [`Write`] (put or delete), [`Get`], [`Scan`], [`SyncWal`], [`Seal`],
//! [`GetMemtableStats`]; internally `FlushWal` (sent to itself: write or queue the turn's
//! group of WAL records), `DurableBatch` and `WalRotated` from the WAL writer thread and [`TableFlushed`] / [`FlushFailed`] from the Flusher. Emits [`FlushMemtable`] to
//! the Flusher.
//!
//! Write path: a write gets the next sequence number and the current memtable generation, is
//! encoded into the mailbox turn's group of records (`group`), which is queued on the WAL
//! writer thread as one job (or, in relaxed mode, written by this actor with a write that
//! cannot block, when the kernel takes it: `wal::WalWriter::append_now`), and is applied to
//! its generation's table and acknowledged only once the group is in the log as its
//! durability setting requires. Readers therefore never see a write that a crash of the
//! process (or, in sync mode, of the machine) could still lose.
//!
//! Sealing: once the current generation's entries take `memtable_bytes` of memory, or the WAL
//! records submitted to it `wal_bytes` (an overwrite replaces its key's entry in memory but
//! adds its record to the log), a WAL rotation is queued behind them. Writes queued before
//! it go to the old segment and the old generation ("closing"); writes after it to the new ones. When the rotation completes, every
//! write of the closing table has been applied (one writer thread, FIFO mailbox), so it is
//! frozen, put on the sealed queue and sent to the Flusher with the number of the segment
//! that holds exactly its records. A [`Seal`] (admin flush) waits for the seal that freezes
//! every write submitted before it; it stays requested until that seal happens (after a
//! rotation in flight, or once the WAL queue takes the rotation). This bookkeeping is the
//! pure state machine in `pipeline`; the handlers carry out its effects.
//!
//! Invariants:
//! - Segment `s` is retired only after the table holding every record of segments `<= s` is
//!   fsynced and recorded in the manifest (the Flusher does both, in that order).
//! - Memory is bounded: one active table and at most `max_sealed + 1` frozen ones (sealed,
//!   plus the closing one; the table closing when the queue fills joins it). When the sealed
//!   queue is full, writes wait in a bounded stall queue (counted as write stalls); past
//!   that bound they get [`StorageError::Overloaded`].
//! - Bytes queued for the WAL are bounded by `max_queued_bytes`; past that a write gets
//!   [`StorageError::Overloaded`] at once and costs nothing else. (A group the WAL writer
//!   refuses when it is queued answers its writes with the reason; their sequence numbers
//!   stay unused, which recovery allows: it needs them increasing, not consecutive.)
//! - Once the WAL or the engine is poisoned every write fails; reads keep working.
//! - At most `max_disk_reads` reads that missed memory are admitted at once (queued for or
//!   running on `read_workers` blocking-pool workers, see `reads`); more wait for a permit.

mod group;
mod handlers;
mod pipeline;
pub mod reads;
pub mod table;
mod update;
pub mod view;
pub mod wal;

use crate::engine::{Entry, Tables};
use crate::keyhash::KeyHash;
use crate::stats::ActorCounters;
use actix::prelude::*;
use pipeline::{Limits, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use table::{MemTable, Versioned};
use tokio::sync::{oneshot, Semaphore};
use wal::{Durability, WalError, WalRecord, WalWriter};

pub use update::{Change, NewValue, Update, UpdateBatch, UpdateDone, UpdateFn, UpdateThen};

/// Why a write was not acknowledged.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    /// Nothing was written; the node has too much queued. Retry with backoff.
    #[error("write queue full ({queued} bytes queued, limit {limit}); retry with backoff")]
    Overloaded { queued: usize, limit: usize },
    /// The write was not (and will never be) acknowledged: the log or engine failed earlier.
    #[error("storage refuses writes: {0}")]
    Poisoned(String),
    /// The WAL failed while writing this very write: part of it may be on disk and be
    /// replayed after a restart. Its outcome is unknown (the protocol's `timeout`).
    #[error("{0}")]
    Indeterminate(String),
    /// The actor or its writer stopped; the write's fate is unknown (it may be durable).
    #[error("storage stopped while handling the request")]
    Stopped,
    /// A read from the SSTables failed (for example a checksum mismatch); nothing was
    /// returned in place of the data.
    #[error("storage read failed: {0}")]
    Read(String),
}

/// Settings of the memtable and its log.
#[derive(Debug, Clone)]
pub struct MemtableConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Jobs the WAL writer queue holds.
    pub wal_queue_jobs: usize,
    /// Bytes of encoded records waiting for the WAL at most.
    pub max_queued_bytes: usize,
    /// Mailbox capacity (senders using `send` wait when it is full).
    pub mailbox: usize,
    /// Seal the active memtable once its entries take this much memory...
    pub memtable_bytes: usize,
    /// ... or once this many bytes of WAL records were written to it (overwrites add to the
    /// log, not to memory): bounds the log a restart replays.
    pub wal_bytes: usize,
    /// Sealed memtables waiting for the Flusher before writes stall.
    pub max_sealed: usize,
    /// Writes held while stalled before further ones get `overloaded`.
    pub max_stalled_writes: usize,
    /// Reads that missed memory admitted at once (queued or running); more wait.
    pub max_disk_reads: usize,
    /// Blocking-pool workers serving those reads (each drains the queue in batches).
    pub read_workers: usize,
}

/// Put (`value: Some`) or delete (`value: None`) a key. Replies with the write's sequence
/// number once it is durable.
#[derive(Message)]
#[rtype(result = "Result<u64, StorageError>")]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Reads the newest durable version of a key (a tombstone is `Some` with `value: None`);
/// when the tables cannot be read (corruption, I/O error) the answer is
/// [`StorageError::Read`] naming the file, never a wrong "not found".
#[derive(Message)]
#[rtype(result = "Result<Option<Versioned>, StorageError>")]
pub struct Get {
    pub key: Vec<u8>,
}

/// Live entries with `start <= key < end`, newest version of each, in key order: at most
/// `limit` of them. `next` is where to continue (`None` when the range is exhausted).
#[derive(Message)]
#[rtype(result = "Result<ScanResult, StorageError>")]
pub struct Scan {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    pub entries: Vec<Entry>,
    pub next: Option<Vec<u8>>,
}

/// Makes everything acknowledged so far durable (used at shutdown in relaxed mode).
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct SyncWal;

/// Seal the active memtable now (admin `flush`); replies once every table sealed so far
/// (this one included) is flushed to an SSTable, or with the error once storage fails
/// (poison, or the WAL writer stopped) so that can never happen.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct Seal;

/// To the Flusher: write this frozen table as an SSTable, retiring WAL segments `<= segment`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushMemtable {
    pub table: Arc<MemTable>,
    pub segment: u64,
    /// Where to report [`TableFlushed`] / [`FlushFailed`].
    pub reply_to: Addr<MemtableActor>,
}

/// From the Flusher: the oldest sealed table is in an SSTable and its segment retired.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct TableFlushed {
    pub segment: u64,
}

/// From the Flusher: a flush failed; the engine is poisoned.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushFailed {
    pub reason: String,
}

/// Memory-side statistics for `troupe admin stats`.
#[derive(Message)]
#[rtype(result = "MemtableStats")]
pub struct GetMemtableStats;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MemtableStats {
    pub active_bytes: usize,
    pub active_keys: usize,
    pub sealed_tables: usize,
    pub sealed_bytes: usize,
    pub stalled_writes_now: usize,
    /// Writes that had to wait for a flush, since start.
    pub write_stalls: u64,
    pub seals: u64,
    pub next_seq: u64,
    /// Successful fdatasyncs of the WAL so far.
    pub wal_fsyncs: u64,
    /// Group commits of the WAL so far (one `write` of the batch's records each, and in
    /// sync mode its fdatasync): writes over batches is how well writes are grouped.
    pub wal_batches: u64,
    /// Of `wal_batches`, those the Memtable's event loop wrote itself without blocking
    /// (relaxed mode, on a file system that takes non-blocking writes: XFS, not ext4), each
    /// acknowledged without the hop to the writer thread and back.
    pub wal_batches_now: u64,
    /// Lookups (gets and updates) that needed a file read, through the disk-read queue;
    /// the others were answered from memory, bloom filters or the block cache.
    pub disk_lookups: u64,
}

/// How a write's caller hears that it is durable (its WAL sequence number) or failed: a
/// channel (`Write`), or a callback the Memtable actor runs (`UpdateThen`: no task and no
/// channel between the actor and the caller).
enum WriteReply {
    Channel(oneshot::Sender<Result<u64, StorageError>>),
    Call(Box<dyn FnOnce(Result<u64, StorageError>) + Send>),
}

impl WriteReply {
    fn send(self, r: Result<u64, StorageError>) {
        match self {
            WriteReply::Channel(tx) => drop(tx.send(r)),
            WriteReply::Call(f) => f(r),
        }
    }
}

/// A write waiting for its WAL record to become durable.
struct Pending {
    seq: u64,
    generation: u64,
    key: Vec<u8>,
    /// `KeyHash::of(&key)`, for the insert once durable.
    hash: KeyHash,
    value: Option<Vec<u8>>,
    /// Encoded size, released from `queued_bytes` when the batch completes.
    len: usize,
    reply: WriteReply,
}

/// From the WAL writer thread: one group commit's writes are durable (or failed), in log
/// order.
#[derive(Message)]
#[rtype(result = "()")]
struct DurableBatch {
    groups: Vec<Vec<Pending>>,
    result: Result<(), WalError>,
}

/// From the WAL writer thread: the rotation queued at a seal finished.
#[derive(Message)]
#[rtype(result = "()")]
struct WalRotated {
    result: Result<u64, WalError>,
}

/// The actor's address, filled in once it starts; the WAL sink needs it but the writer
/// thread is started (by `open`) before the actor exists.
type SelfAddr = Arc<OnceLock<Addr<MemtableActor>>>;

/// A write that arrived while the sealed queue was full.
struct Stalled {
    write: Write,
    hash: KeyHash,
    reply: WriteReply,
}

/// A `Seal` caller waiting for its tables to be flushed.
type FlushWaiter = oneshot::Sender<Result<(), StorageError>>;

pub struct MemtableActor {
    /// Generations, the active, closing and sealed tables, stalled writes and `Seal`
    /// waiters: all the write path's bookkeeping, as a pure state machine.
    pipe: Pipeline<Arc<MemTable>, Stalled, FlushWaiter>,
    /// The memory tables as readers on other threads see them (`view`).
    view: Arc<view::MemView>,
    /// `(seals, flushes)` of the pipeline when `view` was last published.
    view_at: (u64, u64),
    wal: group::WalQueue,
    tables: Arc<Tables>,
    flusher: Option<Recipient<FlushMemtable>>,
    self_addr: SelfAddr,
    next_seq: u64,
    queued_bytes: Arc<AtomicUsize>,
    disk_reads: Arc<Semaphore>,
    reads: reads::DiskReads,
    /// See [`MemtableStats::disk_lookups`].
    disk_lookups: u64,
    /// See [`MemtableStats::wal_batches`].
    wal_batches: u64,
    /// See [`MemtableStats::wal_batches_now`].
    wal_batches_now: u64,
    /// The node's one poison flag, shared with the WAL writer: a failed WAL write or sync,
    /// a failed flush, or a poisoned engine sets it, and from then on the WAL writer refuses
    /// every append, so no later write is acknowledged. Status and metrics read it.
    engine_poison: wal::Health,
    config: MemtableConfig,
    counters: Arc<ActorCounters>,
    /// Until taken (see [`MemtableActor::take_wal_exit`]).
    wal_exit: Option<WalThreadExit>,
}

/// Waits for the WAL writer thread to end. The thread ends once every [`WalWriter`] handle
/// is gone (the actor stopped and was dropped) and it has drained its queue and synced.
pub struct WalThreadExit(std::sync::mpsc::Receiver<()>);

impl WalThreadExit {
    /// Blocks until the writer thread has ended (nothing is ever sent: the channel closes
    /// when the thread drops its sink). Blocking: never call it on an actor's event loop.
    pub fn wait(self) {
        let _ = self.0.recv();
    }
}

/// What [`MemtableActor::open`] recovered, for the start-up log.
#[derive(Debug)]
pub struct OpenReport {
    pub records: usize,
    pub skipped_flushed: usize,
    pub keys: usize,
    pub torn_bytes: u64,
    pub segments: usize,
    pub retired_segments_deleted: usize,
    pub tables: usize,
    pub orphans_deleted: usize,
}

pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

pub fn tables_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tables")
}

impl MemtableActor {
    /// Recovers storage: opens the SSTables (replaying the manifest and deleting orphans),
    /// deletes WAL segments the manifest retired, replays the rest (skipping records already
    /// in tables), and starts the WAL writer thread. Blocking: call before the actor system
    /// serves anything (start-up), never from an actor.
    pub fn open(
        config: MemtableConfig,
        tables: Arc<Tables>,
        retired: Option<u64>,
        last_flushed_seq: u64,
        counters: Arc<ActorCounters>,
    ) -> Result<(MemtableActor, OpenReport), WalError> {
        let dir = wal_dir(&config.data_dir);
        let io = tables.io().clone();
        crate::engine::io::create_dir_durable(io.as_ref(), &dir).map_err(|source| {
            WalError::Io {
                path: dir.clone(),
                source,
            }
        })?;
        // Retired segments are fully in tables (the manifest says so, durably): delete them
        // before replay so they are never read again.
        let mut retired_deleted = 0;
        if let Some(r) = retired {
            for n in wal::list_segments(&dir)?.into_iter().filter(|&n| n <= r) {
                let path = wal::segment_path(&dir, n);
                io.remove_file(&path)
                    .map_err(|source| WalError::Io { path, source })?;
                retired_deleted += 1;
            }
            if retired_deleted > 0 {
                wal::fsync_dir(io.as_ref(), &dir)?;
            }
        }
        let recovered = wal::recover(io.as_ref(), &dir)?;
        let table = MemTable::default();
        let mut max_seq = last_flushed_seq;
        let records = recovered.records.len();
        let mut skipped = 0;
        // The log bytes of the records replayed into the table (its share of `wal_bytes`).
        let mut replayed_bytes = 0;
        for rec in recovered.records {
            max_seq = max_seq.max(rec.seq);
            if rec.seq <= last_flushed_seq {
                skipped += 1; // already in a table
                continue;
            }
            replayed_bytes += wal::format::encoded_len(&rec);
            let WalRecord { seq, key, value } = rec;
            let hash = KeyHash::of(&key);
            table.apply(key, hash, seq, value);
        }
        // Appending after a replayed segment is safe: recovery truncated any torn tail.
        let segment = recovered
            .segments
            .last()
            .copied()
            .unwrap_or(retired.map_or(1, |r| r + 1));
        let self_addr: SelfAddr = Arc::default();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (exit_tx, exit_rx) = std::sync::mpsc::channel();
        let sink = handlers::durable_sink(
            self_addr.clone(),
            queued_bytes.clone(),
            counters.clone(),
            exit_tx,
        );
        let writer = WalWriter::start(
            io,
            &dir,
            segment,
            config.durability,
            config.wal_queue_jobs,
            sink,
        )?;
        let report = OpenReport {
            records,
            skipped_flushed: skipped,
            keys: table.len(),
            torn_bytes: recovered.torn_bytes,
            segments: recovered.segments.len(),
            retired_segments_deleted: retired_deleted,
            tables: 0,
            orphans_deleted: 0,
        };
        let limits = Limits {
            memtable_bytes: config.memtable_bytes,
            wal_bytes: config.wal_bytes,
            max_sealed: config.max_sealed,
            max_stalled_writes: config.max_stalled_writes,
        };
        let submitted = replayed_bytes;
        let health = writer.health();
        let table = Arc::new(table);
        let view = Arc::new(view::MemView::default());
        view.publish(vec![table.clone()]);
        Ok((
            MemtableActor {
                pipe: Pipeline::new(limits, table, submitted),
                view,
                view_at: (0, 0),
                wal: group::WalQueue::new(
                    writer,
                    queued_bytes.clone(),
                    config.max_queued_bytes,
                    counters.clone(),
                ),
                tables: tables.clone(),
                flusher: None,
                self_addr,
                next_seq: max_seq + 1,
                queued_bytes,
                disk_reads: Arc::new(Semaphore::new(config.max_disk_reads)),
                reads: reads::DiskReads::new(
                    tables.clone(),
                    config.read_workers,
                    config.max_disk_reads,
                ),
                disk_lookups: 0,
                wal_batches: 0,
                wal_batches_now: 0,
                engine_poison: health,
                config,
                counters,
                wal_exit: Some(WalThreadExit(exit_rx)),
            },
            report,
        ))
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Connects the Flusher (before the actor starts).
    pub fn set_flusher(&mut self, flusher: Recipient<FlushMemtable>) {
        self.flusher = Some(flusher);
    }

    /// What to wait on for the WAL writer thread to end (once; before the actor starts), so
    /// a test or a shutdown knows the log's files are closed before reopening the directory.
    pub fn take_wal_exit(&mut self) -> Option<WalThreadExit> {
        self.wal_exit.take()
    }

    /// A handle for readers on other threads: gets answered from memory or the block cache
    /// without this actor's mailbox (see `view`).
    pub fn local_reads(&self) -> view::LocalReads {
        view::LocalReads::new(self.view.clone(), self.tables.clone())
    }

    /// The node's poison flag (WAL and engine), for status reporting and for the
    /// background actors to set when the engine fails.
    pub fn health(&self) -> wal::Health {
        self.engine_poison.clone()
    }
}

impl Actor for MemtableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.config.mailbox);
        let _ = self.self_addr.set(ctx.address());
        self.counters.started();
        // The replayed WAL may already hold more than one memtable's worth.
        self.seal_if_due();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

#[cfg(test)]
mod tests;
