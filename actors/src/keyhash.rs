//! The keyed hash of a client's key, computed once per request and carried along.
//!
//! Owns: [`KeyHash`] and the process's one secret hash state. A put used to hash its key
//! with SipHash about five times on the event loop (the key lock taken and freed, the
//! coordinator's prefetch, the memory table's lookup for the read-modify-write, its insert
//! once durable, and one more per memory table a lookup walks); each took a few hundred
//! instructions for a short key. Now the coordinator hashes the key once when it takes the
//! key's lock, and that hash goes with the write to the Memtable actor, to the WAL group
//! and back to the insert, so the maps that hold client keys (`coordinator::keylocks`,
//! `memtable::table`) probe with it.
//!
//! Invariants:
//! - `KeyHash::of(k)` depends only on `k` within one process, so a hash computed anywhere
//!   finds the key in any of these maps. A hash travels beside its key by convention (the
//!   coordinator's `run_locked`, `memtable::Update`, the WAL group's pending writes), and is
//!   always computed from that key; debug builds check it where it is stored
//!   (`KeyLocks::acquire`, `MemTable::apply`), since a hash of another key would leave the
//!   index and the ordered keys disagreeing.
//! - The hash is std's keyed hasher (currently SipHash-1-3) under a secret drawn at random
//!   when the process first hashes a key (`RandomState`): clients choose the keys, and an
//!   unkeyed hash would let one send keys that all land in one bucket (HashDoS), turning the
//!   memtable's insert, under its write lock, into a scan. Hashes never leave the process
//!   (not in files, not on the wire, and no scan follows hash order). One secret serves all
//!   the maps where std gave each map its own (derived from one per-thread seed): the
//!   protection is that the secret is unknown, which holds for one as for many; what is lost
//!   is a fresh secret per memtable generation, so a colliding key set, were one learned
//!   (say by timing), would stay colliding until a restart.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

/// A key's keyed hash (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHash(u64);

fn state() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new)
}

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &[u8]) -> KeyHash {
        KeyHash(state().hash_one(key))
    }

    /// The value the hash tables take.
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_one_hash_and_keys_apart() {
        assert_eq!(
            KeyHash::of(b"key-1"),
            KeyHash::of(b"key-1".to_vec().as_slice())
        );
        let distinct: std::collections::HashSet<u64> = (0..1000)
            .map(|i| KeyHash::of(format!("key-{i}").as_bytes()).get())
            .collect();
        assert_eq!(distinct.len(), 1000);
    }
}
