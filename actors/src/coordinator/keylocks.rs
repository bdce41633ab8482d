//! Per-key exclusion for a replica's read-modify-write: two writes of one key are never
//! read and written back concurrently, or the second would overwrite the first's dot and
//! lose it (REPLICATION.md: "never read, modify and write without holding the key").
//!
//! Pure: the coordinator asks to run an operation on a key; it runs now if the key is free,
//! otherwise it waits its turn in a FIFO queue; finishing one hands the key to the next.
//!
//! Invariants: at most one operation per key runs; waiting operations run in arrival
//! order; a key with nothing running and nothing waiting takes no memory; the number of
//! waiting operations over all keys is bounded by the caller's in-flight limit.

use smallvec::SmallVec;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// A held key: up to 24 bytes inline (taking a lock allocates nothing for short keys).
pub type LockKey = SmallVec<[u8; 24]>;

#[derive(Debug)]
pub struct KeyLocks<T> {
    /// Keys with an operation running, and what waits behind it.
    held: HashMap<LockKey, VecDeque<T>>,
    waiting: usize,
}

impl<T> Default for KeyLocks<T> {
    fn default() -> Self {
        KeyLocks {
            held: HashMap::new(),
            waiting: 0,
        }
    }
}

impl<T> KeyLocks<T> {
    /// Returns `Some(op)` when `op` may run now (the key was free; it is now held), `None`
    /// when it was queued behind the running one. One probe of the table (one hash of the
    /// key), with the caller's key moved in.
    pub fn acquire(&mut self, key: LockKey, op: T) -> Option<T> {
        match self.held.entry(key) {
            Entry::Occupied(mut held) => {
                held.get_mut().push_back(op);
                self.waiting += 1;
                None
            }
            Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                Some(op)
            }
        }
    }

    /// The running operation on `key` finished: returns the next one to run (the key stays
    /// held for it), or releases the key. One probe when nothing waits (the usual case); a
    /// key handed to a waiting operation goes back in with a second.
    pub fn release(&mut self, key: &[u8]) -> Option<T> {
        let (key, mut queue) = self.held.remove_entry(key)?;
        let next = queue.pop_front()?;
        self.waiting -= 1;
        self.held.insert(key, queue);
        Some(next)
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

    #[test]
    fn one_runs_per_key_others_wait_in_order() {
        let mut l = KeyLocks::default();
        assert_eq!(l.acquire(LockKey::from_slice(b"k"), 1), Some(1));
        assert_eq!(l.acquire(LockKey::from_slice(b"k"), 2), None);
        assert_eq!(
            l.acquire(LockKey::from_slice(b"j"), 9),
            Some(9),
            "other keys are independent"
        );
        assert_eq!(l.acquire(LockKey::from_slice(b"k"), 3), None);
        assert_eq!(l.load(), (2, 2));
        assert_eq!(l.release(b"k"), Some(2));
        assert_eq!(l.release(b"k"), Some(3));
        assert_eq!(l.release(b"k"), None);
        assert_eq!(l.release(b"j"), None);
        assert_eq!(l.load(), (0, 0));
        assert_eq!(
            l.acquire(LockKey::from_slice(b"k"), 4),
            Some(4),
            "released keys are free again"
        );
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
                        if let Some(n) = l.release(&[key]) {
                            running.insert(key, n);
                            started.push((key, n));
                        }
                    }
                } else {
                    next += 1;
                    if let Some(n) = l.acquire(LockKey::from_slice(&[key]), next) {
                        prop_assert!(running.insert(key, n).is_none(), "two at once");
                        started.push((key, n));
                    }
                }
            }
            // Drain: every queued op eventually runs.
            for key in 0u8..3 {
                while running.remove(&key).is_some() {
                    if let Some(n) = l.release(&[key]) {
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
