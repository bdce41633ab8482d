//! The write-ahead log: segment files, start-up recovery, and the group-commit writer thread.
//! The record format and its parser live in [`format`]; offline repair in [`repair`].
//!
//! Layout: `<data_dir>/wal/<segment:020>.wal`. Format version 4 (all integers little-endian):
//!
//! ```text
//! segment = [segment header: 32 bytes] [batch]* [zeros]*   (zeros: preallocation, below)
//! segment header = [magic: 8 bytes "TROUPWAL"][format: u32 = 4][segment number: u64]
//!                  [salt: u64, random per segment][crc32 of the 28 bytes before it: u32]
//! batch   = [batch header: 20 bytes] [record]*   (one group commit: one write(2))
//! batch header = [magic: 4 bytes "TBAT"][body length: u32 (the records' bytes)]
//!                [synced_before: u64 (segment offset known durable when it was written)]
//!                [crc32 of the salt then the 16 bytes before it: u32]
//! record  = [len: u32][payload checksum: u64 = CRC-32 of the payload]
//!           [header checksum: u32 = crc32 of the 12 bytes before it][payload: len bytes]
//! payload = [seq: u64][kind: u8 (1 put, 2 delete)][key_len: u32][key][value...]
//! ```
//!
//! The header checksums cover the lengths, so a damaged length can never pass for a record
//! or batch that runs past the end of the file; `synced_before` lets recovery tell a batch
//! torn by a power cut (its sectors may reach the disk in any order) from damage to synced
//! bytes (the rule and its safety argument are in [`format`]). Format 3 (before 2026-12-02)
//! is format 4 with the first 8 bytes of the payload's blake3 as its checksum: read, never
//! appended to (the writer starts the next segment instead). Format 1 (before 2026-11-30)
//! had no segment header and `[len][blake3-64]` record headers; format 2 (2026-11-30, never
//! released) had no batches or salt; this build refuses both by version
//! ([`WalError::UnsupportedFormat`]).
//!
//! Invariants:
//! - A record is acknowledged only after the write *and* an `fdatasync` of its segment
//!   returned (durability `sync`); with `relaxed` it is acknowledged after the write and the
//!   segment is synced every `relaxed_sync_ms` (up to that much acknowledged data can be lost
//!   on power failure or kernel crash; a process crash loses nothing the OS accepted).
//! - Group commit: the writer thread takes every job queued while it was syncing and writes
//!   them as one batch, with one `write` and one `fdatasync`. In relaxed mode the Memtable
//!   may write a group as a batch itself, with a write that never blocks
//!   ([`WalWriter::append_now`], [`tail`]); the segment's end is shared under one mutex.
//!   A batch's `synced_before` is never past what an fdatasync has covered: the writer
//!   syncs a segment when it opens it (bytes a killed process left unsynced are synced
//!   before anything claims them).
//! - A failed write or sync poisons the log for good: the page cache may have dropped the
//!   dirty pages, so no later write is ever acknowledged (fsyncgate). A failed
//!   non-blocking write from the loop wrote nothing and only turns those writes off.
//! - A segment is synced (header included) before the next one is created, so only the last
//!   segment can end in a torn tail. Recovery drops and truncates a torn tail of the last
//!   segment only, at the start of the first damaged batch, when no later batch proves the
//!   damaged bytes were synced (the exact rule is in [`format`]); any other damage, in any
//!   segment, is [`WalError::Corrupt`] naming file and offset, and recovery changes nothing
//!   on disk.
//! - Segments are numbered; `rotate` starts a new one so the flusher can retire old ones.
//! - The writer keeps the segment preallocated with zeros past the log's end (batches are
//!   written at the end with `pwrite`), so a group commit's fdatasync writes data blocks
//!   only. Only the last segment has such a tail: `rotate` cuts it off durably before the
//!   next segment exists, and recovery cuts it off quietly (an all-zero tail after the
//!   last batch is not counted as torn).

use crate::engine::io::{self as fsio, Io, IoFile};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod format;
pub mod repair;
mod tail;
mod writer;

pub use tail::AppendNow;
use tail::Tail;
use writer::WriterThread;

pub use format::{
    encode_record, encode_record_unsealed, parse_segment, Damage, SegmentReplay, WalRecord,
};

/// Most bytes one group commit writes before syncing.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Emptied append buffers the writer thread keeps for [`WalWriter::buffer`]: at most this
/// many, none larger than [`SPARE_MAX_BYTES`].
const SPARE_BUFFERS: usize = 8;
const SPARE_MAX_BYTES: usize = 2 << 20;

/// Append buffers handed back by the writer thread once copied into its batch. Without
/// them every group's buffer was allocated on the Memtable's thread and freed on this one,
/// and the allocator gave its pages back and faulted them in again (page faults were 6.6%
/// of the node's main loop under pipelined puts, docs/BENCHMARKS.md).
#[derive(Default)]
struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    fn take(&self) -> Option<Vec<u8>> {
        lock(&self.0).pop()
    }

    /// Keeps `buf`, emptied, unless the pool is full or `buf` is too large to keep.
    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() > SPARE_MAX_BYTES {
            return;
        }
        buf.clear();
        let mut pool = lock(&self.0);
        if pool.len() < SPARE_BUFFERS {
            pool.push(buf);
        }
    }
}

/// The writer grows a segment by zeros ahead of the log by its own size, at least
/// `PREALLOC_MIN` and at most `PREALLOC_MAX` at a time (see `Tail::preallocate`).
const PREALLOC_MIN: u64 = 64 << 10;
const PREALLOC_MAX: u64 = 1 << 20;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Damage that a crash cannot explain (see [`format`]): a bad record with data after it,
    /// or any damage in a segment that is not the last. Nothing was changed on disk.
    #[error(
        "WAL corruption in {} at offset {offset}: {why}. The node refuses to start rather \
         than drop the acknowledged writes that may follow. Restore this node's data from \
         its replicas, or cut the segment at the damage (every record from this offset on \
         in this segment is lost; a copy of the segment is kept) with: {}",
        path.display(),
        repair::command_line(path, *segment, *offset)
    )]
    Corrupt {
        path: PathBuf,
        segment: u64,
        offset: u64,
        why: Damage,
    },
    /// This batch's own write or sync failed: some of its bytes may have reached the file
    /// (and so may be replayed after a restart), none is known durable. Its writes' outcome
    /// is unknown; the log is poisoned from now on.
    #[error("the write-ahead log failed while writing this batch ({0}); it may or may not have been applied")]
    Indeterminate(String),
    /// A segment in a format this build does not read. Nothing was changed on disk.
    #[error("{}", unsupported_format_message(path, *found))]
    UnsupportedFormat { path: PathBuf, found: u32 },
    /// An earlier write or sync failed; the log refuses all further writes.
    #[error("the write-ahead log is poisoned by an earlier failure ({0}); restart the node after fixing the disk")]
    Poisoned(String),
}

fn unsupported_format_message(path: &Path, found: u32) -> String {
    let wal_dir = path.parent().unwrap_or(path).display();
    let older = if found < format::FORMAT_VERSION {
        "an older"
    } else {
        "a newer"
    };
    format!(
        "WAL segment {} is format {found} (written by {older} troupe); this build reads formats \
         {} to {}. Start the build that wrote it on this data directory, run `troupe admin flush` \
         (the log's writes move into tables and its segments are retired), stop it, then start \
         this build; or move {wal_dir} aside to start without the writes it holds",
        path.display(),
        format::OLDEST_READ,
        format::FORMAT_VERSION,
    )
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Segment file name for number `n`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.wal"))
}

/// Lists segment numbers in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            segs.push(n);
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

/// What recovery found in the WAL directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every record of every live segment, in log order.
    pub records: Vec<WalRecord>,
    pub segments: Vec<u64>,
    pub torn_bytes: u64,
}

/// Replays every segment in `dir` (creating it if missing). Truncates only a torn tail of the
/// last segment; any other damage refuses with [`WalError::Corrupt`] and changes nothing.
pub fn recover(io: &dyn Io, dir: &Path) -> Result<Recovered, WalError> {
    fsio::create_dir_durable(io, dir).map_err(io_err(dir))?;
    let mut out = Recovered {
        segments: list_segments(dir)?,
        ..Recovered::default()
    };
    let last = out.segments.last().copied();
    for &n in &out.segments {
        let path = segment_path(dir, n);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(&path))?;
        let seg = parse_segment(&path, n, &data, Some(n) == last)?;
        // Zeros after the last batch: the writer's preallocation (or a batch none of whose
        // bytes reached the disk, so none of it was acknowledged). Cut off like a torn
        // tail, without a warning.
        let zero_tail = data[seg.valid_len as usize..].iter().all(|&b| b == 0);
        if seg.torn_bytes > 0 {
            if zero_tail {
                log::debug!(
                    "WAL {}: cutting {} preallocated bytes at offset {}",
                    path.display(),
                    seg.torn_bytes,
                    seg.valid_len
                );
            } else {
                log::warn!(
                    "WAL {}: dropping a torn tail of {} bytes at offset {} (crash during a write)",
                    path.display(),
                    seg.torn_bytes,
                    seg.valid_len
                );
            }
            let mut f = io.open_append(&path, false).map_err(io_err(&path))?;
            f.set_len(seg.valid_len).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        if !zero_tail {
            out.torn_bytes += seg.torn_bytes;
        }
        out.records.extend(seg.records);
    }
    Ok(out)
}

/// A segment open for appending, everything in it synced.
struct OpenSegment {
    file: Box<dyn IoFile>,
    salt: u64,
    /// The segment's format: this build appends only to one of [`format::FORMAT_VERSION`].
    format: u32,
    /// The file's length, all of it durable.
    len: u64,
}

/// Opens segment `n` at `path` for writing at its end (`len`). A new or empty file (recovery truncates a
/// torn segment header to nothing) first gets its segment header, so that a segment that is
/// not the last always starts with a complete header. The file is synced either way: a
/// process killed before its last fdatasync leaves bytes in the page cache that recovery
/// replayed, and the next batch's `synced_before` will claim them.
fn open_segment(io: &dyn Io, path: &Path, n: u64) -> Result<OpenSegment, WalError> {
    let mut file = io.open_write(path, true).map_err(io_err(path))?;
    let head = if file.size().map_err(io_err(path))? == 0 {
        let salt = format::new_salt();
        file.write_at(&format::segment_header(n, salt), 0)
            .map_err(io_err(path))?;
        format::Head {
            format: format::FORMAT_VERSION,
            salt,
        }
    } else {
        let mut header = [0u8; format::SEGMENT_HEADER_LEN];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_err(io_err(path))?;
        format::segment_head(&header).ok_or_else(|| WalError::Corrupt {
            path: path.to_path_buf(),
            segment: n,
            offset: 0,
            why: Damage::SegmentHeaderChecksum,
        })?
    };
    file.sync_data().map_err(io_err(path))?;
    let len = file.size().map_err(io_err(path))?;
    Ok(OpenSegment {
        file,
        salt: head.salt,
        format: head.format,
        len,
    })
}

/// Opens segment `n` of `dir` for appending, or creates segment `n + 1` when `n` is in an
/// older format (one this build reads but does not write: its records stay as they are, and
/// the flusher retires `n` with the first table after it). Returns the segment opened. `n`
/// is synced either way, so it is complete before any segment after it exists.
fn open_for_append(
    io: &dyn Io,
    dir: &Path,
    n: u64,
) -> Result<(u64, PathBuf, OpenSegment), WalError> {
    let path = segment_path(dir, n);
    let open = open_segment(io, &path, n)?;
    if open.format == format::FORMAT_VERSION {
        return Ok((n, path, open));
    }
    log::info!(
        "WAL segment {} is format {}; new writes go to segment {} in format {}",
        path.display(),
        open.format,
        n + 1,
        format::FORMAT_VERSION
    );
    drop(open);
    let next = segment_path(dir, n + 1);
    let open = open_segment(io, &next, n + 1)?;
    Ok((n + 1, next, open))
}

/// Fsyncs a directory so that file creations and renames in it are durable.
pub fn fsync_dir(io: &dyn Io, dir: &Path) -> Result<(), WalError> {
    io.sync_dir(dir).map_err(io_err(dir))
}

/// How acknowledged writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fdatasync before acknowledging (group commit).
    Sync,
    /// Acknowledge after write(2); fdatasync every `interval`.
    Relaxed { interval: Duration },
}

/// Completion callback for a sync: called once, on the writer thread.
pub type Done = Box<dyn FnOnce(Result<(), WalError>) + Send>;

/// Receives the tokens of each group commit's appends, in log order, with the batch's
/// outcome: one call per batch, so the owner gets one notification per fdatasync, not one
/// per write.
pub type DurableSink<T> = Box<dyn FnMut(Vec<T>, Result<(), WalError>) + Send>;

enum Job<T> {
    Append {
        bytes: Vec<u8>,
        token: T,
    },
    Sync {
        done: Done,
    },
    Rotate {
        done: Box<dyn FnOnce(Result<u64, WalError>) + Send>,
    },
}

/// Shared poison flag: `Some(reason)` once any write or sync failed.
pub type Health = Arc<Mutex<Option<String>>>;

/// Handle to the writer thread. Dropping every handle stops the thread after it drains.
pub struct WalWriter<T> {
    tx: SyncSender<Job<T>>,
    /// The open segment, shared with the writer thread (for [`WalWriter::append_now`]).
    tail: Arc<Mutex<Tail>>,
    /// Relaxed mode: [`WalWriter::append_now`] may write.
    relaxed: bool,
    health: Health,
    fsyncs: Arc<AtomicU64>,
    spares: Arc<Spares>,
}

impl<T> Clone for WalWriter<T> {
    fn clone(&self) -> Self {
        WalWriter {
            tx: self.tx.clone(),
            tail: self.tail.clone(),
            relaxed: self.relaxed,
            health: self.health.clone(),
            fsyncs: self.fsyncs.clone(),
            spares: self.spares.clone(),
        }
    }
}

/// A job could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the WAL queue is full")]
    Full,
    #[error("the WAL writer has stopped")]
    Stopped,
}

impl<T: Send + 'static> WalWriter<T> {
    /// Opens (or creates) segment `segment` in `dir` for appending (or segment `segment + 1`,
    /// when `segment` is in an older format: [`open_for_append`]) and starts the writer
    /// thread with a queue of at most `queue_jobs` jobs.
    pub fn start(
        io: Arc<dyn Io>,
        dir: &Path,
        segment: u64,
        durability: Durability,
        queue_jobs: usize,
        sink: DurableSink<T>,
    ) -> Result<WalWriter<T>, WalError> {
        let (segment, path, open) = open_for_append(io.as_ref(), dir, segment)?;
        // The new segment's directory entry must be durable before anything in it counts.
        fsync_dir(io.as_ref(), dir)?;
        let tail = Arc::new(Mutex::new(Tail::open(path, segment, open)));
        let (tx, rx) = std::sync::mpsc::sync_channel(queue_jobs);
        let health: Health = Arc::new(Mutex::new(None));
        let fsyncs = Arc::new(AtomicU64::new(0));
        let spares = Arc::new(Spares::default());
        let thread = WriterThread {
            spares: spares.clone(),
            buf: Vec::new(),
            io,
            fsyncs: fsyncs.clone(),
            dir: dir.to_path_buf(),
            tail: tail.clone(),
            durability,
            health: health.clone(),
            sink,
        };
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || thread.run(rx))
            .map_err(io_err(dir))?;
        Ok(WalWriter {
            tx,
            tail,
            relaxed: matches!(durability, Durability::Relaxed { .. }),
            health,
            fsyncs,
            spares,
        })
    }

    /// An empty buffer to encode the next append into: one the writer thread handed back
    /// (see [`Spares`]), else a new one with room for `room` bytes.
    pub fn buffer(&self, room: usize) -> Vec<u8> {
        self.spares
            .take()
            .unwrap_or_else(|| Vec::with_capacity(room))
    }

    /// Successful fdatasyncs of WAL segments so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The reason the log is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.health).clone()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Queues encoded records (sealed or not: the writer thread seals them, see
    /// [`encode_record_unsealed`]); `token` reaches the sink once they are durable. Never
    /// blocks.
    /// On failure the token comes back, so its owner can still answer the writer.
    pub fn append(&self, bytes: Vec<u8>, token: T) -> Result<(), (SubmitError, T)> {
        self.tx
            .try_send(Job::Append { bytes, token })
            .map_err(|e| match e {
                TrySendError::Full(Job::Append { token, .. }) => (SubmitError::Full, token),
                TrySendError::Disconnected(Job::Append { token, .. }) => {
                    (SubmitError::Stopped, token)
                }
                _ => unreachable!("BUG: an append job came back as another job"),
            })
    }

    /// Relaxed mode: writes `records` (whole records from [`encode_record_unsealed`]) as one
    /// batch on the caller's thread, if the log can take them without waiting: the writer
    /// thread is not using the segment, the batch fits in its preallocated zeros, and the
    /// kernel takes the whole write now (see [`Tail::append_now`]). `Written` means in the
    /// log as a relaxed append queued here would be once its sink ran; otherwise queue them
    /// with [`WalWriter::append`] (see [`AppendNow`]). Never blocks, and never poisons the
    /// log (a failed non-blocking write wrote nothing; the thread's write decides).
    ///
    /// The log's order is the order of the calls, so call it only when every append and
    /// rotation queued before has completed (its sink or `done` ran and was seen).
    pub fn append_now(&self, records: &mut [u8]) -> AppendNow {
        if !self.relaxed || records.is_empty() || self.poisoned().is_some() {
            return AppendNow::NotNow; // a poisoned log: the writer thread answers why
        }
        match self.tail.try_lock() {
            Ok(mut tail) => tail.append_now(records),
            Err(_) => AppendNow::NotNow, // the writer thread is at work on it (or died in it)
        }
    }

    /// Queues a sync of everything written so far. Never blocks.
    pub fn sync(&self, done: Done) -> Result<(), SubmitError> {
        self.submit(Job::Sync { done })
    }

    /// Syncs the current segment and starts the next; `done` gets the new segment number.
    pub fn rotate(
        &self,
        done: Box<dyn FnOnce(Result<u64, WalError>) + Send>,
    ) -> Result<(), SubmitError> {
        self.submit(Job::Rotate { done })
    }

    fn submit(&self, job: Job<T>) -> Result<(), SubmitError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
