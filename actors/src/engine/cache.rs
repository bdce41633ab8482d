//! Cache of decoded data blocks, bounded by bytes, evicting by CLOCK (second chance).
//!
//! Keyed by (table id, block offset). Table ids are never reused within a process, so a
//! cached block can never be served for a different file; blocks of deleted tables are
//! evicted by GC (`evict_table`) or simply age out. The cache is split into shards (by a
//! hash of the key), each under its own `Mutex` with an equal share of the capacity, so
//! concurrent readers rarely wait on one another; a cache under 2 MiB is one shard.
//!
//! A hit is a hash probe and one flag set (an exact LRU moved the block in an ordered map
//! on every hit, which with SipHash was a fifth of a read from a cached table). To make
//! room, the clock hand sweeps the shard's slots in order: a block used since the hand last
//! passed loses its flag and stays, the first one not used is evicted. So a block read
//! between two sweeps survives the next one, and an evicted block is one not read for at
//! least one whole sweep. The I/O for a miss happens outside any lock.
//!
//! Invariants: every shard's `used <= its capacity` after every insert, so the whole cache
//! stays within `capacity`; an item larger than a shard is not cached at all; `map[k] == i`
//! exactly when `slots[i]` holds key `k`, and every empty slot is in `free`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::sstable::block::Block;
use crate::idmap::IdMap;

pub type BlockKey = (u64, u64);

const MAX_SHARDS: usize = 16;
const MIN_SHARD_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    pub blocks: u64,
}

impl CacheStats {
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

struct Slot {
    key: BlockKey,
    block: Arc<Block>,
    charge: usize,
    /// Read since the clock hand last passed.
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: IdMap<BlockKey, usize>,
    /// The clock's face: `None` where a block was removed (its index is in `free`).
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    used: usize,
}

impl Shard {
    fn remove(&mut self, key: &BlockKey) {
        if let Some(i) = self.map.remove(key) {
            self.take(i);
        }
    }

    /// Empties slot `i` (its key already out of `map`).
    fn take(&mut self, i: usize) {
        if let Some(old) = self.slots[i].take() {
            self.used -= old.charge;
            self.free.push(i);
        }
    }

    /// Evicts one block: the first the hand finds unread since its last pass, clearing
    /// the flags it passes. Two turns at most (the first clears every flag); `false` only
    /// when the shard is empty.
    fn evict_one(&mut self) -> bool {
        if self.map.is_empty() {
            return false;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            match &mut self.slots[i] {
                Some(s) if s.referenced => s.referenced = false,
                Some(s) => {
                    let key = s.key;
                    self.map.remove(&key);
                    self.take(i);
                    return true;
                }
                None => {}
            }
        }
    }
}

pub struct BlockCache {
    capacity: usize,
    shard_capacity: usize,
    shards: Box<[Mutex<Shard>]>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> Self {
        let n = (capacity_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
        BlockCache {
            capacity: capacity_bytes,
            shard_capacity: capacity_bytes / n,
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: BlockKey) -> MutexGuard<'_, Shard> {
        // splitmix64's finaliser over the pair; blocks of one table spread over all shards.
        let mut h = key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.1;
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
        let i = (h % self.shards.len() as u64) as usize;
        lock(&self.shards[i])
    }

    pub fn get(&self, key: BlockKey) -> Option<Arc<Block>> {
        let block = self.peek(key);
        let counter = if block.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        block
    }

    /// [`get`](Self::get) without counting a hit or a miss (the block is still marked read): for
    /// a lookup that may be abandoned and redone through `get`, which then counts it once.
    /// Count a hit it made final with [`record_hit`](Self::record_hit).
    pub fn peek(&self, key: BlockKey) -> Option<Arc<Block>> {
        let mut g = self.shard(key);
        let shard = &mut *g;
        let i = *shard.map.get(&key)?;
        let slot = shard.slots[i].as_mut()?;
        slot.referenced = true;
        Some(slot.block.clone())
    }

    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn insert(&self, key: BlockKey, block: Arc<Block>) {
        let charge = block.charge;
        if charge > self.shard_capacity {
            return;
        }
        let mut g = self.shard(key);
        let shard = &mut *g;
        shard.remove(&key);
        while shard.used + charge > self.shard_capacity && shard.evict_one() {}
        let slot = Some(Slot {
            key,
            block,
            charge,
            referenced: false,
        });
        let i = match shard.free.pop() {
            Some(i) => {
                shard.slots[i] = slot;
                i
            }
            None => {
                shard.slots.push(slot);
                shard.slots.len() - 1
            }
        };
        shard.map.insert(key, i);
        shard.used += charge;
    }

    /// Drop every block of a table (called when its file is deleted).
    pub fn evict_table(&self, table_id: u64) {
        for s in self.shards.iter() {
            let mut shard = lock(s);
            let keys: Vec<BlockKey> = shard
                .map
                .keys()
                .filter(|k| k.0 == table_id)
                .copied()
                .collect();
            for k in keys {
                shard.remove(&k);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (mut used, mut blocks) = (0u64, 0u64);
        for s in self.shards.iter() {
            let shard = lock(s);
            used += shard.used as u64;
            blocks += shard.map.len() as u64;
        }
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            used_bytes: used,
            capacity_bytes: self.capacity as u64,
            blocks,
        }
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every mutation leaves the maps consistent before it can panic, so a poisoned lock
    // still guards a valid shard.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn block(charge: usize) -> Arc<Block> {
        Arc::new(Block::empty_with_charge(charge))
    }

    #[test]
    fn evicts_an_unread_block_within_byte_bound() {
        let c = BlockCache::new(300);
        c.insert((1, 0), block(100));
        c.insert((1, 100), block(100));
        c.insert((1, 200), block(100));
        assert!(c.get((1, 0)).is_some()); // (1,0) is read: a second chance
        c.insert((2, 0), block(100)); // evicts (1,100)
        assert!(c.get((1, 100)).is_none());
        assert!(c.get((1, 0)).is_some());
        assert!(c.get((1, 200)).is_some());
        let s = c.stats();
        assert!(s.used_bytes <= 300);
        assert_eq!((s.hits, s.misses), (3, 1));
        assert!((s.hit_rate() - 0.75).abs() < 1e-9);
    }

    #[test]
    fn a_block_read_since_the_last_sweep_gets_a_second_chance() {
        let c = BlockCache::new(300);
        for k in [(1, 0), (1, 1), (1, 2)] {
            c.insert(k, block(100));
        }
        assert!(c.get((1, 0)).is_some());
        assert!(c.get((1, 1)).is_some());
        c.insert((2, 0), block(100)); // the hand clears (1,0) and (1,1), evicts (1,2)
        assert!(c.peek((1, 2)).is_none());
        assert!(c.peek((1, 0)).is_some() && c.peek((1, 1)).is_some());
        // Both were read again; the new block, unread, is what the next sweep takes.
        c.insert((2, 1), block(100));
        assert!(c.peek((2, 0)).is_none());
        assert_eq!(c.stats().blocks, 3);
    }

    /// Random inserts, reads and table evictions against a plain map of what was
    /// inserted: a cached block is always the last one inserted under its key, the bytes
    /// charged are those of the blocks held, within capacity, and the map and the slots
    /// agree.
    #[test]
    fn model_random_operations() {
        use proptest::prelude::*;
        let op = (0u8..4, 0u64..3, 0u64..12, 1usize..120);
        proptest!(ProptestConfig::with_cases(200), |(ops in proptest::collection::vec(op, 1..300))| {
            let c = BlockCache::new(400);
            let mut model: HashMap<BlockKey, Arc<Block>> = HashMap::new();
            for (kind, table, off, charge) in ops {
                let key = (table, off);
                match kind {
                    0 | 1 => {
                        let b = block(charge);
                        c.insert(key, b.clone());
                        model.insert(key, b);
                    }
                    2 => {
                        if let Some(got) = c.get(key) {
                            prop_assert!(Arc::ptr_eq(&got, &model[&key]));
                        }
                    }
                    _ => c.evict_table(table),
                }
                let shard = lock(&c.shards[0]);
                let held: usize = shard.slots.iter().flatten().map(|s| s.charge).sum();
                prop_assert_eq!(held, shard.used);
                prop_assert!(shard.used <= 400);
                prop_assert_eq!(shard.map.len(), shard.slots.iter().flatten().count());
                for (k, &i) in &shard.map {
                    prop_assert_eq!(shard.slots[i].as_ref().map(|s| s.key), Some(*k));
                }
            }
        });
    }

    #[test]
    fn oversized_items_are_not_cached_and_tables_can_be_evicted() {
        let c = BlockCache::new(100);
        c.insert((1, 0), block(101));
        assert!(c.get((1, 0)).is_none());
        c.insert((1, 0), block(40));
        c.insert((2, 0), block(40));
        c.evict_table(1);
        assert!(c.get((1, 0)).is_none());
        assert!(c.get((2, 0)).is_some());
        assert_eq!(c.stats().used_bytes, 40);
    }

    #[test]
    fn sharded_cache_stays_within_its_capacity() {
        let c = BlockCache::new(8 << 20);
        assert_eq!(c.shards.len(), 8);
        for i in 0..10_000u64 {
            c.insert((i % 7, i * 4096), block(5000));
            assert!(c.get((i % 7, i * 4096)).is_some(), "just inserted");
        }
        let s = c.stats();
        assert!(s.used_bytes <= 8 << 20, "{s:?}");
        assert!(s.used_bytes > 7 << 20, "shards should fill up: {s:?}");
        c.evict_table(3);
        let after = c.stats();
        assert!(after.blocks < s.blocks);
        assert!((0..10_000u64)
            .filter(|i| i % 7 == 3)
            .all(|i| c.get((3, i * 4096)).is_none()));
    }

    #[test]
    fn usable_from_many_threads() {
        let c = Arc::new(BlockCache::new(1000));
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        c.insert((t, i), block(10));
                        c.get((t, i / 2));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("thread");
        }
        assert!(c.stats().used_bytes <= 1000);
    }
}
