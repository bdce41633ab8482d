//! The add-wins observed-remove set without tombstones (ORSWOT).

use super::TypedError;
use crate::object::ActorId;
use std::collections::{BTreeMap, BTreeSet};

/// A dot: the `n`-th add issued by `actor` on this key.
pub type SetDot = (ActorId, u64);

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrSet {
    /// Per actor, the adds it has issued (dots `1..=n` seen). No zero entries.
    pub(super) clock: BTreeMap<ActorId, u64>,
    /// Per element, the dots of the adds that put it there (never empty).
    pub(super) entries: BTreeMap<Vec<u8>, BTreeSet<SetDot>>,
}

impl OrSet {
    fn seen(clock: &BTreeMap<ActorId, u64>, (actor, n): SetDot) -> bool {
        clock.get(&actor).is_some_and(|&c| c >= n)
    }

    /// Adds `members` with one new dot of `actor` (replacing the dots the adder observed).
    /// Refused, changing nothing, if the set would hold more than `max` members.
    pub fn add<'a>(
        &mut self,
        actor: ActorId,
        members: impl IntoIterator<Item = &'a [u8]>,
        max: usize,
    ) -> Result<(), TypedError> {
        let members: BTreeSet<&[u8]> = members.into_iter().collect();
        let new = members
            .iter()
            .filter(|m| !self.entries.contains_key(**m))
            .count();
        if self.entries.len() + new > max {
            return Err(TypedError::SetTooLarge {
                would: self.entries.len() + new,
                max,
            });
        }
        if members.is_empty() {
            return Ok(());
        }
        let n = self.clock.get(&actor).copied().unwrap_or(0) + 1;
        self.clock.insert(actor, n);
        for m in members {
            self.entries
                .insert(m.to_vec(), BTreeSet::from([(actor, n)]));
        }
        Ok(())
    }

    /// Removes `members` as observed: their dots stay in the clock, so a join drops them
    /// everywhere, while an add this state has not seen survives.
    pub fn remove<'a>(&mut self, members: impl IntoIterator<Item = &'a [u8]>) {
        for m in members {
            self.entries.remove(m);
        }
    }

    pub fn join(&self, other: &OrSet) -> OrSet {
        let mut clock = self.clock.clone();
        for (a, &n) in &other.clock {
            let e = clock.entry(*a).or_insert(0);
            *e = (*e).max(n);
        }
        let mut entries = BTreeMap::new();
        let keys: BTreeSet<&Vec<u8>> = self.entries.keys().chain(other.entries.keys()).collect();
        let empty = BTreeSet::new();
        for k in keys {
            let a = self.entries.get(k).unwrap_or(&empty);
            let b = other.entries.get(k).unwrap_or(&empty);
            let dots: BTreeSet<SetDot> = a
                .iter()
                .filter(|d| b.contains(d) || !Self::seen(&other.clock, **d))
                .chain(b.iter().filter(|d| !Self::seen(&self.clock, **d)))
                .copied()
                .collect();
            if !dots.is_empty() {
                entries.insert(k.clone(), dots);
            }
        }
        OrSet { clock, entries }
    }

    /// The members, in ascending byte order.
    pub fn members(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries.keys().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each member with its dots, for `troupe admin object`.
    pub fn dots(&self) -> impl Iterator<Item = (&[u8], &BTreeSet<SetDot>)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// The clock, for `troupe admin object`.
    pub fn clock(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.clock.iter().map(|(a, n)| (*a, *n))
    }
}
