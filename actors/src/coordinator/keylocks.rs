//! Per-key exclusion for a replica's read-modify-write: two writes of one key are never
//! read and written back concurrently, or the second would overwrite the first's dot and
//! lose it (REPLICATION.md: "never read, modify and write without holding the key").
//!
//! Pure: the coordinator asks to run an operation on a key; it runs now if the key is free,
//! otherwise it waits its turn in a FIFO queue; finishing one hands the key to the next.
//!
//! Invariants: at most one operation per key runs; waiting operations run in arrival
//! order; a key with nothing running and nothing waiting takes no memory; the number of
//! waiting operations over all keys is bounded by the caller's in-flight limit. The table
//! probes with the key's [`KeyHash`], which the caller computed once for the write and
//! passes to both `acquire` and `release` (a client chooses keys: the hash is keyed).

use crate::keyhash::KeyHash;
use hashbrown::hash_table::{Entry, HashTable};
use smallvec::SmallVec;
use std::collections::VecDeque;

/// A held key: up to 24 bytes inline (taking a lock allocates nothing for short keys).
pub type LockKey = SmallVec<[u8; 24]>;

/// A held key: its hash, the key, and the operations waiting behind the running one.
#[derive(Debug)]
struct Held<T> {
    hash: u64,
    key: LockKey,
    queue: VecDeque<T>,
}

#[derive(Debug)]
pub struct KeyLocks<T> {
    /// Keys with an operation running, and what waits behind it.
    held: HashTable<Held<T>>,
    waiting: usize,
}

impl<T> Default for KeyLocks<T> {
    fn default() -> Self {
        KeyLocks {
            held: HashTable::new(),
            waiting: 0,
        }
    }
}

impl<T> KeyLocks<T> {
    /// Returns `Some(op)` when `op` may run now (the key was free; it is now held), `None`
    /// when it was queued behind the running one. One probe of the table, with the caller's
    /// key moved in; `hash` is `KeyHash::of(&key)`.
    pub fn acquire(&mut self, key: LockKey, hash: KeyHash, op: T) -> Option<T> {
        debug_assert_eq!(
            hash,
            KeyHash::of(&key),
            "a key's hash travelled with another key"
        );
        let entry = self.held.entry(hash.get(), |h| h.key == key, |h| h.hash);
        match entry {
            Entry::Occupied(mut held) => {
                held.get_mut().queue.push_back(op);
                self.waiting += 1;
                None
            }
            Entry::Vacant(free) => {
                free.insert(Held {
                    hash: hash.get(),
                    key,
                    queue: VecDeque::new(),
                });
                Some(op)
            }
        }
    }

    /// The running operation on `key` finished: returns the next one to run (the key stays
    /// held for it), or releases the key. One probe; `hash` is `KeyHash::of(key)`.
    pub fn release(&mut self, key: &[u8], hash: KeyHash) -> Option<T> {
        let Ok(mut held) = self
            .held
            .find_entry(hash.get(), |h| h.key.as_slice() == key)
        else {
            return None;
        };
        match held.get_mut().queue.pop_front() {
            Some(next) => {
                self.waiting -= 1;
                Some(next)
            }
            None => {
                held.remove();
                None
            }
        }
    }

    /// Keys held (running) and operations waiting.
    pub fn load(&self) -> (usize, usize) {
        (self.held.len(), self.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The table's calls with the key's hash computed here.
    impl<T> KeyLocks<T> {
        fn take(&mut self, key: &[u8], op: T) -> Option<T> {
            self.acquire(LockKey::from_slice(key), KeyHash::of(key), op)
        }
        fn free(&mut self, key: &[u8]) -> Option<T> {
            self.release(key, KeyHash::of(key))
        }
    }

    #[test]
    fn one_runs_per_key_others_wait_in_order() {
        let mut l = KeyLocks::default();
        assert_eq!(l.take(b"k", 1), Some(1));
        assert_eq!(l.take(b"k", 2), None);
        assert_eq!(l.take(b"j", 9), Some(9), "other keys are independent");
        assert_eq!(l.take(b"k", 3), None);
        assert_eq!(l.load(), (2, 2));
        assert_eq!(l.free(b"k"), Some(2));
        assert_eq!(l.free(b"k"), Some(3));
        assert_eq!(l.free(b"k"), None);
        assert_eq!(l.free(b"j"), None);
        assert_eq!(l.load(), (0, 0));
        assert_eq!(l.take(b"k", 4), Some(4), "released keys are free again");
    }

    proptest! {
        /// Against a model: every operation runs exactly once, one at a time per key, in
        /// arrival order per key.
        #[test]
        fn never_two_at_once_and_fifo(ops in proptest::collection::vec((0u8..3, any::<bool>()), 0..60)) {
            let mut l = KeyLocks::default();
            let mut running: HashMap<u8, u32> = HashMap::new();
            let mut started: Vec<(u8, u32)> = Vec::new();
            let mut next = 0u32;
            for (key, finish) in ops {
                if finish {
                    if running.remove(&key).is_some() {
                        if let Some(n) = l.free(&[key]) {
                            running.insert(key, n);
                            started.push((key, n));
                        }
                    }
                } else {
                    next += 1;
                    if let Some(n) = l.take(&[key], next) {
                        prop_assert!(running.insert(key, n).is_none(), "two at once");
                        started.push((key, n));
                    }
                }
            }
            // Drain: every queued op eventually runs.
            for key in 0u8..3 {
                while running.remove(&key).is_some() {
                    if let Some(n) = l.free(&[key]) {
                        running.insert(key, n);
                        started.push((key, n));
                    }
                }
            }
            prop_assert_eq!(started.len() as u32, next);
            for key in 0u8..3 {
                let order: Vec<u32> = started.iter().filter(|(k, _)| *k == key).map(|(_, n)| *n).collect();
                let mut sorted = order.clone();
                sorted.sort_unstable();
                prop_assert_eq!(order, sorted);
            }
            prop_assert_eq!(l.load(), (0, 0));
        }
    }
}
