//! Anti-entropy: replicas of a partition compare tictac trees now and then, narrow a
//! difference down to keys and join both sides' objects (REPLICATION.md, "When nodes
//! fail"; after Riak's NextGenAAE and Garage's Merkle sync).
//!
//! Pieces:
//! - [`tree`]: the trees, kept current as writes land; [`tree::TreeClock::of`] is the one place
//!   that decides which objects go in.
//! - [`exchange`]: one exchange as a pure state machine, and the responder's answers.
//! - [`pacer`]: the bytes-per-second throttle.
//! - [`actor`]: the AntiEntropy actor (trees, peers' requests, rounds); `round`: its tasks.
//!
//! What a node does with its trees is in `actor`'s doc; the walk of an exchange in
//! `exchange`'s; the numbered repair walk in ARCHITECTURE.md.

pub mod actor;
pub mod exchange;
pub mod pacer;
mod round;
pub mod tree;

pub use actor::{
    AntiEntropy, ExchangeWith, KeysIn, RepairRefused, RepairStatus, StartRepair, TreeHashOf,
};

use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use troupe_protocol::antientropy::TreeShape;
use troupe_protocol::swim::NodeId;

/// Settings (`[anti_entropy]`).
#[derive(Debug, Clone)]
pub struct AntiEntropyConfig {
    pub me: NodeId,
    /// Rounds on `interval`; off, the node still keeps its trees, answers peers and runs
    /// `admin repair`.
    pub enabled: bool,
    pub interval: Duration,
    /// Bytes a second a round exchanges and the start-up rebuild scans (0: unlimited).
    pub max_bytes_per_sec: u64,
    /// How long one request to a peer may wait for its answer.
    pub request_timeout: Duration,
    /// `cluster.partitions`.
    pub partitions: u32,
    pub shape: TreeShape,
    pub mailbox: usize,
}

/// Counters for /metrics and `admin stats`.
#[derive(Debug, Default)]
pub struct AntiEntropyStats {
    pub rounds: AtomicU64,
    pub rounds_failed: AtomicU64,
    pub exchanges: AtomicU64,
    pub exchanges_failed: AtomicU64,
    pub keys_compared: AtomicU64,
    pub keys_differing: AtomicU64,
    pub keys_repaired: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Keys in the trees now (gauge).
    pub tree_keys: AtomicU64,
    /// 1 once the start-up rebuild finished (gauge).
    pub ready: AtomicU64,
}

impl AntiEntropyStats {
    /// The counters by name (`admin stats` section `anti_entropy`).
    pub fn named(&self) -> std::collections::BTreeMap<&'static str, u64> {
        use std::sync::atomic::Ordering::Relaxed;
        std::collections::BTreeMap::from([
            ("rounds", self.rounds.load(Relaxed)),
            ("rounds_failed", self.rounds_failed.load(Relaxed)),
            ("exchanges", self.exchanges.load(Relaxed)),
            ("exchanges_failed", self.exchanges_failed.load(Relaxed)),
            ("keys_compared", self.keys_compared.load(Relaxed)),
            ("keys_differing", self.keys_differing.load(Relaxed)),
            ("keys_repaired", self.keys_repaired.load(Relaxed)),
            ("bytes_sent", self.bytes_sent.load(Relaxed)),
            ("bytes_received", self.bytes_received.load(Relaxed)),
            ("tree_keys", self.tree_keys.load(Relaxed)),
            ("ready", self.ready.load(Relaxed)),
        ])
    }
}

/// A round's progress and outcome (`troupe admin repair`).
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub round: u64,
    /// The one partition repaired (`None`: every partition this node holds).
    pub partition: Option<u32>,
    pub running: bool,
    /// The peer being compared with now.
    pub current: Option<String>,
    pub exchanges: u64,
    pub exchanges_done: u64,
    /// Partition replica pairs to compare, and compared so far.
    pub partitions: u64,
    pub partitions_done: u64,
    pub keys_compared: u64,
    pub keys_differing: u64,
    pub keys_repaired: u64,
    /// Bytes of anti-entropy frames, both ways.
    pub bytes: u64,
    pub elapsed_ms: u64,
    pub errors: Vec<String>,
}

impl RepairReport {
    pub fn new(round: u64, partition: Option<u32>, plan: &[(NodeId, Vec<u32>)]) -> RepairReport {
        RepairReport {
            round,
            partition,
            running: true,
            current: None,
            exchanges: plan.len() as u64,
            exchanges_done: 0,
            partitions: plan.iter().map(|(_, p)| p.len() as u64).sum(),
            partitions_done: 0,
            keys_compared: 0,
            keys_differing: 0,
            keys_repaired: 0,
            bytes: 0,
            elapsed_ms: 0,
            errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod actor_tests;
#[cfg(test)]
mod tests;
