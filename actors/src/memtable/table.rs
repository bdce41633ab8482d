//! The in-memory sorted table of the newest version of each key (pure, no I/O).
//!
//! Invariant: an entry is only ever replaced by one with a higher sequence number, so
//! applying records out of order (as WAL replay across segments might) cannot roll a key back.

use crate::engine::Entry;
use smallvec::SmallVec;
use std::collections::{btree_map, BTreeMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// The newest known version of a key. `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub seq: u64,
    pub value: Option<Vec<u8>>,
}

/// Per-entry bookkeeping overhead counted toward [`MemTable::bytes`].
const ENTRY_OVERHEAD: usize = 32;

/// Key bytes kept inside the map's nodes.
const INLINE_KEY: usize = 24;

/// A key as the map holds it: up to [`INLINE_KEY`] bytes inline, so the comparisons of a
/// descent read the node itself instead of one heap allocation per key compared (a cache
/// miss each in a large table).
type Key = SmallVec<[u8; INLINE_KEY]>;

fn map_key(key: Vec<u8>) -> Key {
    if key.len() <= INLINE_KEY {
        Key::from_slice(&key)
    } else {
        Key::from_vec(key)
    }
}

/// One memtable. Its map sits behind a lock so that readers on other threads (the
/// coordinator, through [`super::view::LocalReads`]) can look keys up while the Memtable
/// actor, the only writer, applies durable writes: a write lock per applied write, held for
/// one map insert.
#[derive(Debug, Default)]
pub struct MemTable {
    map: RwLock<BTreeMap<Key, Versioned>>,
    bytes: AtomicUsize,
}

impl MemTable {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Key, Versioned>> {
        // A panic mid-insert leaves the map consistent (BTreeMap's insert is all or
        // nothing for our purposes); a poisoned lock still guards it.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a write; ignored if the table already holds a newer version of the key.
    pub fn apply(&self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // One descent of the tree, whether the key is new or not.
        match map.entry(map_key(key)) {
            btree_map::Entry::Occupied(o) if o.get().seq >= seq => {}
            btree_map::Entry::Occupied(mut o) => {
                let old = o.get_mut();
                let (was, now) = (
                    old.value.as_ref().map_or(0, Vec::len),
                    value.as_ref().map_or(0, Vec::len),
                );
                *old = Versioned { seq, value };
                drop(map);
                self.bytes.fetch_add(now, Ordering::Relaxed);
                self.bytes.fetch_sub(was, Ordering::Relaxed);
            }
            btree_map::Entry::Vacant(v) => {
                v.insert(Versioned { seq, value });
                drop(map);
                self.bytes.fetch_add(size, Ordering::Relaxed);
            }
        }
    }

    /// The newest version of `key` this table holds (a copy: the lock is not held after).
    pub fn get(&self, key: &[u8]) -> Option<Versioned> {
        self.read().get(key).cloned()
    }

    /// Approximate memory held, for sealing decisions.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every entry in key order, as the engine's flush wants them. Holds the read lock
    /// while iterating: it is used on frozen tables, which nobody writes any more.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            map: self.read(),
            after: None,
        }
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
        self.read()
            .range::<[u8], _>((lo, hi))
            .take(limit)
            .map(|(k, v)| Entry {
                key: k.to_vec(),
                seq: v.seq,
                value: v.value.clone(),
            })
            .collect()
    }
}

/// [`MemTable::entries`]: walks the map under its read lock, one range step per entry (the
/// guard cannot lend an iterator that outlives this struct's borrow of it).
pub struct Entries<'a> {
    map: RwLockReadGuard<'a, BTreeMap<Key, Versioned>>,
    after: Option<Vec<u8>>,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let lo = match &self.after {
            None => Bound::Unbounded,
            Some(k) => Bound::Excluded(k.as_slice()),
        };
        let (k, v) = self.map.range::<[u8], _>((lo, Bound::Unbounded)).next()?;
        let e = Entry {
            key: k.to_vec(),
            seq: v.seq,
            value: v.value.clone(),
        };
        self.after = Some(k.to_vec());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_sequence_never_replaces_newer() {
        let t = MemTable::default();
        t.apply(b"k".to_vec(), 5, Some(b"new".to_vec()));
        t.apply(b"k".to_vec(), 3, Some(b"old".to_vec()));
        assert_eq!(t.get(b"k").unwrap().value.as_deref(), Some(&b"new"[..]));
        t.apply(b"k".to_vec(), 6, None);
        assert_eq!(t.get(b"k").unwrap().value, None);
        assert_eq!(t.len(), 1);
    }
}
