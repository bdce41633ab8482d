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
    /// lambda: each update is sent lambda * ceil(log2(N+1)) times.
    pub retransmit_mult: u32,
    /// Byte budget (estimated) of piggybacked updates per Ping/Ack.
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
            retransmit_mult: 4,
            gossip_budget_bytes: 1400,
            gossip_max_updates: 32,
            reap_after_ms: 30_000,
            push_pull_interval_ms: 30_000,
            leave_fanout: 3,
            reconnect_interval_ms: 30_000,
        }
    }
}

impl SwimConfig {
    /// Lifeguard's (min, max) suspicion timeout for a cluster of `n` members.
    pub fn suspicion_bounds_ms(&self, n: usize) -> (u64, u64) {
        let scale = (n.max(1) as f64).log10().max(1.0);
        let min = (self.suspicion_mult as f64 * scale * self.probe_interval_ms as f64) as u64;
        (min, min * self.suspicion_max_timeout_mult.max(1))
    }

    /// memberlist's push-pull scaling: one extra interval per doubling past 32.
    pub fn push_pull_ms(&self, n: usize) -> u64 {
        if n <= 32 {
            return self.push_pull_interval_ms;
        }
        let mult = ((n as f64).log2() - 32f64.log2()).ceil() as u64 + 1;
        self.push_pull_interval_ms * mult
    }
}
