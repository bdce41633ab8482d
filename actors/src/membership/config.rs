//! SWIM / Lifeguard tuning knobs.
//!
//! Owns: `SwimConfig` and its defaults, which follow hashicorp memberlist's
//! `DefaultLANConfig`. Invariants: all durations are virtual milliseconds;
//! `probe_timeout_ms < probe_interval_ms` is expected (the indirect phase runs
//! in the remainder of the period).

/// Configuration shared by `MemberList`, `Detector` and `Node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimConfig {
    /// Base protocol period (scaled by LHM+1).
    pub probe_interval_ms: u64,
    /// Base direct-ping timeout before going indirect (scaled by LHM+1).
    pub probe_timeout_ms: u64,
    /// k: number of relays asked for an indirect probe.
    pub indirect_probes: usize,
    /// Lifeguard min suspicion = mult * max(1, log10 N) * interval.
    pub suspicion_mult: u64,
    /// max suspicion = min * this. 1 disables Lifeguard dynamic suspicion.
    pub suspicion_max_timeout_mult: u64,
    /// Expected independent confirmations K (capped at N-2). `None` = indirect_probes.
    pub suspicion_confirmations: Option<usize>,
    /// Local Health Multiplier ceiling; 0 disables LHM.
    pub awareness_max_multiplier: u32,
    /// A probe is settled by the next protocol tick. When that tick runs more than this
    /// late (a CPU-starved or paused process: its own timers fire late, so an ack that did
    /// arrive may still sit unhandled), a missing ack proves nothing about the target: the
    /// probe is inconclusive, counts as a failure for local health, and the same target is
    /// probed again, up to `LATE_PROBE_RETRIES` times in a row before it is suspected
    /// anyway. 0 disables the check (plain Lifeguard, as memberlist does it).
    pub late_tolerance_ms: u64,
    /// lambda: each update is sent lambda * ceil(log10(N+1)) times.
    pub retransmit_mult: u32,
    /// lambda for refutations (a member's Alive at a raised incarnation). A member that
    /// misses a refutation while holding the suspicion declares a healthy member dead, so
    /// refutations get more sends: the chance one member misses one falls like
    /// exp(-lambda * ceil(log10(N+1)) * (1 - loss)); at N=1000 with 10% loss, lambda 4 leaves
    /// about 6e-7 per member and refutation (a few false deaths per 500 periods), 6 leaves
    /// 4e-10. Values below `retransmit_mult` count as `retransmit_mult`.
    pub refute_retransmit_mult: u32,
    /// Gossip fan-out period: every this many ms, pending updates go to `gossip_nodes`
    /// random members in a `Gossip` message (nothing is sent when nothing is pending).
    pub gossip_interval_ms: u64,
    /// Fan-out of each gossip round.
    pub gossip_nodes: usize,
    /// Byte budget of one whole Ping/Ack/Gossip message (header plus piggybacked updates,
    /// by the conservative estimate of `core::estimate_update_size`); 1400 fits one UDP
    /// datagram on a 1500-byte MTU, as memberlist's `UDPBufferSize` does.
    pub gossip_budget_bytes: usize,
    /// Hard cap on piggybacked updates per Ping/Ack.
    pub gossip_max_updates: usize,
    /// Dead/Left members are forgotten this long after their last change.
    pub reap_after_ms: u64,
    /// Base push-pull interval; scaled up for clusters above 32 members.
    pub push_pull_interval_ms: u64,
    /// Number of members a leaving node pushes its Left record to directly.
    pub leave_fanout: usize,
    /// How often a node tries a full-state exchange with one Dead member (Serf's
    /// reconnect), so both sides of a healed partition find each other again.
    pub reconnect_interval_ms: u64,
}

impl Default for SwimConfig {
    fn default() -> Self {
        SwimConfig {
            probe_interval_ms: 1000,
            probe_timeout_ms: 500,
            indirect_probes: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: None,
            awareness_max_multiplier: 8,
            late_tolerance_ms: 100,
            retransmit_mult: 4,
            refute_retransmit_mult: 6,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            gossip_budget_bytes: 1400,
            gossip_max_updates: 32,
            reap_after_ms: 30_000,
            push_pull_interval_ms: 30_000,
            leave_fanout: 3,
            reconnect_interval_ms: 30_000,
        }
    }
}

/// Largest encoded member record the bound assumes (id and three addresses of up to 64
/// bytes each are far above what real records carry).
pub const MAX_RECORD_BYTES: u64 = 400;

/// Per member, per protocol period: what it may send whatever N and the loss rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficBound {
    /// Messages of every kind (full-state exchanges are a few per push-pull interval and
    /// fit within the probe share; they are counted in `bytes`).
    pub messages: u64,
    /// Bytes of every kind, full-state exchanges included (amortised).
    pub bytes: u64,
    /// Any single message other than a full-state exchange.
    pub message_bytes: u64,
}

impl SwimConfig {
    /// Lifeguard's (min, max) suspicion timeout for a cluster of `n` members.
    pub fn suspicion_bounds_ms(&self, n: usize) -> (u64, u64) {
        let scale = (n.max(1) as f64).log10().max(1.0);
        let min = (self.suspicion_mult as f64 * scale * self.probe_interval_ms as f64) as u64;
        (min, min * self.suspicion_max_timeout_mult.max(1))
    }

    /// Upper bound on the messages and bytes one member sends per protocol period, for
    /// any cluster size and loss rate (see [`TrafficBound`]).
    pub fn traffic_bound(&self) -> TrafficBound {
        let period = self.probe_interval_ms.max(1);
        let k = self.indirect_probes as u64;
        // Gossip rounds per period, each to `gossip_nodes` members.
        let gossip = self.gossip_nodes as u64 * period.div_ceil(self.gossip_interval_ms.max(1));
        // Own probe: 1 ping + k indirect pings. Answering the expected one probe of us: 1 ack.
        // Relay duty (k indirect requests expected when every probe goes indirect): k pings
        // plus k acks/nacks back. Being a relay's target: k acks.
        let probe = 2 + 4 * k;
        let messages = gossip + probe;
        // Full-state exchanges: per push-pull interval at most one we start, one we answer
        // and the same again for digest syncs, reconnects and joins (each rate-limited to
        // one per `state_sync_gap_ms`). The interval grows linearly with N, so the
        // amortised cost of a table of N records is constant.
        // Sent per interval: our table for each exchange we start and for each we answer.
        let pp = self.push_pull_ms(32).max(1);
        let per_interval = 2 * (1 + pp / self.state_sync_gap_ms(32).max(1));
        let state_bytes = per_interval * 32 * MAX_RECORD_BYTES * period / pp;
        TrafficBound {
            messages,
            bytes: messages * self.gossip_budget_bytes as u64 + state_bytes,
            message_bytes: self.gossip_budget_bytes as u64,
        }
    }

    /// Least gap between two full-state exchanges this member starts outside the push-pull
    /// timer (digest mismatch, reconnect): a sixth of the push-pull interval, at least five
    /// periods.
    pub fn state_sync_gap_ms(&self, n: usize) -> u64 {
        (self.push_pull_ms(n) / 6).max(5 * self.probe_interval_ms)
    }

    /// Push-pull interval for `n` members: the base up to 32, then growing linearly with N
    /// (memberlist grows it with log N), so that the bytes a member sends for full-state
    /// exchanges per period stay constant however large the table is. Gossip, not push-pull,
    /// is what spreads news; this is the backstop.
    pub fn push_pull_ms(&self, n: usize) -> u64 {
        if n <= 32 {
            return self.push_pull_interval_ms;
        }
        self.push_pull_interval_ms * n as u64 / 32
    }
}
