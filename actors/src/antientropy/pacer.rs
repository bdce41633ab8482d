//! The throttle: anti-entropy moves at most `rate` bytes a second on average (sent,
//! received or scanned), so client traffic keeps its latency. Pure: time is passed in.

use std::time::{Duration, Instant};

/// A leaky bucket: each use of `bytes` books `bytes / rate` seconds of the budget; the
/// caller waits until its booking starts (at most `burst` may be booked ahead of now for
/// free, so small exchanges do not wait at all).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    burst: Duration,
    next_free: Option<Instant>,
}

impl Pacer {
    /// `rate` bytes a second (0: unlimited).
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            burst: Duration::from_millis(100),
            next_free: None,
        }
    }

    /// Books `bytes` at `now`; the answer is how long to wait before going on.
    pub fn book(&mut self, now: Instant, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let start = self.next_free.map_or(now, |t| t.max(now));
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let end = start + cost;
        self.next_free = Some(end);
        end.saturating_duration_since(now)
            .saturating_sub(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_holds_the_average_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000);
        assert_eq!(p.book(t0, 50), Duration::ZERO, "within the burst");
        // 10 x 1000 bytes at once: the last must wait ~10 s minus the burst.
        let mut wait = Duration::ZERO;
        for _ in 0..10 {
            wait = p.book(t0, 1000);
        }
        assert!(wait > Duration::from_millis(9_900) && wait < Duration::from_millis(10_100));
        // Much later the budget is free again.
        assert_eq!(p.book(t0 + Duration::from_secs(60), 10), Duration::ZERO);
        assert_eq!(Pacer::new(0).book(t0, u64::MAX), Duration::ZERO);
    }
}
