//! The last-writer-wins register, ordered by (hybrid logical timestamp, actor id).

use crate::object::ActorId;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LwwRegister {
    /// Hybrid logical time of the write: physical milliseconds << 16 | a logical counter.
    pub ts: u64,
    /// The coordinator that wrote it: breaks ties between equal timestamps.
    pub actor: ActorId,
    pub value: Vec<u8>,
}

impl LwwRegister {
    /// A write of `value` by `actor` at hybrid time `now`, after `prev` (the state the
    /// coordinator holds): its timestamp is above `prev`'s even if this node's clock is
    /// behind, so a write always supersedes what its coordinator saw.
    pub fn put(
        prev: Option<&LwwRegister>,
        value: Vec<u8>,
        actor: ActorId,
        now: u64,
    ) -> LwwRegister {
        let ts = match prev {
            Some(p) => now.max(p.ts.saturating_add(1)),
            None => now,
        };
        LwwRegister { ts, actor, value }
    }

    /// The greater of the two by (timestamp, actor). Equal (timestamp, actor) means the same
    /// write (one coordinator never issues one timestamp twice for a key), so either wins.
    pub fn join(&self, other: &LwwRegister) -> LwwRegister {
        if (other.ts, other.actor) > (self.ts, self.actor) {
            other.clone()
        } else {
            self.clone()
        }
    }
}

/// Hybrid logical time now: wall-clock milliseconds << 16, raised above `last` (the
/// caller's previous reading) by one if the clock did not move or went back.
pub fn hlc_now(wall_ms: u64, last: u64) -> u64 {
    (wall_ms << 16).max(last.saturating_add(1))
}
