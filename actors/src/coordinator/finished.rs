//! Local writes the Memtable finished, handed back to the coordinator in batches.
//!
//! Owns [`Finished`]: the queue the Memtable's callbacks (the `UpdateDone` of
//! `local::run_locked`) push each local write's outcome to, and the `WritesFinished`
//! wake-up that tells the coordinator to take them. One group commit finishes many writes
//! in one turn of the Memtable; they reach the coordinator as one message, not one each.
//!
//! Invariants:
//! - Whenever the queue is non-empty, a `WritesFinished` is on its way or being handled:
//!   the push that finds the queue empty posts one, and the handler takes everything
//!   queued under the lock (a push after that finds it empty and posts the next).
//! - Its length is bounded by the local operations in flight (`max_inflight` for client
//!   requests, `max_repairs` for read repairs, and the few that purges and anti-entropy
//!   joins run at a time).
//! - The queue holds the coordinator's weak address: it does not keep a stopped
//!   coordinator alive. Writes finished after it stopped are dropped with the queue, as a
//!   message to a stopped actor is.

use super::local::LocalWriteFinished;
use super::Coordinator;
use actix::prelude::*;
use actix::WeakAddr;
use std::sync::{Arc, Mutex};

/// The queue of finished local writes (see the module docs).
pub(super) struct Finished {
    queue: Mutex<Vec<LocalWriteFinished>>,
    coordinator: WeakAddr<Coordinator>,
}

/// The queue has writes: take them (see [`Finished`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WritesFinished;

impl Finished {
    pub(super) fn new(coordinator: WeakAddr<Coordinator>) -> Arc<Finished> {
        Arc::new(Finished {
            queue: Mutex::new(Vec::new()),
            coordinator,
        })
    }

    /// Queues a finished write; the first of a run wakes the coordinator.
    pub(super) fn push(&self, w: LocalWriteFinished) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.push(w);
            q.len() == 1
        };
        if was_empty {
            if let Some(c) = self.coordinator.upgrade() {
                // Not refused by a full mailbox: at most one wake-up per run of pushes
                // (one more can find the queue already taken: it does nothing).
                c.do_send(WritesFinished);
            }
        }
    }

    /// Moves everything queued into `into` (empty; its capacity is kept for the next).
    pub(super) fn take(&self, into: &mut Vec<LocalWriteFinished>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, into);
    }
}

impl Handler<WritesFinished> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: WritesFinished, ctx: &mut Context<Self>) {
        let Some(finished) = self.finished.clone() else {
            return;
        };
        let mut batch = std::mem::take(&mut self.finished_spare);
        finished.take(&mut batch);
        for w in batch.drain(..) {
            self.local_write_finished(w, ctx);
        }
        self.finished_spare = batch;
    }
}
