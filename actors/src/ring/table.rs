//! The partition table: the pure function from (ring members, Q, N) to every partition's
//! preference list. See the module docs in `mod.rs` for the placement rule and its figures.

use super::{partition_for, PartitionConfig, RingError};
use std::collections::BTreeMap;
use std::fmt;
use troupe_protocol::swim::NodeId;

/// Domain separation for a member's placement key (part of the placement contract).
const MEMBER_KEY_CONTEXT: &[u8] = b"troupe ring member v1\0";
/// Domain separation for the table digest.
const DIGEST_CONTEXT: &[u8] = b"troupe ring table v1\0";

/// Every partition's preference list, computed from the ring members alone.
///
/// Invariants (checked by the tests in `tests.rs` and `measure_tests.rs`):
/// - a pure function of (member set, `partitions`, `n`): the same members in any order, with
///   duplicates, give the same table and the same [`digest`](Self::digest);
/// - every partition has `effective_n()` distinct primaries and the other members as
///   fallbacks, so each preference list holds every member exactly once;
/// - each member is a primary of `floor` or `ceil` of `partitions * effective_n / members`
///   partitions (balanced), barring the rare repair described in `place`.
#[derive(Clone)]
pub struct PartitionTable {
    partitions: u32,
    /// `log2(partitions)`: a key's partition is the top `bits` bits of its hash.
    bits: u32,
    n: usize,
    n_eff: usize,
    /// Sorted, deduplicated ring members; indices below refer to this list.
    members: Vec<NodeId>,
    /// `partitions * n_eff` entries, partition-major: each partition's primaries in
    /// descending placement score (the first is the partition's preferred coordinator).
    primaries: Vec<NodeId>,
    /// `partitions * (members - n_eff)` member indices, partition-major: each partition's
    /// fallbacks in descending placement score. Indices, not names: at 1,000 members this is
    /// 256,000 entries, and a `NodeId` per entry would be an allocation each.
    fallbacks: Vec<u32>,
    /// Primaries held per member (same indices as `members`).
    counts: Vec<usize>,
    digest: [u8; 32],
}

impl PartitionTable {
    /// Computes the table for `members` (any order; duplicates are ignored).
    ///
    /// Errors: `cfg` invalid ([`RingError::PartitionsNotPowerOfTwo`],
    /// [`RingError::ZeroReplicas`]) or no members ([`RingError::NoMembers`]).
    pub fn new<I>(members: I, cfg: PartitionConfig) -> Result<Self, RingError>
    where
        I: IntoIterator,
        I::Item: Into<NodeId>,
    {
        let bits = cfg.validate()?;
        let mut members: Vec<NodeId> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        let q = cfg.partitions as usize;
        let n_eff = cfg.n.min(members.len());
        let placement = place(&members, q, n_eff);
        Ok(Self::assemble(
            members,
            cfg,
            bits,
            &placement.held,
            &placement.ranked,
        ))
    }

    /// The table whose partitions have the primaries `held` (`partitions * min(n, members)`
    /// indices into `members`, partition-major, any order within a partition): the
    /// constructor for a layout computed elsewhere (a rebalance, or one received from a peer).
    /// Primaries and fallbacks are ordered by placement score, as in [`new`](Self::new).
    ///
    /// Errors: `cfg` invalid, no members, members not sorted and distinct, or `held` of the
    /// wrong length, with an index out of range or a member twice in one partition
    /// ([`RingError::BadLayout`]).
    pub fn from_held(
        members: Vec<NodeId>,
        cfg: PartitionConfig,
        held: &[u32],
    ) -> Result<Self, RingError> {
        let bits = cfg.validate()?;
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        if members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RingError::BadLayout(
                "members not sorted and distinct".into(),
            ));
        }
        let (q, s) = (cfg.partitions as usize, members.len());
        let n_eff = cfg.n.min(s);
        if held.len() != q * n_eff {
            return Err(RingError::BadLayout(format!(
                "{} primaries for {q} partitions of {n_eff}",
                held.len()
            )));
        }
        for (p, slots) in held.chunks(n_eff.max(1)).enumerate() {
            for (i, &m) in slots.iter().enumerate() {
                if m as usize >= s {
                    return Err(RingError::BadLayout(format!(
                        "partition {p}: member index {m} of {s}"
                    )));
                }
                if slots[..i].contains(&m) {
                    return Err(RingError::BadLayout(format!(
                        "partition {p}: member {} twice",
                        members[m as usize]
                    )));
                }
            }
        }
        let ranked = rank(&members, q);
        Ok(Self::assemble(members, cfg, bits, held, &ranked))
    }

    /// Builds the table from each partition's primaries (`held`, any order) and its
    /// members by descending score (`ranked`, `q * s`).
    fn assemble(
        members: Vec<NodeId>,
        cfg: PartitionConfig,
        bits: u32,
        held: &[u32],
        ranked: &[u32],
    ) -> Self {
        let (q, s) = (cfg.partitions as usize, members.len());
        let n_eff = cfg.n.min(s);
        let mut primaries = Vec::with_capacity(q * n_eff);
        let mut fallbacks = Vec::with_capacity(q * (s - n_eff));
        let mut counts = vec![0usize; s];
        for p in 0..q {
            let held = &held[p * n_eff..(p + 1) * n_eff];
            // `ranked` is the partition's members by descending score; primaries keep that
            // order, so do the fallbacks.
            for &m in &ranked[p * s..(p + 1) * s] {
                if held.contains(&m) {
                    primaries.push(members[m as usize].clone());
                    counts[m as usize] += 1;
                } else {
                    fallbacks.push(m);
                }
            }
        }
        let mut table = PartitionTable {
            partitions: cfg.partitions,
            bits,
            n: cfg.n,
            n_eff,
            members,
            primaries,
            fallbacks,
            counts,
            digest: [0; 32],
        };
        table.digest = table.compute_digest();
        table
    }

    /// Each partition's primaries as indices into [`members`](Self::members), partition-major
    /// (the `held` of [`from_held`](Self::from_held)).
    pub fn held(&self) -> Vec<u32> {
        let index = self.index();
        self.primaries.iter().map(|m| index[m]).collect()
    }

    /// Member -> its index in [`members`](Self::members).
    fn index(&self) -> BTreeMap<&NodeId, u32> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| (m, i as u32))
            .collect()
    }

    /// The configuration the table was computed for.
    pub fn config(&self) -> PartitionConfig {
        PartitionConfig {
            partitions: self.partitions,
            n: self.n,
        }
    }

    /// The configured number of partitions (Q).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The configured replication factor (`cluster.n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Replicas each partition actually has: `min(n, members)`.
    pub fn effective_n(&self) -> usize {
        self.n_eff
    }

    /// True when there are fewer ring members than `cluster.n`: every partition has fewer
    /// replicas than configured (one node alone keeps working, with one copy).
    pub fn under_replicated(&self) -> bool {
        self.n_eff < self.n
    }

    /// The ring members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The partition of `key`: see [`partition_for`].
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_for(key, self.bits)
    }

    /// [`PartitionTable::partition_of`], and the key's `blake3` hash when it took one (not
    /// with a single partition): the tables' bloom filters probe with the same hash, so a
    /// write that carries it to storage hashes its key once.
    pub fn locate(&self, key: &[u8]) -> (u32, Option<blake3::Hash>) {
        if self.bits == 0 {
            return (0, None);
        }
        let digest = blake3::hash(key);
        (super::partition_of_digest(&digest, self.bits), Some(digest))
    }

    /// The partition's primaries, preferred coordinator first. Empty if `partition` is out of
    /// range (`>= partitions()`).
    pub fn primaries(&self, partition: u32) -> &[NodeId] {
        let (p, k) = (partition as usize, self.n_eff);
        self.primaries.get(p * k..(p + 1) * k).unwrap_or(&[])
    }

    /// The partition's fallbacks (every member that is not a primary), in the order a write
    /// for a down primary should try them. Empty if `partition` is out of range.
    pub fn fallbacks(&self, partition: u32) -> impl ExactSizeIterator<Item = &NodeId> + '_ {
        let (p, k) = (partition as usize, self.members.len() - self.n_eff);
        self.fallbacks
            .get(p * k..(p + 1) * k)
            .unwrap_or(&[])
            .iter()
            .map(|&m| &self.members[m as usize])
    }

    /// The whole preference list: primaries, then fallbacks (every member once).
    pub fn preference_list(&self, partition: u32) -> impl Iterator<Item = &NodeId> + '_ {
        self.primaries(partition)
            .iter()
            .chain(self.fallbacks(partition))
    }

    /// True if `node` is one of the partition's primaries.
    pub fn is_primary(&self, partition: u32, node: &NodeId) -> bool {
        self.primaries(partition).contains(node)
    }

    /// How many partitions each member is a primary of (every member listed, zeros too).
    pub fn shares(&self) -> BTreeMap<NodeId, usize> {
        self.members
            .iter()
            .cloned()
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// Partition replicas (partition, primary) of `newer` that this table does not have:
    /// the replicas a change from this table to `newer` has to copy. Tables with different
    /// partition counts share nothing, so every replica of `newer` counts.
    pub fn replica_moves(&self, newer: &PartitionTable) -> usize {
        if self.partitions != newer.partitions {
            return newer.primaries.len();
        }
        (0..self.partitions)
            .map(|p| {
                let old = self.primaries(p);
                newer
                    .primaries(p)
                    .iter()
                    .filter(|m| !old.contains(m))
                    .count()
            })
            .sum()
    }

    /// blake3 of the encoded table (see `compute_digest`): equal digests mean equal tables.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// [`digest`](Self::digest) as lowercase hex, for `troupe admin ring`.
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encoding hashed (all integers u32 little-endian): the context string, Q, the
    /// configured N, the effective N, the member count, each member as length + UTF-8 bytes in
    /// sorted order, then per partition its preference list as member indices, primaries
    /// first. The configured N is included so that nodes configured with different `n` see
    /// different digests even while the ring is too small for it to matter.
    fn compute_digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(DIGEST_CONTEXT);
        let u32le = |x: usize| (x as u32).to_le_bytes();
        h.update(&self.partitions.to_le_bytes());
        h.update(&u32le(self.n));
        h.update(&u32le(self.n_eff));
        h.update(&u32le(self.members.len()));
        for m in &self.members {
            h.update(&u32le(m.0.len()));
            h.update(m.0.as_bytes());
        }
        let index = self.index();
        for p in 0..self.partitions {
            for m in self.primaries(p) {
                h.update(&index[m].to_le_bytes());
            }
            let k = self.members.len() - self.n_eff;
            let start = p as usize * k;
            for &m in &self.fallbacks[start..start + k] {
                h.update(&m.to_le_bytes());
            }
        }
        *h.finalize().as_bytes()
    }
}

impl fmt::Debug for PartitionTable {
    // The full table is up to Q x S entries; the digest identifies it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionTable")
            .field("partitions", &self.partitions)
            .field("n", &self.n)
            .field("effective_n", &self.n_eff)
            .field("members", &self.members.len())
            .field("digest", &self.digest_hex())
            .finish()
    }
}

impl PartialEq for PartitionTable {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for PartitionTable {}

/// A member's placement key: the first 8 bytes (little-endian) of
/// `blake3(MEMBER_KEY_CONTEXT || node id)`.
pub(super) fn member_key(id: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(MEMBER_KEY_CONTEXT);
    h.update(id.0.as_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8]
        .try_into()
        .expect("a blake3 hash has 32 bytes");
    u64::from_le_bytes(bytes)
}

/// The splitmix64 finaliser: a cheap bijective mix of 64 bits.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The placement score of (partition, member): `mix64(member_key ^ mix64(partition))`.
/// Higher is preferred. blake3 runs once per member; the per-pair mix is a few multiplies,
/// so 1,000 members x 256 partitions costs 256,000 mixes, not 256,000 hashes.
pub(super) fn score(member_key: u64, partition: u32) -> u64 {
    mix64(member_key ^ mix64(u64::from(partition)))
}

/// Each partition's members by descending score (ties: lower index first), `q * s` member
/// indices, partition-major.
pub(super) fn rank(members: &[NodeId], q: usize) -> Vec<u32> {
    let keys: Vec<u64> = members.iter().map(member_key).collect();
    let mut ranked = Vec::with_capacity(q * members.len());
    let mut row: Vec<(u64, u32)> = Vec::with_capacity(members.len());
    for p in 0..q as u32 {
        row.clear();
        row.extend(
            keys.iter()
                .enumerate()
                .map(|(m, &k)| (score(k, p), m as u32)),
        );
        row.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.extend(row.iter().map(|&(_, m)| m));
    }
    ranked
}

/// The placement result, in member indices.
struct Placement {
    /// `q * n_eff`: each partition's primaries (in no particular order).
    held: Vec<u32>,
    /// `q * s`: each partition's members by descending score (ties: lower index first).
    ranked: Vec<u32>,
}

/// Places `n_eff` distinct primaries per partition: see the module docs ("Placement").
fn place(members: &[NodeId], q: usize, n_eff: usize) -> Placement {
    let s = members.len();
    let keys: Vec<u64> = members.iter().map(member_key).collect();
    // Every (partition, member) pair, best score first. The tie-breaks make the order total,
    // so the table does not depend on the sort algorithm.
    let mut pairs: Vec<(u64, u32, u32)> = Vec::with_capacity(q * s);
    for (m, &k) in keys.iter().enumerate() {
        for p in 0..q as u32 {
            pairs.push((score(k, p), m as u32, p));
        }
    }
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    let mut ranked = vec![0u32; q * s];
    let mut ranked_len = vec![0usize; q];
    for &(_, m, p) in &pairs {
        let p = p as usize;
        ranked[p * s + ranked_len[p]] = m;
        ranked_len[p] += 1;
    }

    // Step 3: the quota-bounded greedy pass.
    let mut quota = Quota::new(q * n_eff, s);
    let mut held: Vec<Vec<u32>> = vec![Vec::with_capacity(n_eff); q];
    let mut count = vec![0usize; s];
    for &(_, m, p) in &pairs {
        let slot = &mut held[p as usize];
        if slot.len() < n_eff && quota.has_room(m, count[m as usize]) {
            slot.push(m);
            quota.take(m, &mut count[m as usize]);
        }
    }
    drop(pairs);
    // Step 4: fill what the pass left short.
    for p in 0..q {
        while held[p].len() < n_eff {
            fill_one(p, &mut held, &mut count, &mut quota, &ranked, s);
        }
    }
    Placement {
        held: held.into_iter().flatten().collect(),
        ranked,
    }
}

/// How many replicas a member may hold: `floor = Q*n / s` each, and `extra = Q*n mod s`
/// members (the first to ask, in score order) one more. So shares are exactly `floor` or
/// `floor + 1`, and the limit moves smoothly with `s`: a uniform cap of `ceil(Q*n/s)` would
/// jump by one for everybody whenever `Q*n/s` crosses an integer (256 -> 255 members at
/// Q=256, N=3) and reshuffle a third of the table.
struct Quota {
    floor: usize,
    extra_left: usize,
}

impl Quota {
    fn new(replicas: usize, members: usize) -> Self {
        Quota {
            floor: replicas / members,
            extra_left: replicas % members,
        }
    }
}

/// How many more replicas a member may take: [`Quota`] for a fresh table, fixed per-member
/// quotas for a rebalance (`rebalance.rs`).
pub(super) trait Room {
    /// Whether member `m`, holding `count` replicas, may take one more.
    fn has_room(&self, m: u32, count: usize) -> bool;
    /// Member `m` takes one (its count is `*count`).
    fn take(&mut self, m: u32, count: &mut usize);
}

impl Room for Quota {
    fn has_room(&self, _m: u32, count: usize) -> bool {
        count < self.floor || (count == self.floor && self.extra_left > 0)
    }

    fn take(&mut self, _m: u32, count: &mut usize) {
        if *count == self.floor {
            self.extra_left = self.extra_left.saturating_sub(1);
        }
        *count += 1;
    }
}

/// Adds one primary to partition `p`, which is short, keeping every count within quota.
///
/// The greedy pass can end with `p` short while every member with room is already in `p`
/// (total room always covers the shortfall: the quota sums to `Q*n`). Then some member `x`
/// without room and not in `p` moves from a partition `p2` to `p`, and a member `u` with
/// room that `p2` lacks takes its place in `p2`: `x` keeps its count, `u` gains one. Such a
/// pair exists: `count[x] > count[u]` (x is full, u is not), `u` is missing from
/// `Q - count[u]` partitions and `x` is in `count[x]` of them, so they share one. Candidates
/// are tried in the partitions' score order, so this is as deterministic as the pass.
/// Should that argument ever fail, the best-scoring member not in `p` is added beyond its
/// quota: the table stays valid (distinct primaries) and the balance tests would show it.
pub(super) fn fill_one<R: Room>(
    p: usize,
    held: &mut [Vec<u32>],
    count: &mut [usize],
    quota: &mut R,
    ranked: &[u32],
    s: usize,
) {
    let order = &ranked[p * s..(p + 1) * s];
    if let Some(&m) = order
        .iter()
        .find(|&&m| quota.has_room(m, count[m as usize]) && !held[p].contains(&m))
    {
        held[p].push(m);
        quota.take(m, &mut count[m as usize]);
        return;
    }
    let with_room: Vec<u32> = order
        .iter()
        .copied()
        .filter(|&m| quota.has_room(m, count[m as usize]))
        .collect();
    for &x in order.iter().filter(|&&x| !held[p].contains(&x)) {
        for p2 in (0..held.len()).filter(|&p2| p2 != p && held[p2].contains(&x)) {
            let Some(&u) = ranked[p2 * s..(p2 + 1) * s]
                .iter()
                .find(|&&u| with_room.contains(&u) && !held[p2].contains(&u))
            else {
                continue;
            };
            let slot = held[p2]
                .iter()
                .position(|&m| m == x)
                .expect("x was found in p2 just above");
            held[p2][slot] = u;
            quota.take(u, &mut count[u as usize]);
            held[p].push(x);
            return;
        }
    }
    if let Some(&m) = order.iter().find(|&&m| !held[p].contains(&m)) {
        held[p].push(m);
        count[m as usize] += 1;
    }
}
