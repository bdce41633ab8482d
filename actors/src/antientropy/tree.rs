//! The tictac (XOR) trees of one node: per partition, a tree over (key, object hash) kept
//! current as writes land.
//!
//! A key's place: its partition is [`crate::ring::partition_for`] (the top bits of
//! blake3(key)); its segment the next `depth * log2(fanout)` bits of the same hash. Its
//! contribution to the segment is `leaf(key, hash)`, a mix of 64 more bits of blake3(key)
//! with the object's hash (so one blake3 of the key per write: the coordinator's, which
//! placed the key with it, when the write comes with it), and every node of the tree
//! holds the XOR of its children: order-free, so two replicas that hold the same (key,
//! object) pairs have the same trees however their writes arrived, and a change of one key
//! costs `depth + 1` XORs (no rehash of a whole segment).
//!
//! Invariants:
//! - `keys` holds each key's current hash: an overwrite XORs the old contribution out
//!   before the new one goes in, so every node equals the XOR of the leaves of its keys.
//! - `keys` is ordered by the key's 64 hash bits: a segment is one range of them (its
//!   partition and segment are their top bits), and a descent compares integers, reading a
//!   key's bytes only at its own bits.
//! - A partition's nodes are allocated on its first key; an emptied partition keeps them
//!   (all zero), which reads as empty.

use smallvec::{smallvec, SmallVec};
use std::collections::{btree_map, BTreeMap};
use troupe_protocol::antientropy::TreeShape;
use troupe_protocol::object::{ActorId, Object};

/// The default shape: 32 x 32 = 1,024 segments per partition (8 KiB of hashes). With the
/// default 256 partitions, 1M keys are ~4 per segment, so narrowing a difference to a
/// segment names at most a handful of keys besides the differing one.
pub const DEFAULT_SHAPE: TreeShape = TreeShape {
    fanout: 32,
    depth: 2,
};

/// What goes into the tree for a stored object, if anything: `None` is treated as absent
/// (the key is not compared and a replica without it does not differ).
///
/// The hash of [`TreeClock::of`], which decides.
pub fn tree_hash(object: &Object) -> Option<u64> {
    TreeClock::of(object).map(|c| c.hash())
}

/// What a write tells the tree about its object, taken on the writer's thread without
/// hashing it: the object's clock (inline up to three actors, so no allocation for a
/// cluster's usual N), which the tree's thread hashes ([`TreeClock::hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeClock(SmallVec<[(ActorId, u64); 3]>);

impl TreeClock {
    /// THE one place that decides which objects anti-entropy compares: every write
    /// notification, the start-up rebuild and an exchange's own joins go through it (and
    /// [`tree_hash`]). An empty object is absent. (Tombstone GC can exclude sealed
    /// tombstones here.)
    pub fn of(object: &Object) -> Option<TreeClock> {
        if object.is_empty() {
            return None;
        }
        Some(TreeClock(object.clock().collect()))
    }

    /// The tree's hash of the object: [`Object::clock_hash`].
    pub fn hash(&self) -> u64 {
        Object::hash_clock(self.0.iter().copied())
    }
}

/// 128 bits of blake3(key), big-endian, as (bits, salt): `bits` place the key (partition
/// and segment), `salt` goes into its leaf.
fn key_hash(key: &[u8]) -> (u64, u64) {
    split_digest(&blake3::hash(key))
}

/// [`key_hash`] of the key whose blake3 hash is `digest`.
fn split_digest(digest: &blake3::Hash) -> (u64, u64) {
    let b = digest.as_bytes();
    (
        u64::from_be_bytes(b[..8].try_into().expect("32-byte hash")),
        u64::from_be_bytes(b[8..16].try_into().expect("32-byte hash")),
    )
}

/// MurmurHash3's 64-bit finalizer: a bijection that mixes every input bit into every
/// output bit.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A key's contribution to its segment, from its salt and its object hash. For one key it
/// is a bijection of the hash (two objects of a key never share a leaf); the salt, 64 bits
/// of blake3(key), keeps two keys with equal objects from cancelling out.
fn leaf_of(salt: u64, hash: u64) -> u64 {
    fmix64(salt ^ fmix64(hash))
}

/// `key`'s leaf for an object hash (see [`leaf_of`]).
#[cfg(test)]
fn leaf(key: &[u8], hash: u64) -> u64 {
    leaf_of(key_hash(key).1, hash)
}

/// A key as `keys` holds it: short keys inline, so an insert allocates only for a long key.
type Key = SmallVec<[u8; 24]>;

/// The keys whose 64 hash bits are equal, with their object hashes: almost always one (two
/// keys share their bits with a chance of 2^-64).
type Slot = SmallVec<[(Key, u64); 1]>;

/// One partition's tree.
#[derive(Debug, Clone)]
struct PartitionTree {
    /// `levels[d]` holds `fanout^d` node hashes; `levels[depth]` are the segments.
    levels: Vec<Vec<u64>>,
    /// Key bits -> the keys with those bits and their object hashes: a segment's keys are
    /// one range (see the module docs).
    keys: BTreeMap<u64, Slot>,
    /// Keys held.
    len: usize,
}

/// Every partition's tree on this node.
#[derive(Debug, Clone)]
pub struct Trees {
    shape: TreeShape,
    /// log2(Q): the partition bits of a key's hash.
    bits: u32,
    /// log2(segments per partition).
    leaf_bits: u32,
    /// Indexed by partition; `None` until the partition's first key.
    parts: Vec<Option<PartitionTree>>,
    len: usize,
}

/// Why a shape cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the anti-entropy tree fanout must be a power of two from 2 to 256, not {fanout}")]
    Fanout { fanout: u32 },
    #[error("the anti-entropy tree has {partition_bits} partition bits and {leaf_bits} segment bits; at most 48 in all")]
    TooDeep { partition_bits: u32, leaf_bits: u32 },
}

impl Trees {
    /// Empty trees for `partitions` (a power of two, `cluster.partitions`).
    pub fn new(shape: TreeShape, partitions: u32) -> Result<Trees, ShapeError> {
        if !shape.fanout.is_power_of_two() || !(2..=256).contains(&shape.fanout) {
            return Err(ShapeError::Fanout {
                fanout: shape.fanout,
            });
        }
        let bits = partitions.max(1).trailing_zeros();
        let leaf_bits = shape.fanout.trailing_zeros() * shape.depth;
        if bits + leaf_bits > 48 {
            return Err(ShapeError::TooDeep {
                partition_bits: bits,
                leaf_bits,
            });
        }
        Ok(Trees {
            shape,
            bits,
            leaf_bits,
            parts: (0..1u64 << bits).map(|_| None).collect(),
            len: 0,
        })
    }

    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// Keys in the trees.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys held in `partition`.
    pub fn keys_in(&self, partition: u32) -> usize {
        self.part(partition).map_or(0, |t| t.len)
    }

    fn part(&self, partition: u32) -> Option<&PartitionTree> {
        self.parts.get(partition as usize)?.as_ref()
    }

    /// (partition, segment) of a key. The partition is `crate::ring::partition_for` (the
    /// top bits of the same hash), taken from the one hash.
    pub fn place(&self, key: &[u8]) -> (u32, u32) {
        self.place_bits(key_hash(key).0)
    }

    /// (partition, segment) of a key's bits.
    fn place_bits(&self, bits: u64) -> (u32, u32) {
        let segment = if self.leaf_bits == 0 {
            0
        } else {
            ((bits << self.bits) >> (64 - self.leaf_bits)) as u32
        };
        let partition = if self.bits == 0 {
            0
        } else {
            (bits >> (64 - self.bits)) as u32
        };
        (partition, segment)
    }

    /// The key's current hash here (`None`: absent).
    pub fn get(&self, key: &[u8]) -> Option<u64> {
        self.get_at(key, key_hash(key).0)
    }

    fn get_at(&self, key: &[u8], bits: u64) -> Option<u64> {
        let slot = self.part(self.place_bits(bits).0)?.keys.get(&bits)?;
        slot.iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, h)| *h)
    }

    /// Sets the key's hash (`None`: the key is absent), adjusting every node above it.
    pub fn set(&mut self, key: &[u8], hash: Option<u64>) {
        self.set_placed(key, None, hash)
    }

    /// [`Trees::set`] with the key's `blake3` hash when the caller has it (`None`: hashed
    /// here); `digest` must be `blake3::hash(key)`.
    pub fn set_placed(&mut self, key: &[u8], digest: Option<&blake3::Hash>, hash: Option<u64>) {
        let placed = match digest {
            Some(d) => {
                debug_assert_eq!(*d, blake3::hash(key), "a digest of another key");
                split_digest(d)
            }
            None => key_hash(key),
        };
        self.set_at(key, placed, hash)
    }

    /// [`Trees::set`] with the key's (bits, salt) given.
    fn set_at(&mut self, key: &[u8], (bits, salt): (u64, u64), hash: Option<u64>) {
        let (p, s) = self.place_bits(bits);
        let shape = self.shape;
        let part = match (&mut self.parts[p as usize], hash) {
            (Some(t), _) => t,
            (None, None) => return,
            (slot @ None, Some(_)) => slot.insert(PartitionTree {
                levels: (0..=shape.depth)
                    .map(|d| vec![0; shape.fanout.pow(d) as usize])
                    .collect(),
                keys: BTreeMap::new(),
                len: 0,
            }),
        };
        let old = match (part.keys.entry(bits), hash) {
            (btree_map::Entry::Vacant(_), None) => return,
            (btree_map::Entry::Vacant(v), Some(h)) => {
                v.insert(smallvec![(Key::from_slice(key), h)]);
                None
            }
            (btree_map::Entry::Occupied(mut o), hash) => {
                let slot = o.get_mut();
                match (slot.iter().position(|(k, _)| k.as_slice() == key), hash) {
                    (Some(i), Some(h)) if slot[i].1 == h => return,
                    (Some(i), Some(h)) => Some(std::mem::replace(&mut slot[i].1, h)),
                    (Some(i), None) => {
                        let (_, old) = slot.remove(i);
                        if slot.is_empty() {
                            o.remove();
                        }
                        Some(old)
                    }
                    (None, Some(h)) => {
                        slot.push((Key::from_slice(key), h));
                        None
                    }
                    (None, None) => return,
                }
            }
        };
        match (old, hash) {
            (None, Some(_)) => {
                self.len += 1;
                part.len += 1;
            }
            (Some(_), None) => {
                self.len -= 1;
                part.len -= 1;
            }
            _ => {}
        }
        let delta = old.map_or(0, |h| leaf_of(salt, h)) ^ hash.map_or(0, |h| leaf_of(salt, h));
        let mut idx = s as usize;
        for level in part.levels.iter_mut().rev() {
            level[idx] ^= delta;
            idx /= shape.fanout as usize;
        }
    }

    /// The hash of node `index` at `level` of `partition` (0 for a partition never written).
    pub fn node(&self, partition: u32, level: u32, index: u32) -> u64 {
        self.part(partition)
            .and_then(|t| t.levels.get(level as usize)?.get(index as usize).copied())
            .unwrap_or(0)
    }

    pub fn root(&self, partition: u32) -> u64 {
        self.node(partition, 0, 0)
    }

    /// The hashes of the children of node `index` at `level` (`fanout` of them; zeros for
    /// a partition never written or an index out of range).
    pub fn children(&self, partition: u32, level: u32, index: u32) -> Vec<u64> {
        let f = self.shape.fanout as usize;
        let start = index as usize * f;
        match self
            .part(partition)
            .and_then(|t| t.levels.get(level as usize + 1))
            .and_then(|l| l.get(start..start + f))
        {
            Some(c) => c.to_vec(),
            None => vec![0; f],
        }
    }

    /// The keys of one segment with their hashes, in the order of their hash bits.
    pub fn segment(&self, partition: u32, segment: u32) -> impl Iterator<Item = (&[u8], u64)> {
        // The segment's first bits: the partition's then the segment's, zeros below.
        let first = match self.bits + self.leaf_bits {
            0 => 0,
            total => (u64::from(partition) << self.leaf_bits | u64::from(segment)) << (64 - total),
        };
        self.part(partition).into_iter().flat_map(move |t| {
            t.keys
                .range(first..)
                .take_while(move |(bits, _)| self.place_bits(**bits) == (partition, segment))
                .flat_map(|(_, slot)| slot.iter().map(|(k, h)| (k.as_slice(), *h)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trees() -> Trees {
        Trees::new(DEFAULT_SHAPE, 16).unwrap()
    }

    /// The partition is the ring's: anti-entropy compares what placement puts together.
    #[test]
    fn a_keys_partition_is_the_rings() {
        let t = trees();
        let cfg = crate::ring::PartitionConfig {
            partitions: 16,
            n: 1,
        };
        let table =
            crate::ring::PartitionTable::new([troupe_protocol::swim::NodeId::from("a")], cfg)
                .expect("a table");
        for i in 0..200 {
            let k = format!("k{i}");
            assert_eq!(t.place(k.as_bytes()).0, table.partition_of(k.as_bytes()));
        }
    }

    /// A key placed with its digest (a coordinated put's) lands where hashing it would.
    #[test]
    fn a_write_placed_with_its_digest_is_the_write_hashed_here() {
        let mut hashed = trees();
        let mut placed = trees();
        for i in 0..500u64 {
            let k = format!("k{i}");
            hashed.set(k.as_bytes(), Some(i));
            let digest = blake3::hash(k.as_bytes());
            placed.set_placed(k.as_bytes(), Some(&digest), Some(i));
        }
        placed.set_placed(b"k3", None, None);
        hashed.set(b"k3", None);
        for p in 0..16 {
            assert_eq!(hashed.root(p), placed.root(p), "partition {p}");
            for s in 0..1024 {
                let a: Vec<_> = hashed.segment(p, s).collect();
                assert_eq!(a, placed.segment(p, s).collect::<Vec<_>>(), "{p} {s}");
            }
        }
    }

    /// Every node is the XOR of its keys' leaves whatever the order of writes, and an
    /// overwrite or removal leaves no trace of the old hash.
    #[test]
    fn trees_depend_on_the_pairs_not_the_history() {
        let mut a = trees();
        let mut b = trees();
        for i in 0..500u64 {
            a.set(format!("k{i}").as_bytes(), Some(i));
        }
        for i in (0..600u64).rev() {
            b.set(format!("k{i}").as_bytes(), Some(i + 1000)); // old hashes, overwritten
            b.set(format!("k{i}").as_bytes(), Some(i));
        }
        for i in 500..600u64 {
            b.set(format!("k{i}").as_bytes(), None);
        }
        assert_eq!(a.len(), 500);
        assert_eq!(b.len(), 500);
        for p in 0..16 {
            assert_eq!(a.root(p), b.root(p), "partition {p}");
            assert_eq!(a.children(p, 0, 0), b.children(p, 0, 0));
            // Every segment lists the same keys in the same order (their hash bits'),
            // though `b` wrote them in the reverse order and more.
            for s in 0..1024 {
                let listed: Vec<_> = a.segment(p, s).collect();
                assert_eq!(listed, b.segment(p, s).collect::<Vec<_>>(), "{p} {s}");
                let bits: Vec<u64> = listed.iter().map(|(k, _)| key_hash(k).0).collect();
                assert!(bits.is_sorted(), "partition {p} segment {s}");
            }
        }
        let (p, s) = a.place(b"k7");
        assert!(a.segment(p, s).any(|(k, h)| k == b"k7" && h == 7));
        let xor = a.segment(p, s).fold(0, |x, (k, h)| x ^ leaf(k, h));
        assert_eq!(a.node(p, 2, s), xor);
    }

    /// Two keys whose hash bits are equal share a slot and stay apart: each has its own
    /// hash, leaves the other in place when removed, and both are listed in their segment.
    #[test]
    fn keys_with_equal_bits_are_kept_apart() {
        let mut t = trees();
        let bits = key_hash(b"a").0;
        let (p, s) = t.place_bits(bits);
        t.set_at(b"a", (bits, 1), Some(10));
        t.set_at(b"b", (bits, 2), Some(20));
        assert_eq!(
            (t.get_at(b"a", bits), t.get_at(b"b", bits)),
            (Some(10), Some(20))
        );
        assert_eq!((t.len(), t.keys_in(p)), (2, 2));
        assert_eq!(t.node(p, 2, s), leaf_of(1, 10) ^ leaf_of(2, 20));
        let mut listed: Vec<_> = t.segment(p, s).collect();
        listed.sort();
        assert_eq!(listed, vec![(&b"a"[..], 10), (&b"b"[..], 20)]);

        t.set_at(b"b", (bits, 2), Some(21));
        t.set_at(b"a", (bits, 1), None);
        t.set_at(b"c", (bits, 3), None);
        assert_eq!(
            (t.get_at(b"a", bits), t.get_at(b"b", bits)),
            (None, Some(21))
        );
        assert_eq!((t.len(), t.keys_in(p)), (1, 1));
        assert_eq!(t.node(p, 2, s), leaf_of(2, 21));
        t.set_at(b"b", (bits, 2), None);
        assert_eq!((t.len(), t.root(p), t.segment(p, s).count()), (0, 0, 0));
    }

    /// A key's leaf changes with every change of its hash, and two keys with one hash do
    /// not cancel.
    #[test]
    fn leaves_tell_hashes_and_keys_apart() {
        let leaves: std::collections::HashSet<u64> = (0..10_000u64)
            .flat_map(|h| [leaf(b"x", h), leaf(b"y", h)])
            .collect();
        assert_eq!(leaves.len(), 20_000);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Trees::new(
            TreeShape {
                fanout: 3,
                depth: 2
            },
            16
        )
        .is_err());
        assert!(Trees::new(
            TreeShape {
                fanout: 256,
                depth: 6
            },
            16
        )
        .is_err());
    }
}
