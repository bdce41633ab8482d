//! Model test of the write pipeline: random writes, admin flushes (`Seal`), WAL job
//! completions (appends and rotations, in submission order, as the one writer thread runs
//! them) and flush completions (in seal order, as the one Flusher runs them), optionally
//! with a small WAL queue and failures, against a model that knows which generation every
//! write belongs to and which writes each flush must cover. After every step the bounds are
//! checked; at the end the system quiesces (every queued WAL job and flush completes) and
//! nothing may be left waiting. Replay a run with `PROPTEST_RNG_SEED=<n>`; every shrunk
//! failure is pinned below as a named regression test.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type WriteId = u32;
type WaiterId = u32;
/// A table is the sequence numbers applied to it, in order.
type Table = Vec<u64>;
type Fx = Vec<Effect<Table, WriteId, WaiterId>>;

/// The next table has room for as many writes as this one holds (as the memtable's index
/// has room for its predecessor's keys).
impl Generation for Table {
    fn next_generation(&self) -> Self {
        Vec::with_capacity(self.len())
    }

    /// A write's memory is one byte, however large its record: the model's WAL limit and
    /// memory limit then both seal, depending on the sizes drawn.
    fn memory_bytes(&self) -> usize {
        self.len()
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    /// A client write of this many bytes.
    Write(u8),
    /// An admin flush.
    Seal,
    /// The WAL writer thread completes its oldest job (an append or a rotation).
    Wal,
    /// The Flusher completes its oldest table.
    Flush,
    /// The WAL fails (a write or sync): every later job fails and writes are refused.
    WalFails,
    /// The engine is poisoned: the next flush fails for good.
    FlushFails,
}

enum Job {
    Append {
        seq: u64,
        generation: u64,
        write: WriteId,
        len: usize,
    },
    Rotate,
}

/// What a `Seal` must cover when it is answered `Ok`.
struct Waiter {
    /// Writes submitted to the WAL before the request: sequence numbers below this.
    seq_before: u64,
    /// Tables sealed (rotations queued) before the request.
    sealed_before: u64,
}

struct Sim {
    pipe: Pipeline<Table, WriteId, WaiterId>,
    limits: Limits,
    wal: VecDeque<Job>,
    wal_cap: usize,
    wal_failed: bool,
    segment: u64,
    flusher: VecDeque<(Arc<Table>, u64)>,
    engine_failed: bool,
    next_seq: u64,
    next_write: WriteId,
    next_waiter: WaiterId,
    write_len: BTreeMap<WriteId, usize>,
    // The model.
    rotations_queued: u64,
    rotations_done: u64,
    /// Durable writes per generation.
    generations: BTreeMap<u64, BTreeSet<u64>>,
    in_wal: BTreeSet<u64>,
    durable: BTreeSet<u64>,
    flushed: BTreeSet<u64>,
    flushes: u64,
    writes_answered: BTreeSet<WriteId>,
    waiters: BTreeMap<WaiterId, Waiter>,
    waiters_answered: BTreeSet<WaiterId>,
}

/// The shell's rotation: a job on the WAL queue, refused when the queue is full.
fn rotator<'a>(
    wal: &'a mut VecDeque<Job>,
    cap: usize,
    queued: &'a mut u64,
) -> impl FnMut() -> Result<(), RotateRefused> + 'a {
    move || {
        if wal.len() >= cap {
            return Err(RotateRefused::Full);
        }
        wal.push_back(Job::Rotate);
        *queued += 1;
        Ok(())
    }
}

impl Sim {
    fn new(limits: Limits, wal_cap: usize) -> Sim {
        Sim {
            pipe: Pipeline::new(limits, Vec::new(), 0),
            limits,
            wal: VecDeque::new(),
            wal_cap,
            wal_failed: false,
            segment: 1,
            flusher: VecDeque::new(),
            engine_failed: false,
            next_seq: 1,
            next_write: 0,
            next_waiter: 0,
            write_len: BTreeMap::new(),
            rotations_queued: 0,
            rotations_done: 0,
            generations: BTreeMap::new(),
            in_wal: BTreeSet::new(),
            durable: BTreeSet::new(),
            flushed: BTreeSet::new(),
            flushes: 0,
            writes_answered: BTreeSet::new(),
            waiters: BTreeMap::new(),
            waiters_answered: BTreeSet::new(),
        }
    }

    /// The shell refuses writes and flushes once the WAL or the engine failed.
    fn poisoned(&self) -> bool {
        self.wal_failed || self.engine_failed
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Write(len) => self.write(usize::from(len)),
            Op::Seal => self.seal(),
            Op::Wal => self.wal_step(),
            Op::Flush => self.flush_step(),
            Op::WalFails => {
                self.wal_failed = true;
                Ok(())
            }
            Op::FlushFails => {
                self.engine_failed = true;
                Ok(())
            }
        }?;
        self.check_bounds()
    }

    fn write(&mut self, len: usize) -> Result<(), String> {
        let id = self.next_write;
        self.next_write += 1;
        self.write_len.insert(id, len);
        if self.poisoned() {
            return self.answer_write(id);
        }
        match self.pipe.accept(id) {
            Admit::Submit(w) => self.submit(w),
            Admit::Stalled => Ok(()),
            Admit::Refused(w) => self.answer_write(w),
        }
    }

    fn submit(&mut self, id: WriteId) -> Result<(), String> {
        if self.wal.len() >= self.wal_cap {
            return self.answer_write(id); // overloaded: nothing queued
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let generation = self.pipe.generation();
        if generation != self.rotations_queued {
            return Err(format!(
                "write {seq} tagged generation {generation}, but {} rotations were queued before it",
                self.rotations_queued
            ));
        }
        let len = self.write_len[&id];
        self.wal.push_back(Job::Append {
            seq,
            generation,
            write: id,
            len,
        });
        self.in_wal.insert(seq);
        let fx = {
            let mut rotate = rotator(&mut self.wal, self.wal_cap, &mut self.rotations_queued);
            self.pipe.submitted(len, &mut rotate)
        };
        self.apply(fx)
    }

    fn seal(&mut self) -> Result<(), String> {
        let id = self.next_waiter;
        self.next_waiter += 1;
        if self.poisoned() {
            self.waiters_answered.insert(id);
            return Ok(()); // answered at once with the poison
        }
        self.waiters.insert(
            id,
            Waiter {
                seq_before: self.next_seq,
                sealed_before: self.rotations_queued,
            },
        );
        let fx = {
            let mut rotate = rotator(&mut self.wal, self.wal_cap, &mut self.rotations_queued);
            self.pipe.seal_requested(id, &mut rotate)
        };
        self.apply(fx)
    }

    fn wal_step(&mut self) -> Result<(), String> {
        match self.wal.pop_front() {
            None => Ok(()),
            Some(Job::Append {
                seq,
                generation,
                write,
                len,
            }) => {
                self.in_wal.remove(&seq);
                if !self.wal_failed {
                    let Some(table) = self.pipe.durable(generation, len) else {
                        return Err(format!(
                            "durable write {seq} of generation {generation} has no table"
                        ));
                    };
                    table.push(seq);
                    self.durable.insert(seq);
                    self.generations.entry(generation).or_default().insert(seq);
                }
                self.answer_write(write)?;
                // Failed or not, the job left the WAL queue.
                let fx = {
                    let mut rotate =
                        rotator(&mut self.wal, self.wal_cap, &mut self.rotations_queued);
                    self.pipe.seal_if_due(&mut rotate)
                };
                self.apply(fx)
            }
            Some(Job::Rotate) => {
                let generation = self.rotations_done;
                self.rotations_done += 1;
                let new_segment = (!self.wal_failed).then(|| {
                    self.segment += 1;
                    self.segment
                });
                let fx = {
                    let mut rotate =
                        rotator(&mut self.wal, self.wal_cap, &mut self.rotations_queued);
                    self.pipe.rotation_completed(new_segment, &mut rotate)
                };
                for e in &fx {
                    if let Effect::Flush { table, segment } = e {
                        let want = self
                            .generations
                            .get(&generation)
                            .cloned()
                            .unwrap_or_default();
                        let got: BTreeSet<u64> = table.iter().copied().collect();
                        if got != want || got.len() != table.len() {
                            return Err(format!(
                                "sealed generation {generation} holds {table:?}, want {want:?}"
                            ));
                        }
                        if *segment != self.segment - 1 {
                            return Err(format!(
                                "generation {generation} flushes with segment {segment}, want {}",
                                self.segment - 1
                            ));
                        }
                    }
                }
                self.apply(fx)
            }
        }
    }

    fn flush_step(&mut self) -> Result<(), String> {
        let Some((table, segment)) = self.flusher.pop_front() else {
            return Ok(());
        };
        if self.engine_failed {
            // The Flusher answers `FlushFailed` for every queued table.
            self.flusher.clear();
            let fx = self.pipe.failed();
            return self.apply(fx);
        }
        self.flushes += 1;
        self.flushed.extend(table.iter().copied());
        let fx = self.pipe.flush_completed(segment);
        self.apply(fx)
    }

    fn apply(&mut self, fx: Fx) -> Result<(), String> {
        for e in fx {
            match e {
                Effect::Flush { table, segment } => self.flusher.push_back((table, segment)),
                Effect::Flushed(r) => self.waiter_flushed(r)?,
                Effect::Resume(w) => self.submit(w)?,
                Effect::FailWrite(w) => self.answer_write(w)?,
                Effect::FailWaiter(r) => self.answer_waiter(r)?,
            }
        }
        Ok(())
    }

    fn answer_write(&mut self, id: WriteId) -> Result<(), String> {
        if !self.writes_answered.insert(id) {
            return Err(format!("write {id} answered twice"));
        }
        Ok(())
    }

    fn answer_waiter(&mut self, id: WaiterId) -> Result<(), String> {
        if !self.waiters_answered.insert(id) {
            return Err(format!("seal {id} answered twice"));
        }
        self.waiters.remove(&id);
        Ok(())
    }

    /// A waiter answered `Ok`: everything submitted or sealed before it must be flushed.
    fn waiter_flushed(&mut self, id: WaiterId) -> Result<(), String> {
        let Some(w) = self.waiters.get(&id) else {
            return Err(format!("seal {id} answered Ok but is not waiting"));
        };
        // Writes that failed in the WAL were never acknowledged: nothing to flush.
        let unflushed = self
            .in_wal
            .range(..w.seq_before)
            .chain((self.durable.range(..w.seq_before)).filter(|s| !self.flushed.contains(s)));
        if let Some(s) = unflushed.min() {
            return Err(format!(
                "seal {id} answered before write {s}, submitted before it, was flushed"
            ));
        }
        if self.flushes < w.sealed_before {
            return Err(format!(
                "seal {id} answered after {} flushes, but {} tables were sealed before it",
                self.flushes, w.sealed_before
            ));
        }
        self.answer_waiter(id)
    }

    fn check_bounds(&self) -> Result<(), String> {
        let frozen = self.pipe.sealed_len() + usize::from(self.pipe.closing());
        if frozen > self.limits.max_sealed + 1 {
            return Err(format!(
                "{frozen} frozen tables, bound is max_sealed + 1 = {}",
                self.limits.max_sealed + 1
            ));
        }
        if self.rotations_queued - self.rotations_done > 1 {
            return Err("more than one rotation in flight".into());
        }
        if self.pipe.closing() != (self.rotations_queued > self.rotations_done) {
            return Err("closing table without a rotation in flight, or the reverse".into());
        }
        if self.pipe.stalled_now() > self.limits.max_stalled_writes {
            return Err(format!("{} stalled writes", self.pipe.stalled_now()));
        }
        Ok(())
    }

    /// Writes stop; every queued WAL job and flush completes. Nothing may be left waiting.
    fn quiesce(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            if !self.wal.is_empty() {
                self.wal_step()?;
            } else if !self.flusher.is_empty() {
                self.flush_step()?;
            } else {
                break;
            }
            self.check_bounds()?;
        }
        if !self.waiters.is_empty() {
            return Err(format!(
                "seals {:?} still wait after the system quiesced",
                self.waiters.keys().collect::<Vec<_>>()
            ));
        }
        let unanswered: Vec<WriteId> = (0..self.next_write)
            .filter(|w| !self.writes_answered.contains(w))
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "writes {unanswered:?} never answered after the system quiesced"
            ));
        }
        // A full active table is sealed once the WAL takes the rotation: never left full.
        let active = self.pipe.active();
        if !self.poisoned()
            && (active.memory_bytes() >= self.limits.memtable_bytes
                || self.pipe.active_submitted() >= self.limits.wal_bytes)
        {
            return Err(format!(
                "the active table is full ({} writes, {} bytes submitted) after the system quiesced",
                active.len(),
                self.pipe.active_submitted()
            ));
        }
        Ok(())
    }
}

fn run(limits: Limits, wal_cap: usize, ops: &[Op]) -> Result<(), String> {
    let mut sim = Sim::new(limits, wal_cap);
    for (i, op) in ops.iter().enumerate() {
        sim.step(op)
            .map_err(|e| format!("step {i} ({op:?}): {e}"))?;
    }
    sim.quiesce().map_err(|e| format!("at quiescence: {e}"))
}

fn limits() -> impl Strategy<Value = Limits> {
    (1usize..48, 1usize..4, 0usize..5, 1usize..48).prop_map(
        |(memtable_bytes, max_sealed, stalled, wal_bytes)| Limits {
            memtable_bytes,
            wal_bytes,
            max_sealed,
            max_stalled_writes: stalled,
        },
    )
}

fn op(faults: bool) -> impl Strategy<Value = Op> {
    let fault = if faults { 1 } else { 0 };
    prop_oneof![
        6 => (1u8..=16).prop_map(Op::Write),
        2 => Just(Op::Seal),
        6 => Just(Op::Wal),
        3 => Just(Op::Flush),
        fault => Just(Op::WalFails),
        fault => Just(Op::FlushFails),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The real system without faults: an unbounded WAL queue, nothing fails.
    #[test]
    fn pipeline_keeps_its_promises(
        limits in limits(),
        ops in prop::collection::vec(op(false), 0..120),
    ) {
        run(limits, usize::MAX, &ops).map_err(TestCaseError::fail)?;
    }

    /// A WAL queue of a few jobs (rotations and writes get refused) and failures.
    #[test]
    fn pipeline_keeps_its_promises_under_faults(
        limits in limits(),
        wal_cap in 1usize..6,
        ops in prop::collection::vec(op(true), 0..120),
    ) {
        run(limits, wal_cap, &ops).map_err(TestCaseError::fail)?;
    }
}

fn pinned(memtable_bytes: usize, max_sealed: usize, max_stalled_writes: usize) -> Limits {
    Limits {
        memtable_bytes,
        // The bytes the regressions below were found with (when only WAL bytes sealed).
        wal_bytes: memtable_bytes,
        max_sealed,
        max_stalled_writes,
    }
}

/// Postmortem (issue 8, defect 2; the model's first find, shrunk): the third write fills the
/// memtable and queues a rotation; a `Seal` during it set "seal after rotation"; the next
/// write cleared that flag, and its `seal()` was a no-op because a rotation was in flight.
/// The rotation completed without sealing again, and the `Seal` waited for seal 2 until the
/// memtable filled by itself: forever, as writes stopped. Fix: a requested seal stays
/// requested until a seal happens.
#[test]
fn a_flush_during_a_rotation_is_not_forgotten_by_the_next_write() {
    use Op::*;
    let ops = [Write(7), Write(16), Write(13), Write(1), Seal, Write(1)];
    run(pinned(36, 1, 0), usize::MAX, &ops).unwrap();
}

/// Postmortem (the model's first find with a small WAL queue, shrunk): the write fills the
/// one-job WAL queue, so the `Seal`'s rotation is refused; the old `seal()` undid itself
/// silently and the handler took `target = seals` (0), answering the flush at once although
/// its write was in no table. Fix: the target is the seal that will freeze the write, and a
/// refused rotation is retried when the WAL queue drains.
#[test]
fn a_flush_whose_rotation_the_wal_queue_refuses_waits_for_its_writes() {
    use Op::*;
    run(pinned(1, 1, 0), 1, &[Write(1), Seal]).unwrap();
}

/// Postmortem (found by the model while fixing the previous one, shrunk): the seal retried on
/// WAL completions was retried only after a successful batch; when the WAL failed, the
/// failed batch was its last completion, no rotation was ever queued, and the `Seal` waited
/// forever. Fix: every completed batch retries, failed or not (the rotation then fails and
/// the waiter hears why).
#[test]
fn a_flush_waiting_for_a_refused_rotation_hears_of_a_wal_failure() {
    use Op::*;
    run(pinned(1, 1, 0), 1, &[Write(1), Seal, WalFails]).unwrap();
}

/// Postmortem (found by reading the old code while writing the model): a failed rotation put
/// its table on the sealed queue with segment 0 and never flushed it, so a `Seal` waiting for
/// it, and writes stalled behind it, waited forever. Fix: a failed rotation fails every
/// stalled write and waiter (the WAL is poisoned; nothing more can be flushed).
#[test]
fn a_failed_rotation_answers_the_flush_waiting_for_it() {
    use Op::*;
    run(pinned(1, 1, 0), usize::MAX, &[Write(1), Seal, WalFails]).unwrap();
}

/// The WAL writer thread is gone: a rotation cannot even be queued, so a waiter is failed
/// rather than left waiting for a seal that cannot happen.
#[test]
fn a_stopped_wal_writer_fails_the_flush_at_once() {
    let mut pipe: Pipeline<Table, WriteId, WaiterId> = Pipeline::new(pinned(100, 1, 0), vec![], 0);
    let mut stopped = || Err(RotateRefused::Stopped);
    assert!(pipe.submitted(1, &mut stopped).is_empty());
    let fx = pipe.seal_requested(7, &mut stopped);
    assert!(matches!(fx.as_slice(), [Effect::FailWaiter(7)]));
    assert_eq!(pipe.waiters(), 0);
}

/// A seal makes the active table's `next_generation` the new active table (the memtable
/// sizes it for the keys of the one it follows).
#[test]
fn a_seal_starts_the_next_generation_of_the_sealed_table() {
    let mut pipe: Pipeline<Table, WriteId, WaiterId> =
        Pipeline::new(pinned(100, 1, 0), vec![1, 2, 3], 300);
    let mut ok = || Ok(());
    assert!(pipe.seal_if_due(&mut ok).is_empty());
    assert!(pipe.closing());
    assert!(pipe.active().is_empty());
    assert!(
        pipe.active().capacity() >= 3,
        "the new active table is the next generation"
    );
}
