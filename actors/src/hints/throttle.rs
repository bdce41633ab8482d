//! A token bucket over bytes: hand-off delivery may send `rate` bytes per second on
//! average, with bursts of up to `burst`. Pure: the caller passes the time.
//!
//! A batch is allowed while the bucket is positive and may take it below zero (one hint
//! can be larger than the burst); the debt is paid back before the next batch, so the
//! average stays at `rate`.

#[derive(Debug, Clone)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64, burst: u64, now_ms: u64) -> Throttle {
        Throttle {
            rate: bytes_per_sec as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// The bytes a batch may carry now (0: wait).
    pub fn allowance(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        if self.tokens > 0.0 {
            self.tokens as u64
        } else {
            0
        }
    }

    /// A batch of `bytes` was sent.
    pub fn spend(&mut self, bytes: u64) {
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_rate_holds_even_with_oversized_batches() {
        let mut t = Throttle::new(1000, 500, 0);
        assert_eq!(t.allowance(0), 500);
        t.spend(2000); // one hint larger than the burst
        assert_eq!(t.allowance(1000), 0, "1500 bytes of debt, 1000 paid back");
        assert_eq!(t.allowance(1600), 100);
        assert_eq!(t.allowance(10_000), 500, "capped at the burst");
    }
}
