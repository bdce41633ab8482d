//! The next table from the previous one: a rebalance that moves only what a change of the
//! member set requires. Pure; used by the layout nodes agree on (`layout.rs`).
//!
//! # Rule (`PartitionTable::next`)
//! 1. Keep every primary of the previous table that is still a member.
//! 2. Quotas: `floor(Q*n / s)` each, and the `Q*n mod s` members holding the most now
//!    (ties: the one absent from more partitions left short by step 1, then the higher
//!    placement key) one more. Giving the extra replicas to the members that
//!    already hold them is what keeps a change minimal.
//! 3. A partition with more primaries than `n` (N or the member count went down) drops the
//!    one most over its quota, then the lowest-scoring.
//! 4. Members over quota release their lowest-scoring partitions, one open slot per
//!    partition while members with room that the partition lacks remain to fill it (so a
//!    single newcomer can take every released slot without a chain of displacements).
//! 5. Open slots are filled by the members with room, best score first; a slot left open
//!    (its candidates already in the partition) is filled by the table's swap repair
//!    (`fill_one`), which costs one extra move.
//!
//! # What it guarantees (tests in `rebalance_tests.rs`)
//! - Balance: every member holds `floor` or `ceil` of `Q*n/s`, as a fresh table does.
//! - A join moves exactly the newcomer's quota, a leave exactly the leaver's replicas (barring
//!   the rare swap repair), against 2-7x for a fresh table at 32-256 members.
//! - Determinism: the same previous table, members and config give the same table.

use super::table::{fill_one, member_key, rank, score, Room};
use super::{PartitionConfig, PartitionTable, RingError};
use troupe_protocol::swim::NodeId;

/// Per-member quotas fixed up front.
struct Fixed(Vec<usize>);

impl Room for Fixed {
    fn has_room(&self, m: u32, count: usize) -> bool {
        count < self.0[m as usize]
    }

    fn take(&mut self, _m: u32, count: &mut usize) {
        *count += 1;
    }
}

impl PartitionTable {
    /// The table for `members` (any order, duplicates ignored) that moves as few replicas
    /// from this one as balance allows (see the module docs). With a different partition
    /// count nothing can be kept, and the result is [`PartitionTable::new`]'s.
    ///
    /// Errors: as [`PartitionTable::new`].
    pub fn next<I>(&self, members: I, cfg: PartitionConfig) -> Result<PartitionTable, RingError>
    where
        I: IntoIterator,
        I::Item: Into<NodeId>,
    {
        cfg.validate()?;
        let mut members: Vec<NodeId> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        if cfg.partitions != self.partitions() {
            return PartitionTable::new(members, cfg);
        }
        let q = cfg.partitions as usize;
        let s = members.len();
        let n_eff = cfg.n.min(s);
        let ranked = rank(&members, q);
        let keys: Vec<u64> = members.iter().map(member_key).collect();
        let sc = |m: u32, p: usize| score(keys[m as usize], p as u32);

        // Step 1: the surviving primaries, in new indices.
        let mut held: Vec<Vec<u32>> = (0..q as u32)
            .map(|p| {
                self.primaries(p)
                    .iter()
                    .filter_map(|id| members.binary_search(id).ok().map(|i| i as u32))
                    .collect()
            })
            .collect();
        let mut count = vec![0usize; s];
        for m in held.iter().flatten() {
            count[*m as usize] += 1;
        }

        // Step 2: quotas, the extra ones to the members holding most; between equals, to
        // those that can enter more of the partitions already short (a departed member's).
        let total = q * n_eff;
        let mut quota = vec![total / s; s];
        let mut can_enter = vec![0usize; s];
        for slot in held.iter().filter(|h| h.len() < n_eff) {
            for (m, c) in can_enter.iter_mut().enumerate() {
                *c += usize::from(!slot.contains(&(m as u32)));
            }
        }
        let mut by_holding: Vec<u32> = (0..s as u32).collect();
        by_holding.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            count[b]
                .cmp(&count[a])
                .then(can_enter[b].cmp(&can_enter[a]))
                .then(keys[b].cmp(&keys[a]))
                .then(a.cmp(&b))
        });
        for &m in by_holding.iter().take(total % s) {
            quota[m as usize] += 1;
        }

        // Step 3: partitions with too many primaries drop, one at a time, a primary of the
        // member most over its quota (ties: its lowest-scoring such partition).
        let mut over_in: Vec<Vec<(u64, usize)>> = vec![Vec::new(); s];
        for (p, slot) in held.iter().enumerate() {
            if slot.len() > n_eff {
                for &m in slot {
                    over_in[m as usize].push((sc(m, p), p));
                }
            }
        }
        for list in &mut over_in {
            list.sort_unstable_by(|a, b| b.cmp(a)); // worst score last, for `pop`
        }
        loop {
            for list in over_in.iter_mut() {
                while list.last().is_some_and(|&(_, p)| held[p].len() <= n_eff) {
                    list.pop();
                }
            }
            let excess = |m: usize| count[m] as i64 - quota[m] as i64;
            let Some(m) = (0..s)
                .filter(|&m| !over_in[m].is_empty())
                .max_by(|&a, &b| excess(a).cmp(&excess(b)).then(b.cmp(&a)))
            else {
                break;
            };
            let (_, p) = over_in[m].pop().expect("filtered on non-empty");
            release(&mut held[p], m as u32, &mut count);
        }

        // Step 4: members over quota release their worst partitions, at most as many open
        // slots per partition as there are members with room that it lacks.
        let takers: Vec<u32> = (0..s as u32)
            .filter(|&m| count[m as usize] < quota[m as usize])
            .collect();
        let mut open: Vec<usize> = held.iter().map(|h| n_eff - h.len()).collect();
        let cap = |held: &[u32]| takers.iter().filter(|t| !held.contains(t)).count();
        let mut releases: Vec<(u64, u32, u32)> = Vec::new();
        for (p, slot) in held.iter().enumerate() {
            for &m in slot {
                if count[m as usize] > quota[m as usize] {
                    releases.push((sc(m, p), m, p as u32));
                }
            }
        }
        releases.sort_unstable();
        let mut deferred = Vec::new();
        for (sc_mp, m, p) in releases {
            let p = p as usize;
            if count[m as usize] <= quota[m as usize] {
                continue;
            }
            if open[p] < cap(&held[p]) {
                release(&mut held[p], m, &mut count);
                open[p] += 1;
            } else {
                deferred.push((sc_mp, m, p));
            }
        }
        // What the per-partition cap refused still has to go: the swap repair fills it.
        for (_, m, p) in deferred {
            if count[m as usize] > quota[m as usize] {
                release(&mut held[p], m, &mut count);
            }
        }

        // Step 5: fill the open slots, best score first; then augmenting paths (a slot no
        // taker can enter directly is given to one that hands a slot it gained to another);
        // then the table's swap repair for anything left.
        let mut fill = Fill {
            held,
            count,
            quota,
            gained: vec![Vec::new(); s],
        };
        let mut pairs: Vec<(u64, u32, u32)> = Vec::new();
        for (p, slot) in fill.held.iter().enumerate() {
            if slot.len() < n_eff {
                for &m in &takers {
                    if !slot.contains(&m) {
                        pairs.push((sc(m, p), m, p as u32));
                    }
                }
            }
        }
        pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for &(_, m, p) in &pairs {
            let p = p as usize;
            let mu = m as usize;
            if fill.held[p].len() < n_eff
                && fill.count[mu] < fill.quota[mu]
                && !fill.held[p].contains(&m)
            {
                fill.give(p, None, m);
            }
        }
        let mut by_score: Vec<Vec<u32>> = vec![Vec::new(); q];
        for &(_, m, p) in &pairs {
            by_score[p as usize].push(m);
        }
        for p in 0..q {
            while fill.held[p].len() < n_eff {
                let mut visited = vec![false; s];
                if !fill.augment(p, None, &by_score, &mut visited) {
                    break;
                }
            }
        }
        let Fill {
            mut held,
            mut count,
            quota,
            ..
        } = fill;
        let mut room = Fixed(quota);
        for p in 0..q {
            while held[p].len() < n_eff {
                fill_one(p, &mut held, &mut count, &mut room, &ranked, s);
            }
        }
        let flat: Vec<u32> = held.into_iter().flatten().collect();
        PartitionTable::from_held(members, cfg, &flat)
    }
}

/// Step 5's state: `gained` lists, per member, the partitions it took in this step (the
/// slots an augmenting path may hand on).
struct Fill {
    held: Vec<Vec<u32>>,
    count: Vec<usize>,
    quota: Vec<usize>,
    gained: Vec<Vec<usize>>,
}

impl Fill {
    /// Gives `m` the slot of partition `p` now held by `old` (`None`: an open slot).
    fn give(&mut self, p: usize, old: Option<u32>, m: u32) {
        match old {
            Some(o) => {
                let i = self.held[p]
                    .iter()
                    .position(|&x| x == o)
                    .expect("old holds a slot of p");
                self.held[p][i] = m;
                self.count[o as usize] -= 1;
                self.gained[o as usize].retain(|&x| x != p);
            }
            None => self.held[p].push(m),
        }
        self.count[m as usize] += 1;
        self.gained[m as usize].push(p);
    }

    /// Finds a taker for the slot of `p` held by `old` (Kuhn's augmenting path): one with
    /// room takes it, or one without room takes it and hands on a slot it gained, found
    /// the same way. `cands[p]` are the takers not in `p` at the start, best score first.
    fn augment(
        &mut self,
        p: usize,
        old: Option<u32>,
        cands: &[Vec<u32>],
        visited: &mut [bool],
    ) -> bool {
        for &m in &cands[p] {
            let mu = m as usize;
            if visited[mu] || self.held[p].contains(&m) {
                continue;
            }
            visited[mu] = true;
            if self.count[mu] < self.quota[mu] {
                self.give(p, old, m);
                return true;
            }
            for p2 in self.gained[mu].clone() {
                if p2 != p && self.augment(p2, Some(m), cands, visited) {
                    self.give(p, old, m);
                    return true;
                }
            }
        }
        false
    }
}

fn release(slot: &mut Vec<u32>, m: u32, count: &mut [usize]) {
    let i = slot
        .iter()
        .position(|&x| x == m)
        .expect("a release names a primary of the partition");
    slot.swap_remove(i);
    count[m as usize] -= 1;
}
