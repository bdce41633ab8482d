//! Retrying failed background work: a pure exponential [`Backoff`], the [`Retry`] gate
//! that the Flusher and the Compactor consult before they try again, and the
//! [`FailureStats`] they publish to `admin status`, `admin stats` and /metrics.
//!
//! No I/O and no clock of its own: callers pass `now`, so tests fire time by hand.
//!
//! Invariants:
//! - Delays double from `min` and never exceed `max`; `reset` (after a success) starts over.
//! - While a retry is pending, `Retry::ready` is false until its deadline, so triggers that
//!   arrive meanwhile (a tick, a new flush) cannot turn a failing task into a hot loop.
//! - Each failure hands out a fresh token; a retry timer carrying an older token is stale
//!   (another attempt already ran and failed since) and is ignored.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Exponential backoff: `min`, `2 min`, `4 min`, ... capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; each call doubles the one after, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Failure state of one kind of background work: when it may run again and how often it
/// has failed in a row.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    /// `(deadline, token)` of the pending retry, if the last attempt failed.
    pending: Option<(Instant, u64)>,
    tokens: u64,
    consecutive: u64,
}

impl Retry {
    pub fn new(min: Duration, max: Duration) -> Retry {
        Retry {
            backoff: Backoff::new(min, max),
            pending: None,
            tokens: 0,
            consecutive: 0,
        }
    }

    /// May an attempt start at `now`? False while a retry waits for its deadline.
    pub fn ready(&self, now: Instant) -> bool {
        self.pending.is_none_or(|(at, _)| now >= at)
    }

    /// An attempt failed at `now`: returns how long to wait and the token the retry timer
    /// must carry.
    pub fn failed(&mut self, now: Instant) -> (Duration, u64) {
        let delay = self.backoff.next_delay();
        self.tokens += 1;
        self.consecutive += 1;
        self.pending = Some((now + delay, self.tokens));
        (delay, self.tokens)
    }

    /// The retry timer with `token` fired: true if it is the current one (the wait is then
    /// over, whatever the clock says); false if it is stale.
    pub fn fired(&mut self, token: u64) -> bool {
        match self.pending {
            Some((_, t)) if t == token => {
                self.pending = None;
                true
            }
            _ => false,
        }
    }

    /// An attempt succeeded: no retry pending, the backoff starts over.
    pub fn succeeded(&mut self) {
        self.pending = None;
        self.consecutive = 0;
        self.backoff.reset();
    }

    /// Failures since the last success (0 = healthy).
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive
    }
}

/// Failure counters of one kind of background work, shared with `troupe admin status`,
/// `admin stats` and /metrics (relaxed atomics: statistics only).
#[derive(Debug, Default)]
pub struct FailureStats {
    total: AtomicU64,
    consecutive: AtomicU64,
    retry_in_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What `admin stats` shows of [`FailureStats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureSnapshot {
    /// Failed attempts since start.
    pub failures: u64,
    /// Failed attempts since the last success: 0 when the work is healthy.
    pub consecutive_failures: u64,
    /// The wait chosen after the last failure (0 when healthy).
    pub retry_in_ms: u64,
    /// The last failure's error, kept after recovery for the record.
    pub last_error: Option<String>,
}

impl FailureStats {
    /// An attempt failed with `error`; the `consecutive`-th in a row, retried after `delay`.
    pub fn failed(&self, error: String, consecutive: u64, delay: Duration) {
        self.total.fetch_add(1, Relaxed);
        self.consecutive.store(consecutive, Relaxed);
        self.retry_in_ms
            .store(delay.as_millis().try_into().unwrap_or(u64::MAX), Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// An attempt succeeded.
    pub fn recovered(&self) {
        self.consecutive.store(0, Relaxed);
        self.retry_in_ms.store(0, Relaxed);
    }

    pub fn snapshot(&self) -> FailureSnapshot {
        FailureSnapshot {
            failures: self.total.load(Relaxed),
            consecutive_failures: self.consecutive.load(Relaxed),
            retry_in_ms: self.retry_in_ms.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl FailureSnapshot {
    /// One line for `admin status` if `work` is failing now, else `None`.
    pub fn failing(&self, work: &str) -> Option<String> {
        (self.consecutive_failures > 0).then(|| {
            format!(
                "{work} failing ({} attempts in a row, retry {} ms after the last): {}",
                self.consecutive_failures,
                self.retry_in_ms,
                self.last_error.as_deref().unwrap_or("unknown error")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset_starts_over() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let got: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn a_cap_below_the_minimum_is_the_minimum() {
        let mut b = Backoff::new(100 * MS, 10 * MS);
        assert_eq!((b.next_delay(), b.next_delay()), (100 * MS, 100 * MS));
    }

    #[test]
    fn a_failed_attempt_blocks_triggers_until_its_deadline() {
        let t0 = Instant::now();
        let mut r = Retry::new(100 * MS, 1000 * MS);
        assert!(r.ready(t0));
        let (d, _) = r.failed(t0);
        assert_eq!(d, 100 * MS);
        assert!(!r.ready(t0 + 99 * MS));
        assert!(r.ready(t0 + 100 * MS));
        let (d, _) = r.failed(t0 + 100 * MS);
        assert_eq!(d, 200 * MS);
        assert_eq!(r.consecutive_failures(), 2);
        r.succeeded();
        assert!(r.ready(t0));
        assert_eq!(r.consecutive_failures(), 0);
        assert_eq!(
            r.failed(t0).0,
            100 * MS,
            "backoff starts over after a success"
        );
    }

    #[test]
    fn only_the_newest_retry_timer_counts() {
        let t0 = Instant::now();
        let mut r = Retry::new(100 * MS, 1000 * MS);
        let (_, old) = r.failed(t0);
        // A trigger at the deadline ran the retry before its timer fired, and failed again.
        let (_, new) = r.failed(t0 + 100 * MS);
        assert!(
            !r.fired(old),
            "a stale timer must not cut the new wait short"
        );
        assert!(!r.ready(t0 + 101 * MS));
        assert!(r.fired(new));
        assert!(r.ready(t0 + 101 * MS));
        assert!(!r.fired(new), "a timer fires once");
    }

    #[test]
    fn failure_stats_say_when_work_is_failing_and_keep_the_last_error() {
        let s = FailureStats::default();
        assert_eq!(s.snapshot().failing("compaction"), None);
        s.failed("ENOSPC".into(), 2, 400 * MS);
        let line = s.snapshot().failing("compaction").expect("failing");
        assert!(line.contains("2 attempts") && line.contains("400 ms") && line.contains("ENOSPC"));
        s.recovered();
        let snap = s.snapshot();
        assert_eq!(snap.failing("compaction"), None);
        assert_eq!(
            (snap.failures, snap.last_error.as_deref()),
            (1, Some("ENOSPC"))
        );
    }

    proptest::proptest! {
        #[test]
        fn delays_never_shrink_and_never_pass_the_cap(
            min_ms in 1u64..1000, max_ms in 1u64..100_000, n in 1usize..80
        ) {
            let ms = Duration::from_millis;
            let mut b = Backoff::new(ms(min_ms), ms(max_ms));
            let mut last = Duration::ZERO;
            for _ in 0..n {
                let d = b.next_delay();
                proptest::prop_assert!(d >= last);
                proptest::prop_assert!(d <= ms(max_ms.max(min_ms)));
                proptest::prop_assert!(d >= ms(min_ms));
                last = d;
            }
        }
    }
}
