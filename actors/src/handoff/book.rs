//! The transfer book: which layout's owners hold the data (the *stable* layout), which
//! layout the cluster is moving to (the *current* one), and what this node must fetch to
//! get there. Pure: no I/O, no clocks; the Handoff actor (`mod.rs`) runs the fetches,
//! persists the book and gossips it.
//!
//! # Rules (after Garage's layout history and update trackers)
//! 1. The *stable* layout is one every member of which holds all the data it owns in it.
//!    While the current layout differs from it the ring is *in transition*:
//!    - writes go to the owners of both (the coordinator needs `w` acknowledgements among
//!      each layout's primaries), so nothing written meanwhile misses either;
//!    - reads go to the stable layout's primaries, which hold the data: a new owner's
//!      empty answer is never counted as "not found" (riak_cs#170).
//! 2. `acked[m] = L`: member `m` writes to the owners of `L` (as well as the stable ones).
//!    A node acks the current layout once every write it started under an older one has
//!    ended (the actor waits a request timeout).
//! 3. A node fetches the partitions it owns in the current layout and not in the stable
//!    one from their stable owners, only once every up member acked the current layout:
//!    a write started before that may have missed it, but not what it fetches afterwards.
//! 4. `synced[m] = L`: `m` holds all it owns in `L` (rule 3 done, or nothing to fetch).
//! 5. Once every member of the current layout synced it, it becomes the stable layout.
//!    A member that is down cannot sync: the transition waits for it (or its removal).
//! 6. Merge (gossip): trackers by the maximum per member; the stable layout by the newer
//!    of the two, never newer than this node's current one (that one comes by layout
//!    gossip first). A *provisional* stable layout (a fresh, empty node's own) gives way to
//!    any peer's that is not, and a node holding one neither acks nor fetches until a peer
//!    named the same stable layout or it took a peer's (else a newcomer that owns
//!    everything in its own layout would find nothing to fetch).
//! 7. Data a node held in the old stable layout and owns in neither the new stable nor the
//!    current one may be deleted after rule 5 (every new owner synced it, that is,
//!    acknowledged every key by joining it durably).
//!
//! # Invariants
//! - The stable layout only gets newer; `synced[m]` and `acked[m]` only grow.
//! - `transition()` is `Some` exactly while stable != current.

use crate::ring::Layout;
use std::collections::{BTreeMap, BTreeSet};
use troupe_protocol::swim::NodeId;
use troupe_protocol::transfer::LayoutId;

/// One partition this node must fetch, and from whom (its stable owners but this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub partition: u32,
    pub sources: Vec<NodeId>,
}

/// What a peer's state did to ours.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// Anything changed (gossip it on).
    pub changed: bool,
    /// The stable layout changed.
    pub stable: bool,
}

#[derive(Debug, Clone)]
pub struct TransferBook {
    me: NodeId,
    stable: Layout,
    current: Layout,
    acked: BTreeMap<NodeId, LayoutId>,
    synced: BTreeMap<NodeId, LayoutId>,
    provisional: bool,
    /// A provisional stable layout is *agreed* once a peer's state named the same one (or
    /// this node took a peer's): until then this node neither acks nor fetches (rule 6).
    agreed: bool,
}

impl TransferBook {
    /// `stable` as stored (or, with no file, the current layout: a node upgraded from a
    /// build without transfers held all it owned). `provisional`: a fresh node's own.
    pub fn new(me: NodeId, stable: Layout, current: Layout, provisional: bool) -> TransferBook {
        TransferBook {
            me,
            stable,
            current,
            acked: BTreeMap::new(),
            synced: BTreeMap::new(),
            provisional,
            agreed: !provisional,
        }
    }

    /// Whether this node may ack and fetch: its stable layout is not a fresh node's own
    /// guess that no peer has confirmed yet.
    pub fn may_proceed(&self) -> bool {
        !self.provisional || self.agreed
    }

    pub fn with_trackers(
        mut self,
        acked: BTreeMap<NodeId, LayoutId>,
        synced: BTreeMap<NodeId, LayoutId>,
    ) -> TransferBook {
        self.acked = acked;
        self.synced = synced;
        self
    }

    pub fn stable(&self) -> &Layout {
        &self.stable
    }

    pub fn current(&self) -> &Layout {
        &self.current
    }

    pub fn acked(&self) -> &BTreeMap<NodeId, LayoutId> {
        &self.acked
    }

    pub fn synced(&self) -> &BTreeMap<NodeId, LayoutId> {
        &self.synced
    }

    pub fn is_provisional(&self) -> bool {
        self.provisional
    }

    /// A fresh node found data of its own: its stable layout is real after all.
    pub fn confirm(&mut self) {
        self.provisional = false;
        self.agreed = true;
    }

    /// The stable layout while the ring is in transition (rule 1).
    pub fn transition(&self) -> Option<&Layout> {
        (self.stable != self.current).then_some(&self.stable)
    }

    /// The layout actor holds `current` now. True if it changed.
    pub fn on_layout(&mut self, current: Layout) -> bool {
        if current == self.current || !current.is_newer_than(&self.current) {
            return false;
        }
        self.current = current;
        true
    }

    /// Rule 2: this node writes to the current layout's owners. True if that is news.
    pub fn ack(&mut self) -> bool {
        bump(&mut self.acked, &self.me, self.current.id())
    }

    /// Whether this node acked the current layout.
    pub fn acked_current(&self) -> bool {
        self.acked.get(&self.me) == Some(&self.current.id())
    }

    /// Rule 3's condition: every member of the current layout acked exactly it. A member
    /// that is down cannot ack: the transition waits for it (as promotion does), because a
    /// member that restarts with an older layout may write by it until it acks.
    pub fn all_acked(&self) -> bool {
        let cur = self.current.id();
        self.current
            .table
            .members()
            .iter()
            .all(|m| self.acked.get(m) == Some(&cur))
    }

    /// Members of the current layout that have not acked it.
    pub fn unacked(&self) -> Vec<NodeId> {
        let cur = self.current.id();
        self.current
            .table
            .members()
            .iter()
            .filter(|m| self.acked.get(*m) != Some(&cur))
            .cloned()
            .collect()
    }

    /// Rule 3: the partitions to fetch (empty outside a transition).
    pub fn needs(&self) -> Vec<Need> {
        if self.transition().is_none() {
            return Vec::new();
        }
        let (cur, stable) = (&self.current.table, &self.stable.table);
        (0..cur.partitions())
            .filter(|p| cur.primaries(*p).contains(&self.me))
            .filter(|p| !stable.primaries(*p).contains(&self.me))
            .map(|p| Need {
                partition: p,
                sources: stable
                    .primaries(p)
                    .iter()
                    .filter(|s| **s != self.me)
                    .cloned()
                    .collect(),
            })
            .collect()
    }

    /// Rule 4: this node holds all it owns in the current layout. True if that is news.
    pub fn mark_synced(&mut self) -> bool {
        bump(&mut self.synced, &self.me, self.current.id())
    }

    pub fn synced_current(&self) -> bool {
        self.synced.get(&self.me) == Some(&self.current.id())
    }

    /// The members of the current layout that have not synced exactly it (a member synced
    /// to another layout, even a newer one, has not fetched what it owns in this one).
    pub fn unsynced(&self) -> Vec<NodeId> {
        let cur = self.current.id();
        self.current
            .table
            .members()
            .iter()
            .filter(|m| self.synced.get(*m) != Some(&cur))
            .cloned()
            .collect()
    }

    /// Rule 5: promote the current layout if every member synced it; the old stable
    /// layout when it did.
    pub fn promote(&mut self) -> Option<Layout> {
        if self.transition().is_none() || !self.unsynced().is_empty() {
            return None;
        }
        self.provisional = false;
        self.agreed = true;
        Some(std::mem::replace(&mut self.stable, self.current.clone()))
    }

    /// Rule 6: a peer's state. `stable` has been checked (`Layout::from_wire`).
    pub fn merge(
        &mut self,
        stable: Layout,
        provisional: bool,
        acked: &[(NodeId, LayoutId)],
        synced: &[(NodeId, LayoutId)],
    ) -> Merged {
        let mut m = Merged::default();
        for (id, l) in acked {
            m.changed |= bump(&mut self.acked, id, *l);
        }
        for (id, l) in synced {
            m.changed |= bump(&mut self.synced, id, *l);
        }
        let not_ahead = !stable.is_newer_than(&self.current);
        let take = stable != self.stable
            && not_ahead
            && if self.provisional != provisional {
                self.provisional
            } else {
                stable.is_newer_than(&self.stable)
            };
        if take {
            self.stable = stable;
            self.provisional = provisional;
            self.agreed = true;
            m.changed = true;
            m.stable = true;
        } else if stable == self.stable {
            m.changed |= !self.agreed;
            self.agreed = true;
        }
        m
    }

    /// Rule 7: the partitions this node held in `old` and owns in neither the stable nor
    /// the current layout now.
    pub fn dropped_since(&self, old: &Layout) -> Vec<u32> {
        (0..old.table.partitions())
            .filter(|p| old.table.primaries(*p).contains(&self.me))
            .filter(|p| !self.stable.table.primaries(*p).contains(&self.me))
            .filter(|p| !self.current.table.primaries(*p).contains(&self.me))
            .collect()
    }

    /// Whether this node owns nothing in either layout (a leaver that is done).
    pub fn owns_nothing(&self) -> bool {
        !self.stable.table.members().contains(&self.me)
            && !self.current.table.members().contains(&self.me)
    }
}

/// The transfer plan: each needed partition from one usable source (up, not `avoid`),
/// spreading partitions evenly over the sources (fewest assigned first, then the
/// partition's preference order); grouped by source, one fetch stream each. Partitions
/// with no usable source are returned apart (they wait).
pub fn assign(
    needs: &[Need],
    usable: impl Fn(&NodeId) -> bool,
    avoid: &BTreeSet<NodeId>,
) -> (Vec<(NodeId, Vec<u32>)>, Vec<u32>) {
    let mut by: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
    let mut stuck = Vec::new();
    for n in needs {
        let ok: Vec<&NodeId> = n.sources.iter().filter(|s| usable(s)).collect();
        let pick = ok
            .iter()
            .filter(|s| !avoid.contains(**s))
            .min_by_key(|s| by.get(**s).map_or(0, Vec::len))
            .or_else(|| ok.iter().min_by_key(|s| by.get(**s).map_or(0, Vec::len)));
        match pick {
            Some(s) => by.entry((*s).clone()).or_default().push(n.partition),
            None => stuck.push(n.partition),
        }
    }
    (by.into_iter().collect(), stuck)
}

fn bump(map: &mut BTreeMap<NodeId, LayoutId>, id: &NodeId, l: LayoutId) -> bool {
    match map.get(id) {
        Some(old) if *old >= l => false,
        _ => {
            map.insert(id.clone(), l);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::PartitionConfig;

    const CFG: PartitionConfig = PartitionConfig {
        partitions: 64,
        n: 3,
    };

    fn id(s: &str) -> NodeId {
        NodeId(s.into())
    }

    fn three() -> Layout {
        Layout::initial(["a", "b", "c"], CFG).unwrap()
    }

    fn four(from: &Layout) -> Layout {
        from.next(["a", "b", "c", "d"], CFG).unwrap()
    }

    /// Every node's book after a join of d to a, b, c.
    fn join_books() -> (Layout, Layout, Vec<TransferBook>) {
        let s = three();
        let c = four(&s);
        let books = ["a", "b", "c", "d"]
            .iter()
            .map(|m| {
                let mut b = TransferBook::new(id(m), s.clone(), s.clone(), false);
                b.on_layout(c.clone());
                b
            })
            .collect();
        (s, c, books)
    }

    /// Gossip until nothing changes: every pair merges both ways.
    fn gossip(books: &mut [TransferBook]) {
        loop {
            let mut changed = false;
            for i in 0..books.len() {
                for j in 0..books.len() {
                    if i != j {
                        let (st, pr) = (books[j].stable.clone(), books[j].provisional);
                        let acked: Vec<_> = books[j].acked.clone().into_iter().collect();
                        let synced: Vec<_> = books[j].synced.clone().into_iter().collect();
                        changed |= books[i].merge(st, pr, &acked, &synced).changed;
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    #[test]
    fn a_join_fetches_only_the_newcomers_share_from_stable_owners() {
        let (s, c, books) = join_books();
        for b in &books[..3] {
            assert!(b.needs().is_empty(), "{}: old owners fetch nothing", b.me);
        }
        let needs = books[3].needs();
        let owned = (0..64)
            .filter(|p| c.table.primaries(*p).contains(&id("d")))
            .count();
        assert_eq!(needs.len(), owned, "d fetches every partition it owns");
        for n in &needs {
            assert_eq!(n.sources, s.table.primaries(n.partition).to_vec());
        }
    }

    #[test]
    fn fetching_waits_for_every_member_to_ack() {
        let (_, _, mut books) = join_books();
        books[3].ack();
        books[0].ack();
        gossip(&mut books);
        assert!(!books[3].all_acked(), "b and c have not acked");
        assert_eq!(books[3].unacked(), vec![id("b"), id("c")]);
        books[1].ack();
        books[2].ack();
        gossip(&mut books);
        assert!(books.iter().all(|b| b.all_acked()));
    }

    #[test]
    fn the_current_layout_is_promoted_once_every_member_synced_it() {
        let (s, c, mut books) = join_books();
        for b in &mut books[..3] {
            b.mark_synced(); // nothing to fetch
        }
        gossip(&mut books);
        assert!(
            books.iter_mut().all(|b| b.promote().is_none()),
            "d has not synced"
        );
        assert_eq!(books[0].unsynced(), vec![id("d")]);
        books[3].mark_synced();
        gossip(&mut books);
        for b in &mut books {
            assert_eq!(b.promote(), Some(s.clone()));
            assert_eq!(b.stable(), &c);
            assert!(b.transition().is_none() && b.needs().is_empty());
        }
    }

    #[test]
    fn old_owners_drop_only_what_they_own_nowhere() {
        let (s, c, mut books) = join_books();
        for b in &mut books {
            b.mark_synced();
        }
        gossip(&mut books);
        let a = &mut books[0];
        a.promote();
        let dropped = a.dropped_since(&s);
        assert!(!dropped.is_empty(), "a gives some partitions to d");
        for p in dropped {
            assert!(s.table.primaries(p).contains(&id("a")));
            assert!(!c.table.primaries(p).contains(&id("a")));
        }
    }

    #[test]
    fn a_provisional_stable_layout_gives_way_and_a_stable_layout_never_runs_ahead() {
        let s = three();
        let c = four(&s);
        let fresh = Layout::initial(["d"], CFG).unwrap();
        let mut d = TransferBook::new(id("d"), fresh.clone(), fresh.clone(), true);
        // The cluster's stable layout is newer than d's current one: not taken yet.
        assert!(!d.merge(c.clone(), false, &[], &[]).stable);
        d.on_layout(c.clone());
        assert!(d.merge(s.clone(), false, &[], &[]).stable);
        assert_eq!(d.stable(), &s);
        assert!(!d.is_provisional());
        // A provisional layout never replaces a real one, however new.
        let mut a = TransferBook::new(id("a"), s.clone(), c.clone(), false);
        assert!(!a.merge(c.clone(), true, &[], &[]).stable);
        assert_eq!(a.stable(), &s);
    }

    #[test]
    fn the_plan_spreads_partitions_over_up_sources_and_avoids_stalled_ones() {
        let (_, _, books) = join_books();
        let needs = books[3].needs();
        let (plan, stuck) = assign(&needs, |_| true, &BTreeSet::new());
        assert!(stuck.is_empty());
        assert_eq!(plan.len(), 3, "every old member gives a share");
        let sizes: Vec<usize> = plan.iter().map(|(_, p)| p.len()).collect();
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "balanced: {sizes:?}");
        let total: usize = sizes.iter().sum();
        assert_eq!(total, needs.len(), "each partition once");
        // a is down and b stalled: everything from c (b only where c cannot serve).
        let avoid = BTreeSet::from([id("b")]);
        let (plan, stuck) = assign(&needs, |s| *s != id("a"), &avoid);
        assert!(stuck.is_empty());
        for (src, parts) in &plan {
            for p in parts {
                let n = needs.iter().find(|n| n.partition == *p).unwrap();
                assert!(*src == id("c") || !n.sources.contains(&id("c")));
            }
        }
        // Nobody up: every partition waits.
        let (plan, stuck) = assign(&needs, |_| false, &avoid);
        assert!(plan.is_empty() && stuck.len() == needs.len());
    }

    #[test]
    fn a_member_synced_to_another_layout_has_not_synced_this_one() {
        let (_, c, mut books) = join_books();
        let newer = c.next(["a", "b", "c", "d", "e"], CFG).unwrap();
        for b in &mut books[..3] {
            b.mark_synced();
        }
        // d synced a newer layout (it saw a second join first): not this one.
        books[3].on_layout(newer.clone());
        books[3].mark_synced();
        gossip(&mut books);
        assert_eq!(books[0].unsynced(), vec![id("d")]);
        assert!(books[0].promote().is_none());
    }

    #[test]
    fn a_fresh_node_waits_until_its_stable_layout_is_agreed() {
        let fresh = Layout::initial(["d"], CFG).unwrap();
        let mut d = TransferBook::new(id("d"), fresh.clone(), fresh.clone(), true);
        assert!(!d.may_proceed());
        // A peer names the same (provisional) stable layout: agreed.
        let mut twin = d.clone();
        twin.merge(fresh.clone(), true, &[], &[]);
        assert!(twin.may_proceed());
        // Or it takes a cluster's.
        let s = three();
        d.on_layout(four(&s));
        d.merge(s, false, &[], &[]);
        assert!(d.may_proceed() && !d.is_provisional());
    }

    #[test]
    fn trackers_only_grow() {
        let (s, c, mut books) = join_books();
        let a = &mut books[0];
        a.ack();
        assert!(!a.merge(s.clone(), false, &[(id("a"), s.id())], &[]).changed);
        assert_eq!(a.acked()[&id("a")], c.id());
    }
}
