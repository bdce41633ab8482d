//! When each request in flight times out (pure: the caller passes the times).
//!
//! Owns: one deadline per request id. Invariants: a request has at most one deadline, the
//! earliest it was armed with while pending; a deadline leaves when it fires
//! ([`Deadlines::take_due`]) or when its request ends ([`Deadlines::forget`]), so the map
//! holds only requests in flight (a heap of every deadline ever armed grew by one entry
//! per request until each expired: 1.5 million entries at 300k requests/s and a 5 s
//! timeout).

use std::time::Instant;

use crate::idmap::IdMap;

#[derive(Default)]
pub struct Deadlines(IdMap<u64, Instant>);

impl Deadlines {
    /// Request `req` times out at `at`, or at its pending deadline if that is earlier.
    pub fn arm(&mut self, req: u64, at: Instant) {
        self.0
            .entry(req)
            .and_modify(|d| *d = (*d).min(at))
            .or_insert(at);
    }

    /// Request `req` ended: it no longer times out.
    pub fn forget(&mut self, req: u64) {
        self.0.remove(&req);
    }

    /// Removes and returns the requests whose deadline is at or before `now`, soonest
    /// first (ties by id). A periodic tick calls this; its cost is the number in flight.
    pub fn take_due(&mut self, now: Instant) -> Vec<u64> {
        let mut due: Vec<(Instant, u64)> = self
            .0
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(req, at)| (*at, *req))
            .collect();
        due.sort_unstable();
        for (_, req) in &due {
            self.0.remove(req);
        }
        due.into_iter().map(|(_, req)| req).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn due_deadlines_fire_once_soonest_first() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.arm(3, ms(t0, 30));
        d.arm(1, ms(t0, 10));
        d.arm(2, ms(t0, 10));
        d.arm(4, ms(t0, 50));
        assert!(d.take_due(ms(t0, 9)).is_empty());
        assert_eq!(d.take_due(ms(t0, 30)), vec![1, 2, 3]);
        assert!(d.take_due(ms(t0, 30)).is_empty(), "fired once");
        assert_eq!(d.len(), 1);
        assert_eq!(d.take_due(ms(t0, 1000)), vec![4]);
        assert!(d.is_empty());
    }

    #[test]
    fn a_second_arm_keeps_the_earlier_deadline_and_a_fired_one_can_be_rearmed() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.arm(7, ms(t0, 100));
        d.arm(7, ms(t0, 300)); // re-armed while pending: the first deadline stands
        assert_eq!(d.take_due(ms(t0, 100)), vec![7]);
        d.arm(7, ms(t0, 400)); // after it fired: a new deadline
        d.arm(8, ms(t0, 50));
        d.arm(8, ms(t0, 20)); // an earlier one replaces a later one
        assert_eq!(d.take_due(ms(t0, 399)), vec![8]);
        assert_eq!(d.take_due(ms(t0, 400)), vec![7]);
    }

    #[test]
    fn an_ended_request_leaves_no_deadline() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for req in 0..1000 {
            d.arm(req, ms(t0, req));
            d.forget(req);
        }
        d.forget(5000); // unknown: nothing happens
        assert!(d.is_empty());
        assert!(d.take_due(ms(t0, 5000)).is_empty());
    }
}
