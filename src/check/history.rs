//! A recorded history: every operation the checker's sessions ran (what was sent, what came
//! back, when, through which node) and every fault the nemesis injected. Saved as JSON next
//! to the report so `troupe check --replay FILE` checks it again.
//!
//! Values are unique strings (`s3-17`: session 3's 17th write), so a value seen anywhere
//! names the one write that produced it.

use serde::{Deserialize, Serialize};

/// What the sessions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Unique values added to a few keys through `sadd`.
    Set,
    /// Puts with and without contexts (read, then write with the read's context, or blind).
    Register,
    /// `incr` of a few keys.
    Counter,
    /// Each session writes, then reads with `after` its write's context, through another node.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
    Sadd,
    Incr,
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Certainly not applied (`unavailable` before writing, `bad_request`, no connection).
    Fail,
    /// May or may not have been applied (`timeout`, a connection lost with the request).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub session: u32,
    pub kind: OpKind,
    pub key: String,
    /// The value written (`put`, `sadd`), unique in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `incr`'s amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
    /// The context sent (`put`'s context, `get`'s `after`), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_sent: Option<String>,
    /// Index in `ops` of the operation whose reply gave `context_sent`: the values that
    /// reply showed are the ones this write replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_from: Option<usize>,
    /// The context returned, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_returned: Option<String>,
    /// The values the reply showed (a get's values; a put's own value and any siblings its
    /// reply listed): what its context covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_returned: Vec<String>,
    /// The node the request was sent to.
    pub node: String,
    /// Microseconds since the run started.
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A fault the nemesis injected, and when it was undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// `kill` (then restart), `pause` (SIGSTOP, then SIGCONT), `partition` (then heal).
    pub kind: String,
    pub nodes: Vec<String>,
    pub start_us: u64,
    pub end_us: u64,
}

/// A key as read back at the end, with `r=all` after the cluster healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    pub key: String,
    /// Values (register: the siblings; set: the members).
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub workload: Workload,
    pub seed: u64,
    pub nodes: Vec<String>,
    pub ops: Vec<Op>,
    pub faults: Vec<FaultEvent>,
    pub final_reads: Vec<FinalRead>,
    /// Microseconds from the last heal until the final reads agreed on every node.
    #[serde(default)]
    pub convergence_us: Option<u64>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
