//! The PN-counter: per actor, the sum of its increments and the sum of its decrements.

use super::TypedError;
use crate::object::ActorId;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PnCounter {
    /// Per actor, the sum of its positive increments (no zero entries).
    pub(super) inc: BTreeMap<ActorId, u64>,
    /// Per actor, the sum of its decrements as a positive number (no zero entries).
    pub(super) dec: BTreeMap<ActorId, u64>,
}

impl PnCounter {
    /// The counter's value. Every state an `incr` produced is in range; a state joined from
    /// two in-range states can exceed it only if two coordinators raced past the bound, and
    /// then saturates (the next `incr` reports the overflow).
    pub fn value(&self) -> i64 {
        let wide = self.wide();
        wide.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn wide(&self) -> i128 {
        let p: i128 = self.inc.values().map(|&v| v as i128).sum();
        let n: i128 = self.dec.values().map(|&v| v as i128).sum();
        p - n
    }

    /// Adds `by` (negative: subtracts) for `actor`. Overflow of the value or of the actor's
    /// sum is an error and changes nothing.
    pub fn incr(&mut self, actor: ActorId, by: i64) -> Result<(), TypedError> {
        let overflow = TypedError::CounterOverflow {
            value: self.value(),
            by,
        };
        let after = self.wide() + by as i128;
        if after < i64::MIN as i128 || after > i64::MAX as i128 {
            return Err(overflow);
        }
        if by == 0 {
            return Ok(());
        }
        let side = if by > 0 { &mut self.inc } else { &mut self.dec };
        let entry = side.entry(actor).or_insert(0);
        *entry = entry.checked_add(by.unsigned_abs()).ok_or(overflow)?;
        Ok(())
    }

    /// Per-actor maximum of both sides.
    pub fn join(&self, other: &PnCounter) -> PnCounter {
        let max = |a: &BTreeMap<ActorId, u64>, b: &BTreeMap<ActorId, u64>| {
            let mut out = a.clone();
            for (k, &v) in b {
                let e = out.entry(*k).or_insert(0);
                *e = (*e).max(v);
            }
            out
        };
        PnCounter {
            inc: max(&self.inc, &other.inc),
            dec: max(&self.dec, &other.dec),
        }
    }

    /// Per actor: (increments, decrements), for `troupe admin object`.
    pub fn entries(&self) -> Vec<(ActorId, u64, u64)> {
        let mut actors: Vec<ActorId> = self.inc.keys().chain(self.dec.keys()).copied().collect();
        actors.sort();
        actors.dedup();
        actors
            .into_iter()
            .map(|a| {
                (
                    a,
                    self.inc.get(&a).copied().unwrap_or(0),
                    self.dec.get(&a).copied().unwrap_or(0),
                )
            })
            .collect()
    }
}
