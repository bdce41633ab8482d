//! Counts and latency of the peer RPCs this coordinator sends, for
//! `troupe_peer_rpcs_total{peer,kind,result}` and `troupe_peer_rpc_duration_seconds{kind}`.
//!
//! Every RPC ends exactly once here: answered (`ok` or the replica's error code), `timeout`
//! (its request's deadline passed first) or `abandoned` (its request finished, for example
//! with a quorum met, before this replica answered; the late answer is dropped). Only
//! answers have a latency. Labels stay bounded: `peer` is a ring member's node id, `kind`
//! one of [`KINDS`], `result` one of `stats::RESULTS` plus `timeout`/`abandoned`. The
//! counts sit behind a mutex only the coordinator's one thread and a scrape take.

use crate::stats::{Histogram, HistogramSnapshot, RESULTS};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use troupe_protocol::data::DataReq;
use troupe_protocol::swim::NodeId;

/// RPC kinds as labelled: a replica read, a replica write, a write forwarded to a primary,
/// a replica's key listing, a hint kept by a fallback for a down primary.
pub const KINDS: [&str; 5] = ["get", "put", "coordinate", "keys", "hint"];

/// The index of `req`'s kind in [`KINDS`].
pub fn kind_of(req: &DataReq) -> usize {
    match req {
        DataReq::Get { .. } => 0,
        DataReq::Put { .. } => 1,
        DataReq::Coordinate { .. } => 2,
        DataReq::Keys { .. } => 3,
        DataReq::Hint { .. } => 4,
    }
}

/// The `result` label of an answer: `ok` or its error code if it is a known one.
pub fn result_label(failed_code: Option<&str>) -> &'static str {
    match failed_code {
        None => "ok",
        Some(code) => RESULTS
            .iter()
            .find(|r| **r == code)
            .copied()
            .unwrap_or("other"),
    }
}

/// One peer's RPCs: (kind, result) -> count.
type Counts = BTreeMap<(&'static str, &'static str), u64>;

#[derive(Debug, Default)]
pub struct PeerRpcStats {
    /// Peer -> (kind, result) -> count: looked up by `&str`, so counting allocates only
    /// for a peer's first RPC.
    counts: Mutex<BTreeMap<String, Counts>>,
    latency: [Histogram; KINDS.len()],
}

/// `(peer, kind, result) -> count` and the latency per kind.
pub type PeerRpcSnapshot = (
    Vec<((String, &'static str, &'static str), u64)>,
    Vec<(&'static str, HistogramSnapshot)>,
);

impl PeerRpcStats {
    /// An RPC ended with `result`; `took` is set when an answer arrived.
    pub fn ended(&self, peer: &NodeId, kind: usize, result: &'static str, took: Option<Duration>) {
        let kind = kind.min(KINDS.len() - 1);
        if let Some(d) = took {
            self.latency[kind].record(d);
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let per_peer = match counts.get_mut(peer.as_str()) {
            Some(c) => c,
            None => counts.entry(peer.0.clone()).or_default(),
        };
        *per_peer.entry((KINDS[kind], result)).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> PeerRpcSnapshot {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let counts = counts
            .iter()
            .flat_map(|(peer, c)| c.iter().map(|(&(k, r), v)| ((peer.clone(), k, r), *v)))
            .collect();
        let latency = KINDS
            .iter()
            .zip(&self.latency)
            .map(|(k, h)| (*k, h.snapshot()))
            .collect();
        (counts, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_timed_and_every_end_is_counted() {
        let s = PeerRpcStats::default();
        let b = NodeId::new("b");
        s.ended(&b, 1, result_label(None), Some(Duration::from_millis(2)));
        s.ended(&b, 1, "timeout", None);
        s.ended(
            &b,
            0,
            result_label(Some("weird")),
            Some(Duration::from_millis(1)),
        );
        let (counts, latency) = s.snapshot();
        assert_eq!(
            counts,
            [
                (("b".to_string(), "get", "other"), 1),
                (("b".to_string(), "put", "ok"), 1),
                (("b".to_string(), "put", "timeout"), 1),
            ]
        );
        assert_eq!(latency[1].1.count(), 1, "a timeout has no latency");
        assert_eq!(latency[0].1.count(), 1);
    }
}
