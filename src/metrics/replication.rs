//! The replication families: the coordinator's counters, its peer RPCs by peer, kind and
//! result (with their latency), and tombstone GC's, from shared relaxed atomics.

use super::{family, histogram, one};

pub(super) fn coordinator_metrics(
    out: &mut String,
    c: &troupe_actors::coordinator::CoordinatorSnapshot,
) {
    let rows = [
        (
            "troupe_coordinator_gets_total",
            "Client gets this node coordinated.",
            c.gets,
        ),
        (
            "troupe_coordinator_puts_total",
            "Client puts and deletes this node received.",
            c.puts,
        ),
        (
            "troupe_coordinator_forwarded_total",
            "Writes forwarded to a primary of their key.",
            c.forwarded,
        ),
        (
            "troupe_coordinator_unavailable_total",
            "Requests answered unavailable (quorum not met).",
            c.unavailable,
        ),
        (
            "troupe_coordinator_timeouts_total",
            "Requests answered timeout (outcome unknown).",
            c.timeouts,
        ),
        (
            "troupe_coordinator_overloaded_total",
            "Requests refused because too many were in flight.",
            c.overloaded,
        ),
        (
            "troupe_read_repairs_total",
            "Replicas sent a newer object after a get.",
            c.read_repairs,
        ),
        (
            "troupe_read_repairs_skipped_total",
            "Read repairs skipped because too many were in flight.",
            c.read_repairs_skipped,
        ),
        (
            "troupe_replica_requests_total",
            "Requests other coordinators sent this replica.",
            c.replica_requests,
        ),
        (
            "troupe_replica_responses_dropped_total",
            "Answers to peers that could not be queued (their requests time out).",
            c.responses_dropped,
        ),
    ];
    for (name, help, v) in rows {
        family(out, name, "counter", help, &one(v));
    }
}

pub(super) fn tombstone_metrics(out: &mut String, t: &troupe_actors::tombstones::TombSnapshot) {
    let held: Vec<_> = [
        ("in_grace", t.held_in_grace),
        ("past_grace", t.held_past_grace),
    ]
    .into_iter()
    .map(|(s, n)| (format!("state=\"{s}\""), n as f64))
    .collect();
    family(
        out,
        "troupe_tombstones_held",
        "gauge",
        "Delete markers this replica holds, within cluster.tombstone_grace or past it (waiting for a GC round).",
        &held,
    );
    let rows = [
        (
            "troupe_tombstones_dropped_total",
            "Delete markers purged by tombstone GC (every primary held them, no hint pending).",
            t.dropped,
        ),
        (
            "troupe_tombstone_gc_rounds_total",
            "Tombstone GC rounds this node ran as a partition's first primary.",
            t.rounds,
        ),
        (
            "troupe_tombstone_gc_rounds_blocked_total",
            "Rounds not run because a member was down or unknown (it may hold hints).",
            t.rounds_blocked,
        ),
        (
            "troupe_tombstones_kept_total",
            "Markers a round kept: a hint pending, or a primary without the marker.",
            t.kept,
        ),
    ];
    for (name, help, v) in rows {
        family(out, name, "counter", help, &one(v));
    }
}

pub(super) fn peer_rpc_metrics(out: &mut String, c: &troupe_actors::coordinator::CoordinatorStats) {
    let (counts, latency) = c.peer_rpcs.snapshot();
    let counts: Vec<_> = counts
        .into_iter()
        .map(|((peer, kind, result), n)| {
            let peer = peer.replace('\\', "\\\\").replace('"', "\\\"");
            (
                format!("peer=\"{peer}\",kind=\"{kind}\",result=\"{result}\""),
                n as f64,
            )
        })
        .collect();
    family(
        out,
        "troupe_peer_rpcs_total",
        "counter",
        "Replication RPCs this node sent, by peer, kind (get, put, coordinate) and result: ok or the replica's error code when answered, timeout when the request's deadline passed first, abandoned when the request finished (quorum met) before this replica answered.",
        &counts,
    );
    let latency: Vec<_> = latency
        .into_iter()
        .map(|(kind, h)| (format!("kind=\"{kind}\""), h))
        .collect();
    histogram(
        out,
        "troupe_peer_rpc_duration_seconds",
        "Time from sending a replication RPC to its answer, by kind (answered RPCs only).",
        &latency,
    );
}
