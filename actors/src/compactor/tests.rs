//! Compactor stories: the actor's schedule driven by hand-fired time over a real engine
//! whose compaction outputs fail with ENOSPC (a test-only fault in the table writer).

use super::schedule::{AfterRound, Schedule};
use super::{background_round, MAX_BACKOFF, MIN_BACKOFF, TICK};
use crate::engine::compaction::CompactionOptions;
use crate::engine::sstable::fault::{inject, FaultOp};
use crate::engine::{Entry, Tables, TablesOptions};
use std::path::Path;
use std::time::{Duration, Instant};

fn opts() -> TablesOptions {
    TablesOptions {
        compaction: CompactionOptions {
            l0_trigger: 2,
            ..CompactionOptions::default()
        },
        ..TablesOptions::default()
    }
}

fn open(dir: &Path) -> Tables {
    Tables::open(dir, opts()).expect("open").0
}

/// What the Compactor actor does, with time in our hands: a `TablesChanged` arrives every
/// `STEP`, a flush really lands every `FLUSH_EVERY`, the periodic tick fires every `TICK`,
/// and the retry timer fires when due.
struct Driver {
    schedule: Schedule,
    now: Instant,
    timer: Option<(Instant, u64)>,
    rounds: u64,
    failed_rounds: u64,
}

const STEP: Duration = Duration::from_millis(100);
const FLUSH_EVERY: Duration = Duration::from_secs(10);

impl Driver {
    fn new(now: Instant) -> Driver {
        Driver {
            schedule: Schedule::new(MIN_BACKOFF, MAX_BACKOFF),
            now,
            timer: None,
            rounds: 0,
            failed_rounds: 0,
        }
    }

    fn round(&mut self, t: &Tables) {
        loop {
            self.rounds += 1;
            let ok = background_round(t).is_ok();
            self.failed_rounds += u64::from(!ok);
            match self.schedule.finished(self.now, ok) {
                AfterRound::Idle => return,
                AfterRound::RunAgain => continue,
                AfterRound::RetryIn { delay, token } => {
                    self.timer = Some((self.now + delay, token));
                    return;
                }
            }
        }
    }

    /// Runs the actor's events for `span` of hand-fired time.
    fn run_for(&mut self, t: &Tables, span: Duration, seq: &mut u64) {
        let start = self.now;
        let mut last_tick = start;
        let mut last_flush = start;
        while self.now < start + span {
            self.now += STEP;
            if let Some((at, token)) = self.timer {
                if self.now >= at {
                    self.timer = None;
                    if self.schedule.retry_fired(token) {
                        self.round(t);
                    }
                }
            }
            if self.now - last_flush >= FLUSH_EVERY {
                last_flush = self.now;
                *seq += 1;
                t.flush(vec![Entry::put(format!("k{}", *seq % 7), *seq, "v")], None)
                    .expect("flushes go on while compaction fails");
            }
            if self.schedule.trigger(self.now) {
                self.round(t);
            }
            if self.now - last_tick >= TICK {
                last_tick = self.now;
                if self.schedule.trigger(self.now) {
                    self.round(t);
                }
            }
        }
    }
}

/// Sum of the backoff delays: how many failed attempts fit in `span` at most, plus the
/// first one at start.
fn max_attempts_in(span: Duration) -> u64 {
    let mut b = crate::backoff::Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let (mut waited, mut n) = (Duration::ZERO, 1);
    loop {
        waited += b.next_delay();
        if waited > span {
            return n;
        }
        n += 1;
    }
}

#[test]
fn a_restart_on_a_full_disk_backs_off_instead_of_retrying_hot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = inject(
        dir.path(),
        1..=usize::MAX,
        FaultOp::Write,
        libc::ENOSPC,
        None,
    );
    let mut seq = 0;
    let t0 = Instant::now();
    {
        let t = open(dir.path());
        for _ in 0..2 {
            seq += 1;
            t.flush(vec![Entry::put("k", seq, "v")], None)
                .expect("flush");
        }
        let mut d = Driver::new(t0);
        d.run_for(&t, Duration::from_secs(10), &mut seq);
        assert!(d.failed_rounds >= 1);
        assert_eq!(t.poisoned(), None);
    }
    // Restart with the disk still full: a fresh actor tries once at start, then backs off.
    let t = open(dir.path());
    let mut d = Driver::new(t0);
    assert!(d.schedule.trigger(d.now), "the actor's start-up trigger");
    d.round(&t);
    assert_eq!(d.failed_rounds, 1);
    assert_eq!(
        t.poisoned(),
        None,
        "a restart does not poison itself at once"
    );
    let span = Duration::from_secs(300);
    let hits_before = full.hits();
    d.run_for(&t, span, &mut seq);
    // 3,000 `TablesChanged` and 60 ticks asked for a round; the backoff allowed a handful.
    let bound = max_attempts_in(span);
    assert!(
        d.rounds <= bound + 1,
        "{} rounds in {span:?} of failing compaction (bound {bound})",
        d.rounds
    );
    assert!(d.rounds >= 5, "it keeps retrying: {} rounds", d.rounds);
    assert_eq!(d.rounds, d.failed_rounds, "every round failed");
    assert_eq!(
        full.hits() - hits_before,
        d.rounds - 1,
        "each one really ran"
    );
    assert_eq!(t.poisoned(), None);
    assert_eq!(d.schedule.consecutive_failures(), d.rounds);

    // Space comes back: the next retry compacts, and the backoff starts over.
    drop(full);
    let before = d.rounds;
    d.run_for(&t, MAX_BACKOFF + STEP, &mut seq);
    assert!(d.rounds > before);
    assert_eq!(d.schedule.consecutive_failures(), 0);
    let v = t.current_version();
    assert!(
        (1..v.num_levels()).any(|l| !v.level(l).is_empty()),
        "the retry compacted"
    );
    assert!(v.level(0).len() < 2 + 1, "L0 is back under its trigger");
}
