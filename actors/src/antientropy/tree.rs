//! The tictac (XOR) trees of one node: per partition, a tree over (key, object hash) kept
//! current as writes land.
//!
//! A key's place: its partition is [`crate::ring::partition_for`] (the top bits of
//! blake3(key)); its segment the next `depth * log2(fanout)` bits of the same hash. Its
//! contribution to the segment is `leaf(key, hash)`, 64 bits of blake3(key, hash), and every
//! node of the tree holds the XOR of its children: order-free, so two replicas that hold the
//! same (key, object) pairs have the same trees however their writes arrived, and a change
//! of one key costs `depth + 1` XORs (no rehash of a whole segment).
//!
//! Invariants:
//! - `keys` holds each key's current hash and its leaf (kept, so an overwrite hashes only
//!   the new pair): an overwrite XORs the old contribution out before the new one goes in,
//!   so every node equals the XOR of the leaves of its keys.
//! - A partition's nodes are allocated on its first key; an emptied partition keeps them
//!   (all zero), which reads as empty.

use smallvec::SmallVec;
use std::collections::{btree_map, BTreeMap, HashMap};
use troupe_protocol::antientropy::TreeShape;
use troupe_protocol::object::Object;

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
/// THE one place that decides which objects anti-entropy compares: every write
/// notification, the start-up rebuild and an exchange's own joins go through it. (Tombstone
/// GC can exclude sealed tombstones here.)
pub fn tree_hash(object: &Object) -> Option<u64> {
    if object.is_empty() {
        return None;
    }
    Some(object.clock_hash())
}

/// 64 bits of blake3(key), big-endian: the partition and segment come from it.
fn key_bits(key: &[u8]) -> u64 {
    let h = blake3::hash(key);
    u64::from_be_bytes(h.as_bytes()[..8].try_into().expect("32-byte hash"))
}

/// A key's contribution to its segment: 64 bits of blake3(key || hash). The key is in it so
/// that two keys with equal objects do not cancel out.
pub fn leaf(key: &[u8], hash: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(key);
    h.update(&hash.to_be_bytes());
    u64::from_be_bytes(
        h.finalize().as_bytes()[..8]
            .try_into()
            .expect("32-byte hash"),
    )
}

/// A key as `keys` holds it: short keys inline (a lookup builds its slot without a heap
/// allocation, and a descent compares bytes in the node).
type Key = SmallVec<[u8; 24]>;

/// A key's hash and its leaf, `leaf(key, hash)`.
#[derive(Debug, Clone, Copy)]
struct Held {
    hash: u64,
    leaf: u64,
}

/// One partition's tree.
#[derive(Debug, Clone)]
struct PartitionTree {
    /// `levels[d]` holds `fanout^d` node hashes; `levels[depth]` are the segments.
    levels: Vec<Vec<u64>>,
    /// (segment, key) -> object hash: a segment's keys are one range.
    keys: BTreeMap<(u32, Key), Held>,
}

/// Every partition's tree on this node.
#[derive(Debug, Clone)]
pub struct Trees {
    shape: TreeShape,
    /// log2(Q): the partition bits of a key's hash.
    bits: u32,
    /// log2(segments per partition).
    leaf_bits: u32,
    parts: HashMap<u32, PartitionTree>,
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
            parts: HashMap::new(),
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
        self.parts.get(&partition).map_or(0, |t| t.keys.len())
    }

    /// (partition, segment) of a key. The partition is `crate::ring::partition_for` (the
    /// top bits of the same hash), taken from the one hash.
    pub fn place(&self, key: &[u8]) -> (u32, u32) {
        let bits = key_bits(key);
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
        let (p, s) = self.place(key);
        let held = self.parts.get(&p)?.keys.get(&(s, Key::from_slice(key)))?;
        Some(held.hash)
    }

    /// Sets the key's hash (`None`: the key is absent), adjusting every node above it.
    pub fn set(&mut self, key: &[u8], hash: Option<u64>) {
        let (p, s) = self.place(key);
        let shape = self.shape;
        let part = match (self.parts.get_mut(&p), hash) {
            (Some(t), _) => t,
            (None, None) => return,
            (None, Some(_)) => self.parts.entry(p).or_insert_with(|| PartitionTree {
                levels: (0..=shape.depth)
                    .map(|d| vec![0; shape.fanout.pow(d) as usize])
                    .collect(),
                keys: BTreeMap::new(),
            }),
        };
        let held = |h: u64| Held {
            hash: h,
            leaf: leaf(key, h),
        };
        let (old, new) = match (part.keys.entry((s, Key::from_slice(key))), hash) {
            (btree_map::Entry::Occupied(o), Some(h)) if o.get().hash == h => return,
            (btree_map::Entry::Occupied(mut o), Some(h)) => {
                let new = held(h);
                (Some(std::mem::replace(o.get_mut(), new)), Some(new))
            }
            (btree_map::Entry::Occupied(o), None) => (Some(o.remove()), None),
            (btree_map::Entry::Vacant(v), Some(h)) => (None, Some(*v.insert(held(h)))),
            (btree_map::Entry::Vacant(_), None) => return,
        };
        match (old, new) {
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len -= 1,
            _ => {}
        }
        let delta = old.map_or(0, |o| o.leaf) ^ new.map_or(0, |n| n.leaf);
        let mut idx = s as usize;
        for level in part.levels.iter_mut().rev() {
            level[idx] ^= delta;
            idx /= shape.fanout as usize;
        }
    }

    /// The hash of node `index` at `level` of `partition` (0 for a partition never written).
    pub fn node(&self, partition: u32, level: u32, index: u32) -> u64 {
        self.parts
            .get(&partition)
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
            .parts
            .get(&partition)
            .and_then(|t| t.levels.get(level as usize + 1))
            .and_then(|l| l.get(start..start + f))
        {
            Some(c) => c.to_vec(),
            None => vec![0; f],
        }
    }

    /// The keys of one segment with their hashes, in key order.
    pub fn segment(&self, partition: u32, segment: u32) -> impl Iterator<Item = (&[u8], u64)> {
        self.parts.get(&partition).into_iter().flat_map(move |t| {
            t.keys
                .range((segment, Key::new())..)
                .take_while(move |((s, _), _)| *s == segment)
                .map(|((_, k), h)| (k.as_slice(), h.hash))
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
        }
        let (p, s) = a.place(b"k7");
        assert!(a.segment(p, s).any(|(k, h)| k == b"k7" && h == 7));
        let xor = a.segment(p, s).fold(0, |x, (k, h)| x ^ leaf(k, h));
        assert_eq!(a.node(p, 2, s), xor);
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
