//! The in-memory sorted table of the newest version of each key (pure, no I/O).
//!
//! Invariant: an entry is only ever replaced by one with a higher sequence number, so
//! applying records out of order (as WAL replay across segments might) cannot roll a key back.

use crate::engine::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;

/// The newest known version of a key. `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub seq: u64,
    pub value: Option<Vec<u8>>,
}

/// Per-entry bookkeeping overhead counted toward [`MemTable::bytes`].
const ENTRY_OVERHEAD: usize = 32;

#[derive(Debug, Default)]
pub struct MemTable {
    map: BTreeMap<Vec<u8>, Versioned>,
    bytes: usize,
}

impl MemTable {
    /// Applies a write; ignored if the table already holds a newer version of the key.
    pub fn apply(&mut self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        match self.map.get_mut(&key) {
            Some(old) if old.seq >= seq => {}
            Some(old) => {
                self.bytes -= old.value.as_ref().map_or(0, Vec::len);
                self.bytes += value.as_ref().map_or(0, Vec::len);
                *old = Versioned { seq, value };
            }
            None => {
                self.bytes += size;
                self.map.insert(key, Versioned { seq, value });
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.map.get(key)
    }

    /// Approximate memory held, for sealing decisions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry in key order, as the engine's flush wants them.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.map.iter().map(|(k, v)| Entry {
            key: k.clone(),
            seq: v.seq,
            value: v.value.clone(),
        })
    }

    /// Up to `limit` entries (tombstones included) with `start <= key < end`, in key order.
    pub fn range(&self, start: Option<&[u8]>, end: Option<&[u8]>, limit: usize) -> Vec<Entry> {
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Vec::new(); // BTreeMap::range panics on an inverted range
            }
        }
        let lo = start.map_or(Bound::Unbounded, Bound::Included);
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.map
            .range::<[u8], _>((lo, hi))
            .take(limit)
            .map(|(k, v)| Entry {
                key: k.clone(),
                seq: v.seq,
                value: v.value.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_sequence_never_replaces_newer() {
        let mut t = MemTable::default();
        t.apply(b"k".to_vec(), 5, Some(b"new".to_vec()));
        t.apply(b"k".to_vec(), 3, Some(b"old".to_vec()));
        assert_eq!(t.get(b"k").unwrap().value.as_deref(), Some(&b"new"[..]));
        t.apply(b"k".to_vec(), 6, None);
        assert_eq!(t.get(b"k").unwrap().value, None);
        assert_eq!(t.len(), 1);
    }
}
