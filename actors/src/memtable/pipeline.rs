//! The memtable's write pipeline as a pure state machine: which generation a write goes to,
//! when the active table is sealed behind a WAL rotation, the sealed queue, stalled writes,
//! and `Seal` (admin flush) waiters. No I/O and no actix: the Memtable actor feeds it inputs
//! (a write accepted or submitted to the WAL, a write durable, a rotation completed, a table
//! flushed, a seal requested, a failure) and carries out the effects it returns (send a
//! table to the Flusher, answer a waiter, resume or fail a stalled write). Queueing a
//! rotation is the one effect whose outcome the machine needs at once (the WAL queue may
//! refuse it), so the shell passes it in as a closure.
//!
//! Generic over the table `T`, the stalled write `W` and the waiter's reply `R`, so the
//! model test (`pipeline/tests.rs`) drives it with plain numbers.
//!
//! Invariants (checked by the model test):
//! - A write submitted in generation `g` is applied to table `g`: the active table while
//!   `g` is current, the closing one while its rotation is in flight. The rotation is
//!   queued on the WAL behind every write of `g` and the WAL completes jobs in order, so
//!   when it completes table `g` is whole.
//! - At most one rotation is in flight (one closing table); frozen tables (closing + sealed)
//!   are at most `max_sealed + 1`; at most `max_stalled_writes` writes wait.
//! - Seal number `n` freezes generation `n - 1`, and tables flush in seal order, so
//!   `flushed >= n` means every table up to and including seal `n` is in an SSTable. A
//!   `Seal` waiter's target is the seal that will (or did) freeze every write submitted
//!   before it; while that seal has not happened, `seal_requested` stays set and every
//!   input that could let it happen retries it, so the waiter is answered once the system
//!   quiesces, or failed if the pipeline fails.

use std::collections::VecDeque;
use std::sync::Arc;

/// Why the WAL did not take a rotation job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateRefused {
    /// The WAL queue is full: it holds jobs whose completions will come back (and retry).
    Full,
    /// The WAL writer thread is gone: nothing it held will complete.
    Stopped,
}

/// Queues a WAL rotation behind every write submitted so far (the shell's one synchronous
/// effect).
pub type Rotate<'a> = dyn FnMut() -> Result<(), RotateRefused> + 'a;

/// A table as the pipeline holds it: what follows it as the active table once it is sealed.
pub trait Generation {
    /// The empty table that takes the next generation's writes (the memtable sizes it for
    /// the keys this one holds).
    fn next_generation(&self) -> Self;

    /// The memory its entries take now (what [`Limits::memtable_bytes`] bounds).
    fn memory_bytes(&self) -> usize;
}

/// Size limits (see `MemtableConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The active table is sealed once its entries take this much memory...
    pub memtable_bytes: usize,
    /// ... or once this many bytes of WAL records were submitted to it, whichever comes
    /// first. An overwrite replaces its key's entry in memory but adds its record to the
    /// log, so this is what bounds the log a restart replays.
    pub wal_bytes: usize,
    pub max_sealed: usize,
    pub max_stalled_writes: usize,
}

/// What to do with a write that arrived.
pub enum Admit<W> {
    /// Submit it to the WAL now (tagged with [`Pipeline::generation`]).
    Submit(W),
    /// Held: it comes back as [`Effect::Resume`] once a flush makes room.
    Stalled,
    /// The stall queue is full: answer it `overloaded`.
    Refused(W),
}

/// An effect for the shell to carry out, in order.
pub enum Effect<T, W, R> {
    /// Send this frozen table to the Flusher; `segment` is the last WAL segment holding it.
    Flush { table: Arc<T>, segment: u64 },
    /// Every table this `Seal` waited for is flushed: answer it `Ok`.
    Flushed(R),
    /// Submit this stalled write now.
    Resume(W),
    /// The pipeline failed (see [`Pipeline::failed`]): answer this stalled write with why.
    FailWrite(W),
    /// The pipeline failed: answer this `Seal` waiter with why.
    FailWaiter(R),
}

/// A frozen table, oldest first in the sealed queue.
pub struct Sealed<T> {
    pub table: Arc<T>,
    /// Its last WAL segment; `None` when its rotation failed (it is never flushed and is
    /// served from memory until restart, when the WAL replays it).
    pub segment: Option<u64>,
}

pub struct Pipeline<T, W, R> {
    limits: Limits,
    /// Generation `generation`: receives new writes.
    active: T,
    generation: u64,
    /// Bytes submitted (not yet necessarily applied) to the active generation.
    active_submitted: usize,
    /// Of those, the bytes of writes not yet applied (durable). The memory they will take,
    /// estimated by their log bytes, counts toward `memtable_bytes` from submission on, so
    /// the writes queued on the WAL when the limit is reached do not all land in the table
    /// first (memory is counted only once a write is applied).
    active_unapplied: usize,
    /// Generation `generation - 1` between its rotation being queued and completing.
    closing: Option<T>,
    sealed: VecDeque<Sealed<T>>,
    stalled: VecDeque<W>,
    write_stalls: u64,
    /// Rotations queued so far: seal `n` froze generation `n - 1`.
    seals: u64,
    /// Sealed tables flushed so far (they flush in seal order, one per seal).
    flushed: u64,
    /// `Seal` callers waiting until `flushed` reaches their target.
    waiters: Vec<(u64, R)>,
    /// A waiter's target is seal `seals + 1`, which must freeze the active table: seal it as
    /// soon as no rotation is in flight and the WAL takes one. Only a seal that happens
    /// clears it (so `seal_requested` implies `active_submitted > 0`).
    seal_requested: bool,
}

impl<T: Generation, W, R> Pipeline<T, W, R> {
    /// Starts with `active` (replayed from the WAL), whose records took `submitted` bytes of
    /// the log.
    pub fn new(limits: Limits, active: T, submitted: usize) -> Self {
        Pipeline {
            limits,
            active,
            generation: 0,
            active_submitted: submitted,
            active_unapplied: 0,
            closing: None,
            sealed: VecDeque::new(),
            stalled: VecDeque::new(),
            write_stalls: 0,
            seals: 0,
            flushed: 0,
            waiters: Vec::new(),
            seal_requested: false,
        }
    }

    /// Bytes submitted to the active generation (of the log: what `wal_bytes` bounds).
    #[cfg(test)]
    pub fn active_submitted(&self) -> usize {
        self.active_submitted
    }

    /// The generation a write submitted now belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Writes wait while the flusher is behind, and behind any write already waiting (so a
    /// connection's writes keep their order).
    pub fn accept(&mut self, write: W) -> Admit<W> {
        if !self.stalled.is_empty() || self.sealed.len() >= self.limits.max_sealed {
            if self.stalled.len() >= self.limits.max_stalled_writes {
                return Admit::Refused(write);
            }
            self.write_stalls += 1;
            self.stalled.push_back(write);
            return Admit::Stalled;
        }
        Admit::Submit(write)
    }

    /// A write of `len` bytes was queued on the WAL for the current generation.
    pub fn submitted(&mut self, len: usize, rotate: &mut Rotate) -> Vec<Effect<T, W, R>> {
        self.active_submitted += len;
        self.active_unapplied += len;
        self.seal_if_due(rotate)
    }

    /// Freezes the active generation behind a WAL rotation if it is full (its entries'
    /// memory or its WAL bytes at their limit, [`Limits`]) or a `Seal` waits for it, unless
    /// a rotation is in flight (its completion calls this again) or nothing was written. If the WAL queue refuses the rotation nothing changes: the shell calls
    /// this after every WAL completion (a batch durable or failed; that frees queue room) and
    /// at start (the replayed WAL may fill the memtable).
    pub fn seal_if_due(&mut self, rotate: &mut Rotate) -> Vec<Effect<T, W, R>> {
        let full = self.active.memory_bytes() + self.active_unapplied >= self.limits.memtable_bytes
            || self.active_submitted >= self.limits.wal_bytes;
        let due = full || self.seal_requested;
        if !due || self.closing.is_some() || self.active_submitted == 0 {
            return Vec::new();
        }
        match rotate() {
            Ok(()) => {
                let next = self.active.next_generation();
                self.closing = Some(std::mem::replace(&mut self.active, next));
                self.generation += 1;
                self.active_submitted = 0;
                self.active_unapplied = 0;
                self.seals += 1;
                self.seal_requested = false;
                Vec::new()
            }
            Err(RotateRefused::Full) => {
                log::warn!("the WAL queue is full: the memtable is sealed once it drains");
                Vec::new()
            }
            Err(RotateRefused::Stopped) => {
                log::error!("the WAL writer stopped: no memtable can be sealed");
                self.failed()
            }
        }
    }

    /// The table a durable write of `generation`, `len` bytes in the log, is applied to
    /// (`None`: a bug).
    pub fn durable(&mut self, generation: u64, len: usize) -> Option<&mut T> {
        if generation == self.generation {
            self.active_unapplied = self.active_unapplied.saturating_sub(len);
            Some(&mut self.active)
        } else if generation + 1 == self.generation {
            self.closing.as_mut()
        } else {
            None
        }
    }

    /// The rotation queued at the last seal finished: the new segment, or `None` if it
    /// failed (the WAL is poisoned: the table cannot be flushed, and every stalled write
    /// and waiter is failed).
    pub fn rotation_completed(
        &mut self,
        new_segment: Option<u64>,
        rotate: &mut Rotate,
    ) -> Vec<Effect<T, W, R>> {
        let Some(table) = self.closing.take() else {
            log::error!("BUG: WAL rotated with no closing memtable");
            return Vec::new();
        };
        let table = Arc::new(table);
        let segment = new_segment.map(|s| s - 1);
        self.sealed.push_back(Sealed {
            table: table.clone(),
            segment,
        });
        let mut fx = match segment {
            Some(segment) => vec![Effect::Flush { table, segment }],
            None => self.failed(),
        };
        // A write burst may have filled the new generation, or a `Seal` asked for it.
        fx.extend(self.seal_if_due(rotate));
        fx
    }

    /// The oldest sealed table (last segment `segment`) is in an SSTable.
    pub fn flush_completed(&mut self, segment: u64) -> Vec<Effect<T, W, R>> {
        let mut fx = Vec::new();
        match self.sealed.front() {
            Some(s) if s.segment == Some(segment) => {
                self.sealed.pop_front();
                self.flushed += 1;
                let flushed = self.flushed;
                for (_, r) in self.waiters.extract_if(.., |(t, _)| *t <= flushed) {
                    fx.push(Effect::Flushed(r));
                }
            }
            other => log::error!(
                "BUG: flushed segment {segment} but the oldest sealed table is {:?}",
                other.map(|s| s.segment)
            ),
        }
        while self.sealed.len() < self.limits.max_sealed {
            let Some(w) = self.stalled.pop_front() else {
                break;
            };
            fx.push(Effect::Resume(w));
        }
        fx
    }

    /// An admin flush: `reply` is answered once every table sealed so far and every write
    /// submitted so far is flushed.
    pub fn seal_requested(&mut self, reply: R, rotate: &mut Rotate) -> Vec<Effect<T, W, R>> {
        // Writes submitted since the last seal are frozen by the next one, whether it can
        // happen now or only after the rotation in flight (or once the WAL queue has room).
        let target = if self.active_submitted > 0 {
            self.seal_requested = true;
            self.seals + 1
        } else {
            self.seals
        };
        if self.flushed >= target {
            return vec![Effect::Flushed(reply)];
        }
        self.waiters.push((target, reply));
        self.seal_if_due(rotate)
    }

    /// The pipeline failed for good (a flush failed on a poisoned engine, a rotation failed,
    /// or the WAL writer stopped): every stalled write and waiter is answered with why; the
    /// shell refuses new writes and flushes from now on.
    pub fn failed(&mut self) -> Vec<Effect<T, W, R>> {
        let writes = self.stalled.drain(..).map(Effect::FailWrite);
        let waiters = self.waiters.drain(..).map(|(_, r)| Effect::FailWaiter(r));
        writes.chain(waiters).collect()
    }

    /// Memory sources newest first: active, closing, sealed (newest to oldest).
    pub fn memory(&self) -> impl Iterator<Item = &T> {
        std::iter::once(&self.active)
            .chain(self.closing.as_ref())
            .chain(self.sealed.iter().rev().map(|s| s.table.as_ref()))
    }

    pub fn active(&self) -> &T {
        &self.active
    }

    /// Frozen tables: the closing one (if any), then the sealed queue oldest first.
    pub fn frozen(&self) -> impl Iterator<Item = &T> {
        self.closing
            .iter()
            .chain(self.sealed.iter().map(|s| s.table.as_ref()))
    }

    pub fn stalled_now(&self) -> usize {
        self.stalled.len()
    }

    pub fn write_stalls(&self) -> u64 {
        self.write_stalls
    }

    pub fn seals(&self) -> u64 {
        self.seals
    }

    /// Sealed tables flushed so far.
    pub fn flushed(&self) -> u64 {
        self.flushed
    }

    /// Sealed tables waiting for (or in) a flush, not counting the closing one.
    #[cfg(test)]
    pub fn sealed_len(&self) -> usize {
        self.sealed.len()
    }

    #[cfg(test)]
    pub fn closing(&self) -> bool {
        self.closing.is_some()
    }

    #[cfg(test)]
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests;
