//! The in-memory sorted table of the newest version of each key (pure, no I/O).
//!
//! Two structures over one set of keys: a hash index holding each key's version (point
//! lookups and overwrites: one probe) and an ordered set of the keys (flushes and scans). A
//! descent of a B-tree of a few hundred thousand keys misses the cache at most levels; it
//! was 17% of a node's CPU under gets served from memory, the probe is a small part of it.
//! The index probes with the key's [`KeyHash`], which the caller computed once for the
//! request; each entry keeps its hash, so growing the index moves entries without hashing
//! their keys again.
//!
//! Invariants:
//! - The index and the ordered set hold the same keys (both change under one write lock).
//! - An entry is only ever replaced by one with a higher sequence number, so applying
//!   records out of order (as WAL replay across segments might) cannot roll a key back.

use super::pipeline::Generation;
use crate::engine::Entry;
use crate::keyhash::KeyHash;
use hashbrown::hash_table::{self, HashTable};
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The newest known version of a key. `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub seq: u64,
    pub value: Option<Vec<u8>>,
}

/// Key bytes kept inside the map's nodes.
const INLINE_KEY: usize = 24;

/// Per-entry bookkeeping counted toward [`MemTable::bytes`] besides the heap bytes of the key
/// and value: a hash bucket (the [`Slot`] of hash, key and version, and a control byte, at
/// hashbrown's 7/8 load) and a B-tree slot (the key, in nodes about two thirds full).
const ENTRY_OVERHEAD: usize =
    (std::mem::size_of::<Slot>() + 1) * 8 / 7 + std::mem::size_of::<Key>() * 3 / 2;

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

/// The table after a sealed one has room for as many keys as it holds: a generation that
/// takes no more keys than the one before never grows its index (the first one after a
/// start grows from what the WAL replay left).
impl Generation for Arc<MemTable> {
    fn next_generation(&self) -> Self {
        Arc::new(MemTable::with_room_for(self.len()))
    }

    fn memory_bytes(&self) -> usize {
        self.bytes()
    }
}

/// One key of the index: its hash (`KeyHash::of(key)`), the key, its version.
#[derive(Debug)]
struct Slot {
    hash: u64,
    key: Key,
    version: Versioned,
}

/// The keys' versions and their order (see the module docs).
#[derive(Debug, Default)]
struct Map {
    index: HashTable<Slot>,
    order: BTreeSet<Key>,
}

impl Map {
    fn find(&self, key: &[u8], hash: KeyHash) -> Option<&Versioned> {
        self.index
            .find(hash.get(), |s| s.key.as_slice() == key)
            .map(|s| &s.version)
    }
}

/// One memtable. Its map sits behind a lock so that readers outside the Memtable actor (the
/// coordinator, through [`super::view::LocalReads`], on whatever thread it runs) can look
/// keys up while the Memtable actor, the only writer, applies durable writes: a write lock
/// per applied write, held for one insert.
#[derive(Debug, Default)]
pub struct MemTable {
    map: RwLock<Map>,
    bytes: AtomicUsize,
}

impl MemTable {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        // A panic mid-apply could leave a key in the index but not in the order (or its old
        // version): the only panic there is an allocation failure, which aborts the
        // process, so a poisoned lock still guards a consistent map.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a write; ignored if the table already holds a newer version of the key.
    /// `hash` is `KeyHash::of(&key)`.
    pub fn apply(&self, key: Vec<u8>, hash: KeyHash, seq: u64, value: Option<Vec<u8>>) {
        // A key longer than the inline bytes is on the heap twice (index and order).
        let key_heap = if key.len() > INLINE_KEY {
            2 * key.len()
        } else {
            0
        };
        debug_assert_eq!(
            hash,
            KeyHash::of(&key),
            "a key's hash travelled with another key"
        );
        let size = key_heap + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        let map = &mut *guard;
        let entry = map.index.entry(
            hash.get(),
            |s| s.key.as_slice() == key.as_slice(),
            |s| s.hash,
        );
        match entry {
            hash_table::Entry::Occupied(o) if o.get().version.seq >= seq => {}
            hash_table::Entry::Occupied(mut o) => {
                let old = &mut o.get_mut().version;
                let (was, now) = (
                    old.value.as_ref().map_or(0, Vec::len),
                    value.as_ref().map_or(0, Vec::len),
                );
                *old = Versioned { seq, value };
                drop(guard);
                self.bytes.fetch_add(now, Ordering::Relaxed);
                self.bytes.fetch_sub(was, Ordering::Relaxed);
            }
            hash_table::Entry::Vacant(v) => {
                let key = map_key(key);
                map.order.insert(key.clone());
                v.insert(Slot {
                    hash: hash.get(),
                    key,
                    version: Versioned { seq, value },
                });
                drop(guard);
                self.bytes.fetch_add(size, Ordering::Relaxed);
            }
        }
    }

    /// `f` of the newest version of `key` this table holds, under the read lock (no copy).
    /// `hash` is `KeyHash::of(key)`.
    pub fn with<R>(&self, key: &[u8], hash: KeyHash, f: impl FnOnce(&Versioned) -> R) -> Option<R> {
        self.read().find(key, hash).map(f)
    }

    /// An empty table whose index has room for `keys` keys without growing. A hash index
    /// grown from empty moves every entry it holds at each doubling, in one insert, under
    /// the write lock on the Memtable's event loop (in a standalone test of a std map, which
    /// also rehashed each key, one insert took 32-35 ms at the doubling past 229,376 keys,
    /// docs/BENCHMARKS.md); the pipeline sizes each generation for the keys of the one
    /// before it ([`Generation`]). The room is reserved now and counted in
    /// [`MemTable::bytes`] only as keys fill it.
    pub fn with_room_for(keys: usize) -> MemTable {
        let mut map = Map::default();
        map.index.reserve(keys, |s| s.hash);
        MemTable {
            map: RwLock::new(map),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Keys the index holds without growing.
    #[cfg(test)]
    fn index_capacity(&self) -> usize {
        self.read().index.capacity()
    }

    /// Approximate memory of the entries: keys, values and each entry's share of the index
    /// at its usual load (reported as the memtable's bytes, and what `memtable_bytes`
    /// bounds). Room reserved by [`MemTable::with_room_for`] counts
    /// only once filled.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.read().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().index.is_empty()
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
        let map = self.read();
        map.order
            .range::<[u8], _>((lo, hi))
            .take(limit)
            .map(|k| map.entry(k))
            .collect()
    }
}

impl Map {
    /// The entry of `key`, one of the ordered keys (so in the index too).
    fn entry(&self, key: &Key) -> Entry {
        let v = self
            .find(key, KeyHash::of(key))
            .expect("the index holds every ordered key");
        Entry {
            key: key.to_vec(),
            seq: v.seq,
            value: v.value.clone(),
        }
    }
}

/// [`MemTable::entries`]: walks the map under its read lock, one range step per entry (the
/// guard cannot lend an iterator that outlives this struct's borrow of it).
pub struct Entries<'a> {
    map: RwLockReadGuard<'a, Map>,
    after: Option<Vec<u8>>,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let lo = match &self.after {
            None => Bound::Unbounded,
            Some(k) => Bound::Excluded(k.as_slice()),
        };
        let k = self
            .map
            .order
            .range::<[u8], _>((lo, Bound::Unbounded))
            .next()?;
        let e = self.map.entry(k);
        self.after = Some(k.to_vec());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's calls with the key's hash computed here.
    trait Plain {
        fn put(&self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>);
        fn find(&self, key: &[u8]) -> Option<Versioned>;
    }

    impl Plain for MemTable {
        fn put(&self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
            let hash = KeyHash::of(&key);
            self.apply(key, hash, seq, value)
        }
        fn find(&self, key: &[u8]) -> Option<Versioned> {
            self.with(key, KeyHash::of(key), Versioned::clone)
        }
    }

    #[test]
    fn older_sequence_never_replaces_newer() {
        let t = MemTable::default();
        t.put(b"k".to_vec(), 5, Some(b"new".to_vec()));
        t.put(b"k".to_vec(), 3, Some(b"old".to_vec()));
        assert_eq!(t.find(b"k").unwrap().value.as_deref(), Some(&b"new"[..]));
        t.put(b"k".to_vec(), 6, None);
        assert_eq!(t.find(b"k").unwrap().value, None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_next_generation_takes_as_many_keys_as_the_last_without_growing() {
        let key = |g: &str, i: u32| format!("{g}-{i:06}").into_bytes();
        let t = Arc::new(MemTable::default());
        for i in 0..20_000 {
            t.put(key("first", i), i.into(), Some(vec![1; 8]));
        }
        let next = t.next_generation();
        assert!(next.is_empty());
        assert_eq!(next.bytes(), 0);
        let room = next.index_capacity();
        for i in 0..20_000 {
            next.put(key("second", i), i.into(), Some(vec![2; 8]));
        }
        assert_eq!(
            next.index_capacity(),
            room,
            "the next generation's index grew"
        );
        assert_eq!(next.len(), 20_000);
        assert!(
            next.find(&key("first", 7)).is_none(),
            "the next generation starts empty"
        );
    }

    /// Against a `BTreeMap` model: lookups, scans and the flush order agree after any
    /// sequence of writes (short keys held inline, long ones on the heap; sequence numbers
    /// out of order).
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn key(i: u8) -> Vec<u8> {
            match i % 3 {
                0 => vec![i],
                1 => format!("key-{i:03}").into_bytes(),
                _ => format!("a-key-longer-than-twenty-four-bytes-{i:03}").into_bytes(),
            }
        }

        proptest! {
            #[test]
            fn a_table_answers_like_a_sorted_map(
                writes in prop::collection::vec((0u8..40, 0u64..200, prop::option::of(0u8..5)), 0..300),
                bounds in (0u8..40, 0u8..40, 0usize..50),
            ) {
                let t = MemTable::default();
                let mut model: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> = BTreeMap::new();
                for (k, seq, v) in writes {
                    let value = v.map(|v| vec![v; v as usize]);
                    t.put(key(k), seq, value.clone());
                    match model.get(&key(k)) {
                        Some((old, _)) if *old >= seq => {}
                        _ => {
                            model.insert(key(k), (seq, value));
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                for i in 0..40 {
                    let want = model.get(&key(i)).map(|(seq, value)| Versioned { seq: *seq, value: value.clone() });
                    prop_assert_eq!(t.find(&key(i)), want);
                }
                let all: Vec<(Vec<u8>, u64, Option<Vec<u8>>)> =
                    model.iter().map(|(k, (s, v))| (k.clone(), *s, v.clone())).collect();
                let flat = |es: Vec<Entry>| -> Vec<(Vec<u8>, u64, Option<Vec<u8>>)> {
                    es.into_iter().map(|e| (e.key, e.seq, e.value)).collect()
                };
                prop_assert_eq!(flat(t.entries().collect()), all.clone());
                let (lo, hi, limit) = (key(bounds.0), key(bounds.1), bounds.2);
                let want: Vec<_> = all
                    .iter()
                    .filter(|(k, _, _)| *k >= lo && *k < hi)
                    .take(limit)
                    .cloned()
                    .collect();
                prop_assert_eq!(flat(t.range(Some(&lo), Some(&hi), limit)), want);
            }
        }
    }
}
