//! Per-actor counters for `troupe admin actors` and the metrics endpoint, and the client
//! request latency histograms ([`RequestStats`]).
//!
//! Every actor kind registers one [`ActorCounters`]; senders bump `sent` through
//! [`ActorCounters::sent`] and handlers bump `handled`, so `sent - handled` is the number of
//! messages waiting in (or being handled from) the mailbox. Per-connection actors share one
//! entry and count `instances`.
//!
//! Actix does not expose a mailbox's length, and many messages come from places that do not
//! hold the receiver's counters (timers, `Recipient`s handed to other subsystems, the peer
//! transport, admin queries). So each message kind is counted one of two ways:
//! - **by its sender** (`sent()` before `do_send`/`send`, then `handled()` in the handler):
//!   these are what `mailbox` shows waiting. Client frames to a connection, client requests
//!   and peer data batches to the coordinator (the peer reader holds its counters through
//!   `peer::DataSink`), the coordinator's reads and updates and the WAL's batches to the
//!   memtable, and the failure detector's and membership's exchanges are counted so: the
//!   traffic that can queue under load;
//! - **on arrival** ([`ActorCounters::received`] in the handler, bumping both): every other
//!   kind. Such a message is not seen while it waits, but it no longer makes `handled`
//!   exceed `sent`, which used to hide every counted message behind a depth of 0.
//!
//! Invariant: every handler calls exactly one of `handled()` or `received()`, and `sent` is
//! bumped before the message can be handled, so `sent >= handled` at any instant (a scrape
//! reads `handled` first) and `sent == handled` once the node is idle.
//!
//! Histograms are fixed arrays of relaxed atomics chosen by index, so recording a sample
//! takes no lock and allocates nothing; a scrape reads them without stopping writers (a
//! scrape may see a sample in `count` but not yet in `sum`: statistics, not accounting).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use troupe_protocol::admin::ActorStat;
use troupe_protocol::ErrorCode;

/// Counters of one actor kind. All relaxed atomics: they are statistics, not synchronization.
#[derive(Debug, Default)]
pub struct ActorCounters {
    pub name: String,
    instances: AtomicU64,
    sent: AtomicU64,
    handled: AtomicU64,
    errors: AtomicU64,
}

impl ActorCounters {
    pub fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }
    pub fn handled(&self) {
        self.handled.fetch_add(1, Relaxed);
    }
    /// A message whose sender did not count it: counted as sent and handled at once.
    pub fn received(&self) {
        self.sent.fetch_add(1, Relaxed);
        self.handled.fetch_add(1, Relaxed);
    }
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }
    pub fn started(&self) {
        self.instances.fetch_add(1, Relaxed);
    }
    pub fn stopped(&self) {
        self.instances.fetch_sub(1, Relaxed);
    }
    pub fn instances(&self) -> u64 {
        self.instances.load(Relaxed)
    }
    pub fn snapshot(&self) -> ActorStat {
        // `handled` first: a message counted between the loads cannot show as handled
        // before it was sent.
        let handled = self.handled.load(Relaxed);
        let sent = self.sent.load(Relaxed);
        ActorStat {
            name: self.name.clone(),
            instances: self.instances.load(Relaxed),
            mailbox: sent.saturating_sub(handled),
            handled,
            errors: self.errors.load(Relaxed),
        }
    }
}

/// The node's set of actor counters, in registration order, and its request histograms.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    actors: Arc<Mutex<Vec<Arc<ActorCounters>>>>,
    requests: Arc<RequestStats>,
}

impl Registry {
    /// The client request latency histograms every connection records into.
    pub fn requests(&self) -> Arc<RequestStats> {
        self.requests.clone()
    }

    /// Returns the counters for `name`, creating them on first use.
    pub fn actor(&self, name: &str) -> Arc<ActorCounters> {
        let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = actors.iter().find(|a| a.name == name) {
            return a.clone();
        }
        let a = Arc::new(ActorCounters {
            name: name.to_string(),
            ..ActorCounters::default()
        });
        actors.push(a.clone());
        a
    }

    pub fn snapshot(&self) -> Vec<ActorStat> {
        let actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors.iter().map(|a| a.snapshot()).collect()
    }

    /// `(name, sent, handled)` per actor, raw (no saturation), for the metrics endpoint:
    /// `sent >= handled` always holds if every message is counted as sent.
    pub fn sent_handled(&self) -> Vec<(String, u64, u64)> {
        let actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors
            .iter()
            .map(|a| {
                let handled = a.handled.load(Relaxed);
                (a.name.clone(), a.sent.load(Relaxed), handled)
            })
            .collect()
    }
}

/// Upper bounds of the latency buckets, in seconds: 100 us to 10 s, roughly 1-2.5-5 per
/// decade. Fixed so that every node's histograms aggregate across a cluster.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram: a count per bucket (not cumulative; the last is above 10 s) and the
/// sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// What a scrape renders: cumulative bucket counts (the last is `+Inf`, equal to `count`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: [u64; BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS.len()]
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BUCKETS.len() + 1];
        let mut total = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *c = total;
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// Client request ops as labelled; `unknown` is a frame that did not decode to a request.
pub const OPS: [&str; 14] = [
    "hello", "ping", "get", "put", "delete", "incr", "counter", "sadd", "srem", "smembers",
    "reg_put", "reg_get", "keys", "unknown",
];
/// Request results as labelled: `ok` or the error code (`other` for a code not listed).
pub const RESULTS: [&str; 10] = [
    "ok",
    "bad_request",
    "too_large",
    "unavailable",
    "timeout",
    "overloaded",
    "unauthorized",
    "not_owner",
    "internal",
    "other",
];

/// The index of `op` in [`OPS`] (`unknown` if not there).
pub fn op_index(op: &str) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(OPS.len() - 1)
}

/// The index in [`RESULTS`] of an answer with error `err` (`None`: `ok`).
pub fn result_index(err: Option<&ErrorCode>) -> usize {
    match err {
        None => 0,
        Some(code) => RESULTS
            .iter()
            .position(|r| *r == code.as_str())
            .unwrap_or(RESULTS.len() - 1),
    }
}

/// One latency histogram per (op, result), for `troupe_request_duration_seconds`.
#[derive(Debug)]
pub struct RequestStats {
    by: Vec<Histogram>,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            by: (0..OPS.len() * RESULTS.len())
                .map(|_| Histogram::default())
                .collect(),
        }
    }
}

impl RequestStats {
    /// Records one answered request: `op` an index from [`op_index`], `err` its error code
    /// (`None` when it succeeded).
    pub fn record(&self, op: usize, err: Option<&ErrorCode>, took: Duration) {
        self.record_index(op, result_index(err), took);
    }

    /// As [`RequestStats::record`] with the result as an index from [`result_index`].
    pub fn record_index(&self, op: usize, result: usize, took: Duration) {
        let i = op.min(OPS.len() - 1) * RESULTS.len() + result.min(RESULTS.len() - 1);
        self.by[i].record(took);
    }

    /// `(op, result, histogram)` for every pair that has samples.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, HistogramSnapshot)> {
        let mut out = Vec::new();
        for (i, h) in self.by.iter().enumerate() {
            let s = h.snapshot();
            if s.count() > 0 {
                out.push((OPS[i / RESULTS.len()], RESULTS[i % RESULTS.len()], s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_is_sent_minus_handled() {
        let reg = Registry::default();
        let a = reg.actor("memtable");
        a.started();
        a.sent();
        a.sent();
        a.handled();
        a.error();
        assert!(Arc::ptr_eq(&a, &reg.actor("memtable")));
        let s = &reg.snapshot()[0];
        assert_eq!((s.instances, s.mailbox, s.handled, s.errors), (1, 1, 1, 1));
    }

    #[test]
    fn a_message_counted_on_arrival_leaves_the_counted_ones_visible() {
        let reg = Registry::default();
        let a = reg.actor("coordinator");
        a.sent(); // a client request waiting
        a.received(); // a peer batch its sender could not count
        a.received();
        assert_eq!(reg.snapshot()[0].mailbox, 1, "the waiting request shows");
        a.handled();
        assert_eq!(reg.sent_handled(), [("coordinator".to_string(), 3, 3)]);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let h = Histogram::default();
        for us in [50, 100, 101, 2_000, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "50us and exactly 100us are <= 0.0001");
        assert_eq!(s.cumulative[1], 3);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 4, "20 s is only in +Inf");
        assert_eq!(s.count(), 5);
        assert!(
            (s.sum_seconds - 20.002251).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn requests_are_kept_apart_by_op_and_result() {
        let r = RequestStats::default();
        r.record(op_index("get"), None, Duration::from_millis(1));
        r.record(
            op_index("put"),
            Some(&ErrorCode::Timeout),
            Duration::from_millis(1),
        );
        r.record(
            op_index("nonsense"),
            Some(&ErrorCode::Other("x".into())),
            Duration::ZERO,
        );
        let got: Vec<_> = r
            .snapshot()
            .into_iter()
            .map(|(o, r, s)| (o, r, s.count()))
            .collect();
        assert_eq!(
            got,
            [
                ("get", "ok", 1),
                ("put", "timeout", 1),
                ("unknown", "other", 1)
            ]
        );
    }
}
