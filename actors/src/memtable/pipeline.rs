//! The memtable's write pipeline as a pure state machine: which generation a write goes to,
//! when the active table is sealed behind a WAL rotation, the sealed queue, stalled writes,
//! and `Seal` (admin flush) waiters. No I/O and no actix: the Memtable actor feeds it inputs
//! (a write accepted or submitted to the WAL, a write durable, a rotation completed, a table
//! flushed, a seal requested, a failure) and carries out the effects it returns (send a
//! table to the Flusher, answer a waiter, resume a stalled write). Queueing a rotation is the
//! one effect whose outcome the machine needs at once (the WAL queue may refuse it), so the
//! shell passes it in as a closure.
//!
//! Generic over the table `T`, the stalled write `W` and the waiter's reply `R`, so the
//! property test (`pipeline/tests.rs`) drives it with plain numbers against a model.

use std::collections::VecDeque;
use std::sync::Arc;

/// Why the WAL did not take a rotation job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateRefused {
    /// The WAL queue is full: it holds jobs whose completions will come back.
    Full,
    /// The WAL writer thread is gone.
    Stopped,
}

/// Size limits (see `MemtableConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memtable_bytes: usize,
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
    /// This `Seal` waiter's tables are all flushed: answer it `Ok`.
    Flushed(R),
    /// Submit this stalled write now.
    Resume(W),
}

/// A frozen table, oldest first in the sealed queue.
pub struct Sealed<T> {
    pub table: Arc<T>,
    /// Its last WAL segment (0: its rotation failed, it is never flushed).
    pub segment: u64,
}

/// What a failure leaves to answer with an error.
pub struct Abandoned<W, R> {
    pub writes: Vec<W>,
    pub waiters: Vec<R>,
}

pub struct Pipeline<T, W, R> {
    limits: Limits,
    /// Generation `generation`: receives new writes.
    active: T,
    generation: u64,
    /// Bytes submitted (not yet necessarily applied) to the active generation.
    active_submitted: usize,
    /// The previous generation between its rotation being queued and completing.
    closing: Option<T>,
    sealed: VecDeque<Sealed<T>>,
    stalled: VecDeque<W>,
    write_stalls: u64,
    seals: u64,
    /// Sealed tables flushed so far (they flush in seal order, one per seal).
    flushed: u64,
    /// `Seal` callers waiting until `flushed` reaches their target.
    waiters: Vec<(u64, R)>,
    /// A `Seal` arrived during a rotation: seal again as soon as it completes.
    seal_after_rotation: bool,
}

impl<T: Default, W, R> Pipeline<T, W, R> {
    /// Starts with `active` (replayed from the WAL) holding `submitted` bytes.
    pub fn new(limits: Limits, active: T, submitted: usize) -> Self {
        Pipeline {
            limits,
            active,
            generation: 0,
            active_submitted: submitted,
            closing: None,
            sealed: VecDeque::new(),
            stalled: VecDeque::new(),
            write_stalls: 0,
            seals: 0,
            flushed: 0,
            waiters: Vec::new(),
            seal_after_rotation: false,
        }
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
    pub fn submitted(
        &mut self,
        len: usize,
        rotate: &mut dyn FnMut() -> Result<(), RotateRefused>,
    ) {
        self.active_submitted += len;
        if self.active_submitted >= self.limits.memtable_bytes
            || std::mem::take(&mut self.seal_after_rotation)
        {
            self.seal(rotate);
        }
    }

    /// Freezes the active generation behind a WAL rotation. A no-op while a rotation is
    /// already in progress or nothing was written.
    pub fn seal(&mut self, rotate: &mut dyn FnMut() -> Result<(), RotateRefused>) {
        if self.closing.is_some() || self.active_submitted == 0 {
            return;
        }
        let old = std::mem::take(&mut self.active);
        self.closing = Some(old);
        self.generation += 1;
        let submitted = std::mem::take(&mut self.active_submitted);
        if let Err(e) = rotate() {
            log::warn!("cannot queue a WAL rotation ({e:?}); will retry on the next write");
            self.active = self.closing.take().unwrap_or_default();
            self.generation -= 1;
            self.active_submitted = submitted;
            return;
        }
        self.seals += 1;
    }

    /// The table a durable write of `generation` is applied to (`None`: a bug).
    pub fn durable(&mut self, generation: u64) -> Option<&mut T> {
        if generation == self.generation {
            Some(&mut self.active)
        } else {
            self.closing.as_mut()
        }
    }

    /// The rotation queued at the last seal finished: the new segment, or `None` if it failed.
    pub fn rotation_completed(
        &mut self,
        new_segment: Option<u64>,
        rotate: &mut dyn FnMut() -> Result<(), RotateRefused>,
    ) -> Vec<Effect<T, W, R>> {
        let mut fx = Vec::new();
        let Some(table) = self.closing.take() else {
            log::error!("BUG: WAL rotated with no closing memtable");
            return fx;
        };
        let table = Arc::new(table);
        match new_segment {
            Some(new_segment) => {
                let segment = new_segment - 1;
                self.sealed.push_back(Sealed {
                    table: table.clone(),
                    segment,
                });
                fx.push(Effect::Flush { table, segment });
            }
            None => self.sealed.push_back(Sealed { table, segment: 0 }),
        }
        if self.active_submitted >= self.limits.memtable_bytes
            || std::mem::take(&mut self.seal_after_rotation)
        {
            self.seal(rotate);
        }
        fx
    }

    /// The oldest sealed table (last segment `segment`) is in an SSTable.
    pub fn flush_completed(&mut self, segment: u64) -> Vec<Effect<T, W, R>> {
        let mut fx = Vec::new();
        match self.sealed.front() {
            Some(s) if s.segment == segment => {
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

    /// An admin flush: `reply` is answered once every table sealed so far, and the active
    /// one, is flushed.
    pub fn seal_requested(
        &mut self,
        reply: R,
        rotate: &mut dyn FnMut() -> Result<(), RotateRefused>,
    ) -> Vec<Effect<T, W, R>> {
        let mut target = self.seals;
        if self.closing.is_some() && self.active_submitted > 0 {
            // A rotation is in progress; seal what was written since, right after it.
            self.seal_after_rotation = true;
            target += 1;
        } else {
            self.seal(rotate);
            target = self.seals;
        }
        if self.flushed >= target {
            return vec![Effect::Flushed(reply)];
        }
        self.waiters.push((target, reply));
        Vec::new()
    }

    /// The engine failed for good: every stalled write and waiter gets the error.
    pub fn failed(&mut self) -> Abandoned<W, R> {
        Abandoned {
            writes: self.stalled.drain(..).collect(),
            waiters: self.waiters.drain(..).map(|(_, r)| r).collect(),
        }
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

    /// Sealed tables waiting for (or in) a flush, not counting the closing one.
    pub fn sealed_len(&self) -> usize {
        self.sealed.len()
    }

    pub fn closing(&self) -> bool {
        self.closing.is_some()
    }

    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests;
