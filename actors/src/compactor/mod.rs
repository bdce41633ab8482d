//! The Compactor actor: runs leveled compactions in the background, one task at a time.
//!
//! Receives [`TablesChanged`] (from the Flusher), a periodic tick, and [`CompactAll`] (admin
//! `compact`); emits [`TablesCompacted`] to the GC actor.
//!
//! The picking and merging live in `crate::engine` (pure picker, rate-limited merge); this
//! actor only decides when to run them and runs them on the blocking pool, so foreground
//! reads and writes never wait for a compaction. A trigger that arrives while a round runs
//! sets `again`, so work is never lost and at most one background round runs at a time.
//! The engine's rate limiter (`storage.compaction_bytes_per_sec`) throttles the output.
//!
//! A failed round (say ENOSPC on an output table) leaves the engine writable: the engine
//! removed the outputs, the inputs are still live. The actor counts and reports it
//! (`admin status`, `admin stats`, /metrics) and retries with exponential backoff
//! (`schedule.rs`); ticks and flushes during the backoff do not start a round, so a disk
//! that stays full -- also after a restart -- costs one attempt per backoff step. Only a
//! failure that poisoned the engine (directory fsync, MANIFEST append or rewrite) sets the
//! node's poison flag, so the Memtable refuses writes from then on.

mod schedule;

use crate::backoff::{FailureSnapshot, FailureStats};
use crate::engine::{EngineError, Tables};
use crate::gc::TablesCompacted;
use crate::memtable::wal::Health;
use crate::stats::ActorCounters;
use actix::prelude::*;
use schedule::{AfterRound, Schedule};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters for `troupe admin stats`; bytes and durations are in the engine's stats.
#[derive(Debug, Default)]
pub struct CompactorStats {
    rounds: AtomicU64,
    failures: FailureStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactorSnapshot {
    pub rounds: u64,
    /// Failed background rounds: totals, whether it is failing now, the last error.
    #[serde(flatten)]
    pub failures: FailureSnapshot,
}

impl CompactorStats {
    /// The failure counters (the actor records into them; tests stage a failure).
    pub fn failures(&self) -> &FailureStats {
        &self.failures
    }

    pub fn snapshot(&self) -> CompactorSnapshot {
        CompactorSnapshot {
            rounds: self.rounds.load(Relaxed),
            failures: self.failures.snapshot(),
        }
    }
}

/// How often the compactor looks for work without being told.
const TICK: Duration = Duration::from_secs(5);
/// Backoff after a failed round: doubling from `MIN_BACKOFF` up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The set of tables changed (a flush landed): maybe compact.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TablesChanged;

/// Compact everything down to the last non-empty level (admin `compact`). Replies with the
/// number of compactions run.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct CompactAll;

pub struct Compactor {
    tables: Arc<Tables>,
    gc: Recipient<TablesCompacted>,
    counters: Arc<ActorCounters>,
    health: Health,
    stats: Arc<CompactorStats>,
    schedule: Schedule,
}

impl Compactor {
    pub fn new(
        tables: Arc<Tables>,
        gc: Recipient<TablesCompacted>,
        health: Health,
        counters: Arc<ActorCounters>,
    ) -> Self {
        Compactor {
            tables,
            gc,
            counters,
            health,
            stats: Arc::default(),
            schedule: Schedule::new(MIN_BACKOFF, MAX_BACKOFF),
        }
    }

    pub fn stats(&self) -> Arc<CompactorStats> {
        self.stats.clone()
    }

    fn trigger(&mut self, ctx: &mut Context<Self>) {
        if self.schedule.trigger(Instant::now()) {
            self.run(ctx);
        }
    }

    fn retry(&mut self, token: u64, ctx: &mut Context<Self>) {
        if self.schedule.retry_fired(token) {
            self.run(ctx);
        }
    }

    /// Runs one round on the blocking pool (the schedule has marked it running).
    fn run(&mut self, ctx: &mut Context<Self>) {
        let tables = self.tables.clone();
        let work = tokio::task::spawn_blocking(move || background_round(&tables));
        ctx.spawn(work.into_actor(self).map(|res, act, ctx| {
            act.stats.rounds.fetch_add(1, Relaxed);
            let res = match res {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(e)) => Err(format!("compaction failed: {e}")),
                Err(e) => Err(format!("compaction task died: {e}")),
            };
            if let Ok(n) = res {
                if n > 0 {
                    log::debug!("background compaction ran {n} task(s)");
                    let _ = act.gc.try_send(TablesCompacted);
                }
            }
            act.finished(res.map(|_| ()), ctx);
        }));
    }

    fn finished(&mut self, res: Result<(), String>, ctx: &mut Context<Self>) {
        match self.schedule.finished(Instant::now(), res.is_ok()) {
            AfterRound::Idle => self.stats.failures.recovered(),
            AfterRound::RunAgain => {
                self.stats.failures.recovered();
                self.run(ctx);
            }
            AfterRound::RetryIn { delay, token } => {
                let error = res.err().unwrap_or_default();
                self.counters.error();
                let n = self.schedule.consecutive_failures();
                self.stats.failures.failed(error.clone(), n, delay);
                if let Some(reason) = self.tables.poisoned() {
                    log::error!("{error}; the engine refuses writes");
                    self.health
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(reason);
                } else {
                    // Writes go on; only compaction waits (L0 grows, and writes stall once
                    // it reaches storage.l0_stop_tables).
                    log::warn!("{error} (attempt {n} in a row); retrying in {delay:?}");
                }
                ctx.run_later(delay, move |act, ctx| act.retry(token, ctx));
            }
        }
    }
}

/// Runs picked compactions until none is due. A stale task (its inputs changed under it)
/// is simply picked again.
fn background_round(tables: &Tables) -> Result<u64, EngineError> {
    let mut n = 0;
    while let Some(task) = tables.pick_compaction() {
        match tables.run_compaction(&task) {
            Ok(_) => n += 1,
            Err(EngineError::StaleCompaction { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Pushes every level down until the data sits in the last level that has any.
fn compact_all(tables: &Tables) -> Result<u64, EngineError> {
    let mut n = background_round(tables)?;
    let levels = tables.current_version().num_levels();
    for level in 0..levels.saturating_sub(1) {
        // Stop at the deepest level holding data: moving it further gains nothing.
        let deeper_empty = {
            let v = tables.current_version();
            (level + 1..levels).all(|l| v.level(l).is_empty())
        };
        if deeper_empty && level > 0 {
            break;
        }
        while let Some(task) = tables.pick_level_compaction(level) {
            match tables.run_compaction(&task) {
                Ok(_) => n += 1,
                Err(EngineError::StaleCompaction { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

impl Actor for Compactor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.counters.started();
        // A periodic look catches work left by a restart (a failed round has its own
        // retry timer; the schedule drops ticks until then).
        ctx.run_interval(TICK, |act, ctx| act.trigger(ctx));
        self.trigger(ctx);
    }
}

impl Handler<TablesChanged> for Compactor {
    type Result = ();

    fn handle(&mut self, _: TablesChanged, ctx: &mut Context<Self>) {
        self.counters.received();
        self.trigger(ctx);
    }
}

impl Handler<CompactAll> for Compactor {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, _: CompactAll, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let tables = self.tables.clone();
        let gc = self.gc.clone();
        Box::pin(async move {
            // An operator's explicit request: runs at once whatever the backoff says, and
            // answers the error instead of retrying.
            let n = tokio::task::spawn_blocking(move || compact_all(&tables))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let _ = gc.try_send(TablesCompacted);
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests;
