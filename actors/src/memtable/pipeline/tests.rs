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
    },
    Rotate,
}

/// What a `Seal` must cover when it is answered `Ok`.
struct Waiter {
    /// Writes submitted to the WAL before the request.
    covers: BTreeSet<u64>,
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
        self.wal.push_back(Job::Append {
            seq,
            generation,
            write: id,
        });
        self.in_wal.insert(seq);
        let len = self.write_len[&id];
        let mut rotate = rotator(&mut self.wal, self.wal_cap, &mut self.rotations_queued);
        self.pipe.submitted(len, &mut rotate);
        Ok(())
    }

    fn seal(&mut self) -> Result<(), String> {
        let id = self.next_waiter;
        self.next_waiter += 1;
        if self.poisoned() {
            self.waiters_answered.insert(id);
            return Ok(()); // answered at once with the poison
        }
        let covers = self.in_wal.union(&self.durable).copied().collect();
        self.waiters.insert(
            id,
            Waiter {
                covers,
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
            }) => {
                self.in_wal.remove(&seq);
                if self.wal_failed {
                    return self.answer_write(write);
                }
                let Some(table) = self.pipe.durable(generation) else {
                    return Err(format!(
                        "durable write {seq} of generation {generation} has no table"
                    ));
                };
                table.push(seq);
                self.durable.insert(seq);
                self.generations.entry(generation).or_default().insert(seq);
                self.answer_write(write)
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
                        let want = self.generations.get(&generation).cloned().unwrap_or_default();
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
            let abandoned = self.pipe.failed();
            for w in abandoned.writes {
                self.answer_write(w)?;
            }
            for r in abandoned.waiters {
                self.answer_waiter(r)?;
            }
            return Ok(());
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
        for s in &w.covers {
            if self.in_wal.contains(s) || (self.durable.contains(s) && !self.flushed.contains(s))
            {
                return Err(format!(
                    "seal {id} answered before write {s}, submitted before it, was flushed"
                ));
            }
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
        Ok(())
    }
}

fn run(limits: Limits, wal_cap: usize, ops: &[Op]) -> Result<(), String> {
    let mut sim = Sim::new(limits, wal_cap);
    for (i, op) in ops.iter().enumerate() {
        sim.step(op).map_err(|e| format!("step {i} ({op:?}): {e}"))?;
    }
    sim.quiesce().map_err(|e| format!("at quiescence: {e}"))
}

fn limits() -> impl Strategy<Value = Limits> {
    (1usize..48, 1usize..4, 0usize..5).prop_map(|(memtable_bytes, max_sealed, stalled)| Limits {
        memtable_bytes,
        max_sealed,
        max_stalled_writes: stalled,
    })
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
        cases: 2000,
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
