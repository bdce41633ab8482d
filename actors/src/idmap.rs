//! Fast, deterministic hash maps for keys the node makes itself.
//!
//! Owns: [`IdHasher`] (the Fx hash rustc uses) and the [`IdMap`] / [`IdSet`] aliases.
//! Membership tables are looked up on every piggybacked update, so the std SipHash (and a
//! `BTreeMap`'s string comparisons) dominated the N=1000 simulation; the block cache is
//! probed on every read from a table. Invariants: the hasher has no random state, so
//! iteration order depends only on the sequence of operations and the seeded simulation
//! stays deterministic. It is not DoS-resistant, so its keys are never chosen by a client:
//! ids of authenticated cluster peers (bounded by the table itself), the node's own
//! (table id, block offset) pairs, and `troupe bench`'s own request ids and key numbers.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash: a multiply-rotate word hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // Fx alone leaves the low bits (hashbrown's bucket index) weakly mixed for short
        // similar ids; murmur3's finaliser spreads every input bit over all output bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Deterministic hash map for node-id keys.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// Deterministic hash set for node-id keys.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_protocol::swim::NodeId;

    #[test]
    fn same_operations_iterate_in_the_same_order() {
        let build = || {
            let mut m: IdMap<NodeId, usize> = IdMap::default();
            for i in 0..500 {
                m.insert(NodeId(format!("n{i}")), i);
            }
            m.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(build(), build());
        assert_eq!(build().len(), 500);
    }
}
