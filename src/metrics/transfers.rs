//! Partition transfers' families (ring changes, `actors/src/handoff/`): what this node
//! fetched and served, its streams' outcomes, what it deleted as no longer owned, and
//! whether the ring is in transition.

use super::{family, one};
use std::sync::atomic::Ordering::Relaxed;
use troupe_actors::handoff::HandoffStats;

pub(super) fn render(out: &mut String, s: &HandoffStats) {
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    for (name, kind, help, v) in [
        (
            "troupe_transfer_keys_received_total",
            "counter",
            "Keys this node fetched from their holders as a new owner.",
            c(&s.keys_received),
        ),
        (
            "troupe_transfer_bytes_received_total",
            "counter",
            "Bytes of keys and objects this node fetched as a new owner.",
            c(&s.bytes_received),
        ),
        (
            "troupe_transfer_keys_sent_total",
            "counter",
            "Keys this node served to new owners.",
            c(&s.keys_sent),
        ),
        (
            "troupe_transfer_bytes_sent_total",
            "counter",
            "Bytes of keys and objects this node served to new owners.",
            c(&s.bytes_sent),
        ),
        (
            "troupe_transfer_partitions_dropped_total",
            "counter",
            "Partitions this node deleted after every new owner held them.",
            c(&s.partitions_dropped),
        ),
        (
            "troupe_transfer_keys_dropped_total",
            "counter",
            "Keys deleted with those partitions.",
            c(&s.keys_dropped),
        ),
        (
            "troupe_transfer_in_transition",
            "gauge",
            "1 while the ring is in transition (writes go to old and new owners).",
            c(&s.in_transition),
        ),
        (
            "troupe_transfer_partitions_pending",
            "gauge",
            "Partitions this node still has to fetch.",
            c(&s.partitions_pending),
        ),
    ] {
        family(out, name, kind, help, &one(v));
    }
    let streams: Vec<(String, f64)> = [
        ("completed", c(&s.streams_completed)),
        ("stalled", c(&s.streams_stalled)),
        ("failed", c(&s.streams_failed)),
    ]
    .iter()
    .map(|(r, v)| (format!("result=\"{r}\""), *v as f64))
    .collect();
    family(
        out,
        "troupe_transfer_streams_total",
        "counter",
        "Fetch streams ended: completed, stalled (no progress for handoff.stall_timeout) or failed; the latter two restart elsewhere.",
        &streams,
    );
}
