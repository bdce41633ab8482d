//! Hinted handoff's families: hints stored, delivered and dropped (by reason), and what is
//! pending, from the HintedHandoff actor's shared counters.

use super::{family, one};
use troupe_actors::hints::HintSnapshot;

pub(super) fn render(out: &mut String, h: &HintSnapshot) {
    family(
        out,
        "troupe_hints_stored_total",
        "counter",
        "Hints this node kept durably for a down primary.",
        &one(h.stored),
    );
    family(
        out,
        "troupe_hints_delivered_total",
        "counter",
        "Hints delivered to their primary and deleted.",
        &one(h.delivered),
    );
    let dropped: Vec<(String, f64)> = [
        ("full", h.dropped_full),
        ("age", h.dropped_age),
        ("io", h.dropped_io),
    ]
    .iter()
    .map(|(r, v)| (format!("reason=\"{r}\""), *v as f64))
    .collect();
    family(
        out,
        "troupe_hints_dropped_total",
        "counter",
        "Hints dropped: full (handoff.max_hint_bytes), age (handoff.max_hint_age) or io (write failed); anti-entropy repairs their primary.",
        &dropped,
    );
    family(
        out,
        "troupe_hints_pending",
        "gauge",
        "Hints waiting for their primary.",
        &one(h.pending),
    );
    family(
        out,
        "troupe_hints_pending_bytes",
        "gauge",
        "Bytes of the hints waiting for their primary.",
        &one(h.pending_bytes),
    );
}
