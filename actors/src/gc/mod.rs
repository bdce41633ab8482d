//! The GC actor: deletes SSTables that compaction retired, once no reader uses them.
//!
//! Receives [`TablesCompacted`] (from the Compactor), a periodic tick (a scan that pinned
//! an old version may finish any time), and [`CollectNow`] (admin `gc`).
//!
//! The safety rule lives in `crate::engine::version`: a retired table is deletable only when
//! no `Version`, range iterator or unrun compaction task refers to it. Leftovers of
//! interrupted flushes and compactions are removed at start-up by `Tables::open`. Deletion
//! runs on the blocking pool; the number of files deleted is counted and logged.

use crate::engine::Tables;
use crate::stats::ActorCounters;
use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often GC looks for unpinned retired tables without being told.
const TICK: Duration = Duration::from_secs(2);

/// Some tables were retired by a compaction.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TablesCompacted;

/// Collect now; replies with the ids of the tables deleted.
#[derive(Message)]
#[rtype(result = "Result<Vec<u64>, String>")]
pub struct CollectNow;

pub struct Gc {
    tables: Arc<Tables>,
    counters: Arc<ActorCounters>,
    deleted: Arc<AtomicU64>,
    running: bool,
}

impl Gc {
    /// The counter of deleted tables, for `troupe admin stats`.
    pub fn deleted_counter(&self) -> Arc<AtomicU64> {
        self.deleted.clone()
    }

    pub fn new(tables: Arc<Tables>, counters: Arc<ActorCounters>) -> Gc {
        Gc {
            tables,
            counters,
            deleted: Arc::default(),
            running: false,
        }
    }

    fn collect(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let tables = self.tables.clone();
        let work = tokio::task::spawn_blocking(move || tables.collect_garbage());
        ctx.spawn(work.into_actor(self).map(|res, act, _| {
            act.running = false;
            match res {
                Ok(Ok(ids)) if !ids.is_empty() => {
                    act.deleted.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    log::info!("GC deleted {} retired table(s): {ids:?}", ids.len());
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    act.counters.error();
                    log::warn!("GC failed (retried later): {e}");
                }
                Err(e) => {
                    act.counters.error();
                    log::warn!("GC task died: {e}");
                }
            }
        }));
    }
}

impl Actor for Gc {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.counters.started();
        // A range scan may hold an old version (and its files) any time; look again later.
        ctx.run_interval(TICK, |act, ctx| act.collect(ctx));
    }
}

impl Handler<TablesCompacted> for Gc {
    type Result = ();

    fn handle(&mut self, _: TablesCompacted, ctx: &mut Context<Self>) {
        self.counters.received();
        self.collect(ctx);
    }
}

impl Handler<CollectNow> for Gc {
    type Result = ResponseFuture<Result<Vec<u64>, String>>;

    fn handle(&mut self, _: CollectNow, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let tables = self.tables.clone();
        let deleted = self.deleted.clone();
        Box::pin(async move {
            let ids = tokio::task::spawn_blocking(move || tables.collect_garbage())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            deleted.fetch_add(ids.len() as u64, Ordering::Relaxed);
            Ok(ids)
        })
    }
}
