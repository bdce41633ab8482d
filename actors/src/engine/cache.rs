//! LRU cache of decoded data blocks, bounded by bytes.
//!
//! Keyed by (table id, block offset). Table ids are never reused within a process, so a
//! cached block can never be served for a different file; blocks of deleted tables are
//! evicted by GC (`evict_table`) or simply age out. One `Mutex` guards the map: lookups
//! are short (hash probe + LRU bump) and the I/O for a miss happens outside the lock.
//!
//! Invariant: `used <= capacity` after every insert; an item larger than the whole cache
//! is not cached at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::sstable::block::Block;

pub type BlockKey = (u64, u64);

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
    block: Arc<Block>,
    tick: u64,
    charge: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<BlockKey, Slot>,
    /// tick -> key, oldest first.
    lru: BTreeMap<u64, BlockKey>,
    next_tick: u64,
    used: usize,
}

pub struct BlockCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> Self {
        BlockCache {
            capacity: capacity_bytes,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below leaves the maps consistent before it can panic, so a
        // poisoned lock still guards a valid cache.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: BlockKey) -> Option<Arc<Block>> {
        let mut g = self.lock();
        let inner = &mut *g;
        let tick = inner.next_tick;
        match inner.map.get_mut(&key) {
            Some(slot) => {
                inner.lru.remove(&slot.tick);
                slot.tick = tick;
                inner.lru.insert(tick, key);
                inner.next_tick += 1;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.block.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn insert(&self, key: BlockKey, block: Arc<Block>) {
        let charge = block.charge;
        if charge > self.capacity {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        if let Some(old) = inner.map.remove(&key) {
            inner.lru.remove(&old.tick);
            inner.used -= old.charge;
        }
        while inner.used + charge > self.capacity {
            let Some((_, victim)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(v) = inner.map.remove(&victim) {
                inner.used -= v.charge;
            }
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.lru.insert(tick, key);
        inner.map.insert(
            key,
            Slot {
                block,
                tick,
                charge,
            },
        );
        inner.used += charge;
    }

    /// Drop every block of a table (called when its file is deleted).
    pub fn evict_table(&self, table_id: u64) {
        let mut g = self.lock();
        let inner = &mut *g;
        let keys: Vec<BlockKey> = inner
            .map
            .keys()
            .filter(|k| k.0 == table_id)
            .copied()
            .collect();
        for k in keys {
            if let Some(s) = inner.map.remove(&k) {
                inner.lru.remove(&s.tick);
                inner.used -= s.charge;
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            used_bytes: g.used as u64,
            capacity_bytes: self.capacity as u64,
            blocks: g.map.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(charge: usize) -> Arc<Block> {
        Arc::new(Block {
            entries: Vec::new(),
            charge,
        })
    }

    #[test]
    fn evicts_least_recently_used_within_byte_bound() {
        let c = BlockCache::new(300);
        c.insert((1, 0), block(100));
        c.insert((1, 100), block(100));
        c.insert((1, 200), block(100));
        assert!(c.get((1, 0)).is_some()); // (1,0) is now most recent
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
