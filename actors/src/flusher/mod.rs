//! The Flusher actor: turns sealed memtables into L0 SSTables, one at a time, oldest first,
//! and retires their WAL segments.
//!
//! Owns: the queue of sealed memtables waiting to be written and the one flush in progress.
//! Receives [`FlushMemtable`] from the Memtable actor. Emits [`TableFlushed`] (or
//! [`FlushFailed`]) back to it and [`TablesChanged`] to the Compactor.
//!
//! One flush, step by step (on the blocking pool, never on this actor's event loop):
//! 1. `Tables::flush` writes `<id>.sst.tmp`, fsyncs it, renames it to `<id>.sst`, fsyncs the
//!    tables directory, then appends `AddTable` + `RetireWal { segment }` to the MANIFEST as
//!    one record and fsyncs it: the commit point.
//! 2. Only then are WAL segments `<= segment` deleted and the WAL directory fsynced. A crash
//!    between 1 and 2 leaves retired segments that start-up deletes without replaying.
//! 3. `TableFlushed` tells the Memtable to drop the sealed table: its data is already in the
//!    current version, so no read can miss it.
//!
//! Invariants:
//! - Flushes run strictly one at a time in seal order (the engine requires each flush to hold
//!   sequence numbers above the previous one, and retiring segment `s` must never skip a
//!   memtable of an older segment that failed to flush).
//! - Work in flight is bounded: one flush runs; the Memtable stalls writes while `max_sealed`
//!   tables wait, so this queue holds at most `max_sealed + 1` tables.
//! - L0 is bounded: while it holds `l0_stop_tables` tables (compaction is behind or failing)
//!   the next flush waits, polling every `L0_POLL`; sealed memtables then pile up to
//!   `max_sealed` and the Memtable stalls writes, so a slow compactor slows writers down
//!   instead of letting read amplification and per-table memory grow without limit.
//! - A failure on a poisoned engine is final: every queued table is answered `FlushFailed`
//!   and the Memtable refuses writes. The engine poisons only where acknowledged data is at
//!   risk (the directory fsync before the commit, the MANIFEST append or rewrite). Any other
//!   failure -- a full disk while writing, fsyncing or renaming the table, which the engine
//!   then removes -- is retried with exponential backoff (`crate::backoff`), counted and
//!   reported in `admin status`, `admin stats` and /metrics. The sealed table stays in
//!   memory and its WAL segment on disk meanwhile, so nothing acknowledged is lost; new
//!   flushes queue behind it and do not cut the backoff short.

use crate::backoff::{FailureSnapshot, FailureStats, Retry};
use crate::compactor::TablesChanged;
use crate::engine::io::Io;
use crate::engine::{EngineError, Tables};
use crate::memtable::{wal, FlushFailed, FlushMemtable, TableFlushed};
use crate::stats::ActorCounters;
use actix::prelude::*;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters for `troupe admin stats` (relaxed atomics: statistics only).
#[derive(Debug, Default)]
pub struct FlusherStats {
    flushes: AtomicU64,
    failures: FailureStats,
    micros: AtomicU64,
    wal_segments_deleted: AtomicU64,
    queued: AtomicU64,
    l0_stalls: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlusherSnapshot {
    pub flushes: u64,
    /// Failed flush attempts: totals, whether flushing is failing now, the last error.
    #[serde(flatten)]
    pub failures: FailureSnapshot,
    pub flush_micros: u64,
    pub wal_segments_deleted: u64,
    pub queued: u64,
    /// Times a flush had to wait because L0 was full (`storage.l0_stop_tables`).
    pub l0_stalls: u64,
}

impl FlusherStats {
    pub fn snapshot(&self) -> FlusherSnapshot {
        FlusherSnapshot {
            flushes: self.flushes.load(Relaxed),
            failures: self.failures.snapshot(),
            flush_micros: self.micros.load(Relaxed),
            wal_segments_deleted: self.wal_segments_deleted.load(Relaxed),
            queued: self.queued.load(Relaxed),
            l0_stalls: self.l0_stalls.load(Relaxed),
        }
    }
}

/// Why one flush attempt failed.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the blocking flush task died: {0}")]
    Join(String),
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a flush held back by a full L0 looks again.
const L0_POLL: Duration = Duration::from_millis(50);

pub struct Flusher {
    tables: Arc<Tables>,
    wal_dir: PathBuf,
    queue: VecDeque<FlushMemtable>,
    busy: bool,
    /// Backoff after a failed flush; while a retry waits, nothing starts.
    retry: Retry,
    compactor: Option<Recipient<TablesChanged>>,
    stats: Arc<FlusherStats>,
    counters: Arc<ActorCounters>,
    l0_stop_tables: usize,
    /// A flush is held back by a full L0 (logged once per episode).
    l0_full: bool,
    /// A poll timer is pending; no other start may run before it fires.
    l0_poll_pending: bool,
}

impl Flusher {
    pub fn new(
        tables: Arc<Tables>,
        wal_dir: PathBuf,
        compactor: Option<Recipient<TablesChanged>>,
        counters: Arc<ActorCounters>,
        l0_stop_tables: usize,
    ) -> Flusher {
        Flusher {
            tables,
            wal_dir,
            queue: VecDeque::new(),
            busy: false,
            retry: Retry::new(MIN_BACKOFF, MAX_BACKOFF),
            compactor,
            stats: Arc::default(),
            counters,
            l0_stop_tables: l0_stop_tables.max(1),
            l0_full: false,
            l0_poll_pending: false,
        }
    }

    /// True (and a poll scheduled) while L0 is too full to flush into.
    fn hold_for_l0(&mut self, ctx: &mut Context<Self>) -> bool {
        let l0 = self.tables.current_version().level(0).len();
        // A poisoned engine never compacts again: let the flush run, fail on the poison and
        // answer every queued table `FlushFailed`, so stalled writers hear why.
        if l0 < self.l0_stop_tables || self.tables.poisoned().is_some() {
            if self.l0_full {
                self.l0_full = false;
                log::info!("L0 down to {l0} tables; flushes resume");
            }
            return false;
        }
        if !self.l0_full {
            self.l0_full = true;
            self.stats.l0_stalls.fetch_add(1, Relaxed);
            log::warn!(
                "L0 holds {l0} tables (storage.l0_stop_tables = {}): flushes wait for compaction, writes will stall",
                self.l0_stop_tables
            );
            if let Some(c) = &self.compactor {
                c.do_send(TablesChanged);
            }
        }
        self.l0_poll_pending = true;
        ctx.run_later(L0_POLL, |act, ctx| {
            act.l0_poll_pending = false;
            act.start_next(ctx);
        });
        true
    }

    /// The counters, to hand to the admin surface before the actor starts.
    pub fn stats(&self) -> Arc<FlusherStats> {
        self.stats.clone()
    }

    fn start_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy
            || self.l0_poll_pending
            || self.queue.is_empty()
            || !self.retry.ready(Instant::now())
        {
            return;
        }
        if self.hold_for_l0(ctx) {
            return;
        }
        let Some(job) = self.queue.front() else {
            return;
        };
        self.busy = true;
        let tables = self.tables.clone();
        let wal_dir = self.wal_dir.clone();
        let table = job.table.clone();
        let segment = job.segment;
        let started = Instant::now();
        let work = async move {
            tokio::task::spawn_blocking(move || -> Result<usize, FlushError> {
                tables.flush(table.entries(), Some(segment))?;
                // Committed. A failed delete only leaves retired segments, which start-up
                // deletes without replaying; never redo the flush for it.
                Ok(
                    delete_retired_segments(tables.io().as_ref(), &wal_dir, segment)
                        .unwrap_or_else(|e| {
                            log::warn!("cannot delete retired WAL segments (start-up will): {e}");
                            0
                        }),
                )
            })
            .await
            .map_err(|e| FlushError::Join(e.to_string()))?
        };
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            act.busy = false;
            act.finish(res, started, ctx);
        }));
    }

    fn finish(
        &mut self,
        res: Result<usize, FlushError>,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        match res {
            Ok(deleted) => {
                let Some(job) = self.queue.pop_front() else {
                    log::error!("BUG: a flush finished with an empty queue");
                    return;
                };
                let micros = started.elapsed().as_micros() as u64;
                self.stats.flushes.fetch_add(1, Relaxed);
                self.stats.micros.fetch_add(micros, Relaxed);
                self.stats
                    .wal_segments_deleted
                    .fetch_add(deleted as u64, Relaxed);
                self.stats.queued.store(self.queue.len() as u64, Relaxed);
                self.retry.succeeded();
                self.stats.failures.recovered();
                log::debug!(
                    "flushed a memtable of {} keys in {micros} µs; retired WAL segments <= {}",
                    job.table.len(),
                    job.segment
                );
                job.reply_to.do_send(TableFlushed {
                    segment: job.segment,
                });
                if let Some(c) = &self.compactor {
                    c.do_send(TablesChanged);
                }
                self.start_next(ctx);
            }
            Err(e) => {
                self.counters.error();
                let (delay, token) = self.retry.failed(Instant::now());
                let n = self.retry.consecutive_failures();
                self.stats.failures.failed(e.to_string(), n, delay);
                if let Some(reason) = self.tables.poisoned() {
                    log::error!("flush failed on a poisoned engine, no more flushes: {e}");
                    for job in self.queue.drain(..) {
                        job.reply_to.do_send(FlushFailed {
                            reason: reason.clone(),
                        });
                    }
                    self.stats.queued.store(0, Relaxed);
                    return;
                }
                // Not poisoned: the table was never committed and the engine removed it;
                // the sealed memtable and its WAL segment still hold every entry.
                log::warn!("flush failed ({e}; attempt {n} in a row); retrying in {delay:?}");
                ctx.run_later(delay, move |act, ctx| {
                    if act.retry.fired(token) {
                        act.start_next(ctx);
                    }
                });
            }
        }
    }
}

/// Deletes WAL segments `<= upto` (the manifest already retired them) and fsyncs the WAL
/// directory. Returns how many were deleted.
fn delete_retired_segments(io: &dyn Io, dir: &Path, upto: u64) -> Result<usize, wal::WalError> {
    let mut deleted = 0;
    for n in wal::list_segments(dir)?.into_iter().filter(|&n| n <= upto) {
        let path = wal::segment_path(dir, n);
        io.remove_file(&path)
            .map_err(|source| wal::WalError::Io { path, source })?;
        deleted += 1;
    }
    if deleted > 0 {
        wal::fsync_dir(io, dir)?;
    }
    Ok(deleted)
}

impl Actor for Flusher {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.counters.started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<FlushMemtable> for Flusher {
    type Result = ();

    fn handle(&mut self, msg: FlushMemtable, ctx: &mut Context<Self>) {
        self.counters.received();
        self.queue.push_back(msg);
        self.stats.queued.store(self.queue.len() as u64, Relaxed);
        self.start_next(ctx);
    }
}

#[cfg(test)]
mod tests;
