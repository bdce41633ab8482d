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
//! A compaction that fails on a poisoned engine (a failed fsync or manifest append) sets the
//! node's poison flag, so the Memtable refuses writes from then on.

use crate::engine::{EngineError, Tables};
use crate::gc::TablesCompacted;
use crate::memtable::wal::Health;
use crate::stats::ActorCounters;
use actix::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Counters for `troupe admin stats`; bytes and durations are in the engine's stats.
#[derive(Debug, Default)]
pub struct CompactorStats {
    rounds: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactorSnapshot {
    pub rounds: u64,
    pub errors: u64,
}

impl CompactorStats {
    pub fn snapshot(&self) -> CompactorSnapshot {
        CompactorSnapshot {
            rounds: self.rounds.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// How often the compactor looks for work without being told.
const TICK: Duration = Duration::from_secs(5);

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
    running: bool,
    again: bool,
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
            running: false,
            again: false,
        }
    }

    pub fn stats(&self) -> Arc<CompactorStats> {
        self.stats.clone()
    }

    fn failed(&self, what: &str) {
        self.counters.error();
        self.stats.errors.fetch_add(1, Relaxed);
        log::error!("{what}");
        if let Some(reason) = self.tables.poisoned() {
            self.health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(reason);
        }
    }

    fn trigger(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        self.again = false;
        let tables = self.tables.clone();
        let work = tokio::task::spawn_blocking(move || background_round(&tables));
        ctx.spawn(work.into_actor(self).map(|res, act, ctx| {
            act.running = false;
            act.stats.rounds.fetch_add(1, Relaxed);
            match res {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    log::debug!("background compaction ran {n} task(s)");
                    let _ = act.gc.try_send(TablesCompacted);
                }
                Ok(Err(e)) => act.failed(&format!("compaction failed: {e}")),
                Err(e) => act.failed(&format!("compaction task died: {e}")),
            }
            if act.again {
                act.trigger(ctx);
            }
        }));
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
        // A periodic look catches work left by a restart or a failed round.
        ctx.run_interval(TICK, |act, ctx| act.trigger(ctx));
        self.trigger(ctx);
    }
}

impl Handler<TablesChanged> for Compactor {
    type Result = ();

    fn handle(&mut self, _: TablesChanged, ctx: &mut Context<Self>) {
        self.counters.handled();
        self.trigger(ctx);
    }
}

impl Handler<CompactAll> for Compactor {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, _: CompactAll, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let tables = self.tables.clone();
        let gc = self.gc.clone();
        Box::pin(async move {
            let n = tokio::task::spawn_blocking(move || compact_all(&tables))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let _ = gc.try_send(TablesCompacted);
            Ok(n)
        })
    }
}
