//! A token-bucket rate limiter for background writes (flush and compaction output), so a
//! big compaction cannot starve the WAL's fsyncs of disk bandwidth.
//!
//! The clock is injected (`Clock`) so tests drive time by hand and never assert wall-clock
//! speed. The bucket may go into debt: a caller asking for more than the burst proceeds
//! after sleeping off the deficit, which keeps large blocks from deadlocking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time source; `now` is monotonic from an arbitrary origin.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// The real clock.
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

struct Bucket {
    tokens: f64,
    last: Duration,
}

pub struct RateLimiter {
    bytes_per_sec: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// `bytes_per_sec` must be > 0; `burst` is the bucket size (starts full).
    pub fn new(bytes_per_sec: u64, burst: u64, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            burst: burst.max(1) as f64,
            bucket: Mutex::new(Bucket {
                tokens: burst.max(1) as f64,
                last: now,
            }),
            clock,
        }
    }

    /// Take `bytes` tokens, sleeping if the bucket is in debt. Returns the time slept.
    pub fn acquire(&self, bytes: u64) -> Duration {
        let wait = {
            // A poisoned lock only means another writer panicked mid-update of two floats;
            // the bucket is still usable.
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.clock.now();
            let elapsed = now.saturating_sub(b.last).as_secs_f64();
            b.last = now;
            b.tokens = (b.tokens + elapsed * self.bytes_per_sec).min(self.burst);
            b.tokens -= bytes as f64;
            if b.tokens < 0.0 {
                Duration::from_secs_f64(-b.tokens / self.bytes_per_sec)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            self.clock.sleep(wait);
        }
        wait
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock whose `sleep` advances time instantly.
    #[derive(Default)]
    pub struct FakeClock {
        pub now: Mutex<Duration>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.now.lock().expect("test clock lock")
        }
        fn sleep(&self, d: Duration) {
            *self.now.lock().expect("test clock lock") += d;
        }
    }

    #[test]
    fn limits_to_configured_rate() {
        let clock = Arc::new(FakeClock::default());
        let rl = RateLimiter::new(1_000_000, 100_000, clock.clone());
        for _ in 0..100 {
            rl.acquire(100_000); // 10 MB total
        }
        let t = clock.now().as_secs_f64();
        // First 100 KB come from the full bucket; the remaining 9.9 MB take 9.9 s.
        assert!((t - 9.9).abs() < 0.01, "took {t}s");
    }

    #[test]
    fn idle_time_refills_only_up_to_burst() {
        let clock = Arc::new(FakeClock::default());
        let rl = RateLimiter::new(1000, 500, clock.clone());
        clock.sleep(Duration::from_secs(100));
        assert_eq!(rl.acquire(500), Duration::ZERO);
        let w = rl.acquire(1000);
        assert!((w.as_secs_f64() - 1.0).abs() < 1e-6);
    }
}
