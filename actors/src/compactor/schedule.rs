//! When the Compactor runs a round: the pure decision core of the actor (no I/O, no clock;
//! the actor passes `now` and fires the retry timers it is told to set).
//!
//! Invariants:
//! - At most one round runs; a trigger during a round asks for one more after it, so a
//!   flush that lands mid-round is never left uncompacted.
//! - After a failed round nothing starts before the backoff deadline (ticks and flushes
//!   that arrive meanwhile are dropped: the retry covers them), so a compaction that keeps
//!   failing -- a full disk, also right after a restart -- costs one attempt per backoff
//!   step, never a hot loop. A success resets the backoff.

use crate::backoff::Retry;
use std::time::{Duration, Instant};

/// What the actor does once a round is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRound {
    /// Nothing more to do until the next trigger.
    Idle,
    /// Something changed during the round: run another one now.
    RunAgain,
    /// The round failed: set a timer for `delay` carrying `token`
    /// (see [`Schedule::retry_fired`]).
    RetryIn { delay: Duration, token: u64 },
}

#[derive(Debug)]
pub(crate) struct Schedule {
    running: bool,
    again: bool,
    retry: Retry,
}

impl Schedule {
    pub(crate) fn new(min_backoff: Duration, max_backoff: Duration) -> Schedule {
        Schedule {
            running: false,
            again: false,
            retry: Retry::new(min_backoff, max_backoff),
        }
    }

    /// A tick, a flush landing: true = start a round now.
    pub(crate) fn trigger(&mut self, now: Instant) -> bool {
        if self.running {
            self.again = true;
            return false;
        }
        // Backing off: the pending retry timer runs the round that covers this trigger.
        if !self.retry.ready(now) {
            return false;
        }
        self.start()
    }

    /// The retry timer carrying `token` fired: true = start a round now. A stale timer (a
    /// trigger after the deadline already ran the retry) is ignored.
    pub(crate) fn retry_fired(&mut self, token: u64) -> bool {
        if !self.retry.fired(token) {
            return false;
        }
        if self.running {
            self.again = true;
            return false;
        }
        self.start()
    }

    fn start(&mut self) -> bool {
        self.running = true;
        self.again = false;
        true
    }

    /// The round that started last ended at `now`, successfully or not.
    pub(crate) fn finished(&mut self, now: Instant, ok: bool) -> AfterRound {
        self.running = false;
        if !ok {
            let (delay, token) = self.retry.failed(now);
            return AfterRound::RetryIn { delay, token };
        }
        self.retry.succeeded();
        if std::mem::take(&mut self.again) {
            self.start();
            AfterRound::RunAgain
        } else {
            AfterRound::Idle
        }
    }

    pub(crate) fn consecutive_failures(&self) -> u64 {
        self.retry.consecutive_failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_trigger_during_a_round_runs_one_more() {
        let t0 = Instant::now();
        let mut s = Schedule::new(S, 60 * S);
        assert!(s.trigger(t0));
        assert!(!s.trigger(t0), "one round at a time");
        assert!(!s.trigger(t0));
        assert_eq!(s.finished(t0, true), AfterRound::RunAgain);
        assert!(!s.trigger(t0), "the extra round is running");
        assert_eq!(s.finished(t0, true), AfterRound::RunAgain);
        assert_eq!(s.finished(t0, true), AfterRound::Idle);
        assert!(s.trigger(t0));
    }

    #[test]
    fn after_a_failure_only_the_deadline_or_the_timer_starts_a_round() {
        let t0 = Instant::now();
        let mut s = Schedule::new(S, 60 * S);
        assert!(s.trigger(t0));
        let AfterRound::RetryIn { delay, token } = s.finished(t0, false) else {
            panic!("a failed round must back off");
        };
        assert_eq!(delay, S);
        assert!(!s.trigger(t0 + S / 2), "no trigger during the backoff");
        assert!(s.retry_fired(token));
        let AfterRound::RetryIn {
            delay,
            token: second,
        } = s.finished(t0 + S, false)
        else {
            panic!("failed again");
        };
        assert_eq!(delay, 2 * S);
        assert_eq!(s.consecutive_failures(), 2);
        // A tick after the deadline may run the retry before its timer fires ...
        assert!(s.trigger(t0 + 3 * S + S / 10));
        let AfterRound::RetryIn { token: newer, .. } = s.finished(t0 + 4 * S, false) else {
            panic!("failed again");
        };
        // ... and the older timer, firing late, cannot cut the new wait short.
        assert!(!s.retry_fired(second));
        assert!(!s.trigger(t0 + 5 * S));
        assert!(s.retry_fired(newer));
        assert_eq!(s.finished(t0 + 8 * S, true), AfterRound::Idle);
        assert_eq!(s.consecutive_failures(), 0);
        assert!(s.trigger(t0 + 8 * S), "healthy again: triggers run at once");
    }
}
