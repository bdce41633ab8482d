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

    /// The greater of the two by (timestamp, actor), then by value. Equal (timestamp,
    /// actor) should mean the same write (one coordinator never issues one timestamp twice
    /// for a key), but a wall clock that went back across a restart could break that; the
    /// value decides then, so join stays commutative whatever happens (a property test
    /// found the pair).
    pub fn join(&self, other: &LwwRegister) -> LwwRegister {
        if (other.ts, other.actor, &other.value) > (self.ts, self.actor, &self.value) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_commutative_even_for_two_values_with_one_timestamp_and_actor() {
        let r = |v: &str| LwwRegister {
            ts: 7,
            actor: ActorId(1),
            value: v.as_bytes().to_vec(),
        };
        let (a, b) = (r("a"), r("b"));
        assert_eq!(a.join(&b), b.join(&a));
        assert_eq!(a.join(&b).value, b"b");
    }
}
