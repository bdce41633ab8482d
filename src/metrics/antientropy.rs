//! Anti-entropy's families: rounds, exchanges, keys compared, differing and repaired,
//! bytes exchanged, and the trees' size and readiness.

use super::{family, one};
use std::sync::atomic::Ordering::Relaxed;
use troupe_actors::antientropy::AntiEntropyStats;

pub(super) fn render(out: &mut String, s: &AntiEntropyStats) {
    let counters = [
        (
            "troupe_antientropy_rounds_total",
            "Anti-entropy rounds started (interval or admin repair).",
            &s.rounds,
        ),
        (
            "troupe_antientropy_rounds_failed_total",
            "Anti-entropy rounds in which at least one exchange ended early.",
            &s.rounds_failed,
        ),
        (
            "troupe_antientropy_exchanges_total",
            "Exchanges with one peer this node started.",
            &s.exchanges,
        ),
        (
            "troupe_antientropy_exchanges_failed_total",
            "Exchanges that ended early (peer refused, timed out, unreachable).",
            &s.exchanges_failed,
        ),
        (
            "troupe_antientropy_keys_compared_total",
            "Keys held here in the partitions compared.",
            &s.keys_compared,
        ),
        (
            "troupe_antientropy_keys_differing_total",
            "Keys found different from a peer's (or missing on one side).",
            &s.keys_differing,
        ),
        (
            "troupe_antientropy_keys_repaired_total",
            "Differing keys joined on both sides.",
            &s.keys_repaired,
        ),
        (
            "troupe_antientropy_bytes_sent_total",
            "Bytes of anti-entropy frames sent (requests and answers).",
            &s.bytes_sent,
        ),
        (
            "troupe_antientropy_bytes_received_total",
            "Bytes of anti-entropy frames received.",
            &s.bytes_received,
        ),
    ];
    for (name, help, v) in counters {
        family(out, name, "counter", help, &one(v.load(Relaxed)));
    }
    family(
        out,
        "troupe_antientropy_tree_keys",
        "gauge",
        "Keys in this node's anti-entropy trees.",
        &one(s.tree_keys.load(Relaxed)),
    );
    family(
        out,
        "troupe_antientropy_ready",
        "gauge",
        "1 once the trees were rebuilt from the data at start-up.",
        &one(s.ready.load(Relaxed)),
    );
}
