//! The coordinator's batched exchange with its Memtable, both ways.
//!
//! Out: the updates a turn of the coordinator queues (`queue_update`) go to the Memtable
//! as one `UpdateBatch` of at most [`UPDATE_BATCH`], sent by the turn's `FlushOutbox` (or
//! at once when full). The Memtable runs on the coordinator's event loop (`node.rs`), so a
//! batch sent earlier in the turn would run no sooner.
//!
//! Back: [`Finished`], the queue the Memtable's callbacks (the `UpdateDone` of
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

use super::local::{LocalResult, LocalWriteFinished};
use super::Coordinator;
use crate::memtable::{StorageError, UpdateBatch, UpdateThen};
use actix::dev::SendError;
use actix::prelude::*;
use actix::WeakAddr;
use std::sync::{Arc, Mutex};

/// The most local updates sent to the Memtable in one message.
pub(super) const UPDATE_BATCH: usize = 64;

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

impl Coordinator {
    /// Queues `update` for this turn's batch. Flushed per turn, not per handler: at one
    /// request in flight per connection a batch per handler cost 2.8 allocations per put
    /// more. A batch is allocated at its full size once, and stays small enough for the
    /// allocator to reuse freed ones (batches of a whole turn, up to `max_inflight` long,
    /// grew by doubling into fresh pages: 4% of the loop's CPU was the kernel zeroing
    /// them).
    pub(super) fn queue_update(
        &mut self,
        update: UpdateThen<LocalResult>,
        ctx: &mut Context<Self>,
    ) {
        if self.local_updates.capacity() == 0 {
            self.local_updates.reserve_exact(UPDATE_BATCH);
        }
        self.local_updates.push(update);
        if self.local_updates.len() >= UPDATE_BATCH {
            self.flush_local_updates();
        } else {
            self.schedule_flush(ctx);
        }
    }

    /// Where the Memtable's callbacks queue finished local writes (made on first use).
    pub(super) fn finished_queue(&mut self, ctx: &mut Context<Self>) -> Arc<Finished> {
        self.finished
            .get_or_insert_with(|| Finished::new(ctx.address().downgrade()))
            .clone()
    }

    /// Hands the updates queued this turn to the Memtable as one message.
    pub(super) fn flush_local_updates(&mut self) {
        if self.local_updates.is_empty() {
            return;
        }
        let batch = UpdateBatch(std::mem::take(&mut self.local_updates));
        match self.storage_update.try_send(batch) {
            Ok(()) => {}
            // Like `send`, a full mailbox queues it anyway: the coordinator's own bound
            // (`max_inflight`) is what holds the local operations back.
            Err(SendError::Full(batch)) => self.storage_update.do_send(batch),
            Err(SendError::Closed(batch)) => {
                for u in batch.0 {
                    u.then.call(Err(StorageError::Stopped));
                }
            }
        }
    }
}
