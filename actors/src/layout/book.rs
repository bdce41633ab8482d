//! The layout book: which layout this node holds and what to do about a change of the
//! members or a layout a peer sent. Pure: no I/O, no timers; the layout actor (`mod.rs`)
//! persists, publishes and sends what it decides.
//!
//! # Rules
//! 1. The members a layout should have: the current layout's members, plus every ring member
//!    membership knows, minus the members membership knows have *left*. A member this node
//!    has not heard of yet is kept: a node that just restarted, or has not gossiped with
//!    everyone, never removes a member out of ignorance (that would make two nodes undo each
//!    other's layouts until membership converged). A down member stays, as in the ring.
//! 2. When they differ from the current layout's members, or `cluster.n` changed, the node
//!    computes `next` of its current layout and holds that.
//! 3. A layout from a peer is taken if it is newer ([`Layout::is_newer_than`]) and has this
//!    node's `cluster.partitions` and `cluster.n`; then rule 2 runs on it, so what this node
//!    knows and the sender did not is added on top. A layout with another Q or N is refused
//!    and logged: a misconfigured node must not steer the cluster, nor be steered.
//! 4. Digests: a peer that announces an older layout is sent ours; one that announces a newer
//!    one is asked for it.
//! 5. A node whose layout holds only itself (a fresh node) does not compute a layout with
//!    other members from it: it takes a peer's layout first (rule 3, which then adds it).
//!    Versions count the changes of one history, and a fresh node's history is not the
//!    cluster's: a new node that saw three members join one by one would reach version 4
//!    and beat a cluster at version 3 with a table computed from its own, moving most of
//!    the data. Fresh nodes starting together still converge: each takes the newest of
//!    the one-member layouts it hears of, whose owner does not compute either, and adds
//!    itself to it; the owner then takes that.
//! 6. A node that held a layout with others and receives a newer one without itself was
//!    dropped by them (`admin leave`, or removed): it takes that layout and computes nothing
//!    more, so it never puts itself back (which they would undo, and so on). If it comes
//!    back, the others add it when membership says it is up again.
//!
//! 7. A member that this node's layout had and a newer layout from a peer does not is not put
//!    back by this node: the peer most likely knows it left while membership here has not
//!    heard yet, and putting it back would make the two undo each other until membership
//!    converged (a version per round). Once membership here says it left, a return is a new
//!    join and is added. If the peer had simply not heard of a new member yet (two joins at
//!    once), that peer adds it itself when its membership does.
//!
//! # Invariants
//! - The held layout only ever gets newer; every node that has heard of the same layouts
//!   holds the same one (the order is total).
//! - This node is a member of the layout it holds, unless the others dropped it (rule 6).

use crate::ring::{Layout, PartitionConfig};
use troupe_protocol::swim::NodeId;

/// What membership says about the ring (ids only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersView {
    /// Ring members: joined and not left (down ones too).
    pub members: Vec<NodeId>,
    /// Members known to have left.
    pub departed: Vec<NodeId>,
}

/// What a layout from a peer led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Taken; if this node knew more, the layout computed on top of it follows (hold both:
    /// the second is the one now held).
    Adopted { follow_up: Option<Layout> },
    /// Ours is newer: the sender should get ours.
    Older,
    /// The same layout.
    Same,
    /// Another `cluster.partitions` or `cluster.n`: refused, with the reason to log.
    Refused(String),
}

/// The answer to a peer's digest.
#[derive(Debug, PartialEq, Eq)]
pub enum DigestAnswer {
    /// Ours is newer: send it.
    SendOurs,
    /// Theirs is newer: ask for it.
    Pull,
    Same,
}

pub struct LayoutBook {
    me: NodeId,
    cfg: PartitionConfig,
    current: Layout,
    /// The others dropped this node (rule 6): it proposes nothing until a layout that
    /// includes it again arrives.
    dropped: bool,
    /// Members a newer layout from a peer no longer had (rule 7): not put back by this node
    /// until membership here says they left (after which a return is a new join), or a
    /// layout that has them arrives.
    removed: std::collections::BTreeSet<NodeId>,
}

impl LayoutBook {
    /// `current` is what the data directory held (or a fresh one-member layout).
    pub fn new(me: NodeId, cfg: PartitionConfig, current: Layout) -> LayoutBook {
        // A stored layout without this node: it left or was removed before a restart
        // (rule 6 holds across restarts).
        let dropped = !current.table.members().contains(&me);
        LayoutBook {
            me,
            cfg,
            current,
            dropped,
            removed: Default::default(),
        }
    }

    pub fn current(&self) -> &Layout {
        &self.current
    }

    /// Whether this node holds a layout of itself alone (a fresh node, or one that never
    /// heard of another): rule 5.
    pub fn is_standalone(&self) -> bool {
        self.current.table.members() == std::slice::from_ref(&self.me)
    }

    /// Rules 1 and 2: the layout to hold after membership said `view`, if it changes.
    pub fn on_view(&mut self, view: &MembersView) -> Option<Layout> {
        for m in &view.departed {
            self.removed.remove(m); // rule 7: caught up with the departure
        }
        if self.dropped || view.departed.contains(&self.me) {
            return None; // rule 6
        }
        let wanted = self.wanted(view);
        let table = &self.current.table;
        if wanted == table.members() && table.config() == self.cfg {
            return None;
        }
        if self.is_standalone() && wanted.len() > 1 {
            return None; // rule 5: take a peer's layout first
        }
        match self.current.next(wanted, self.cfg) {
            Ok(next) => {
                self.current = next.clone();
                Some(next)
            }
            Err(e) => {
                // Unreachable with a validated config and `me` always a member; holding
                // the old layout is the safe answer if it ever happens.
                log::error!("layout: cannot compute the next layout: {e}");
                None
            }
        }
    }

    /// `admin leave`: the layout after this one without this node, which then proposes
    /// nothing more (rule 6). `Err` when it cannot leave: it is the only member, or it
    /// already left.
    pub fn leave(&mut self) -> Result<Layout, String> {
        if self.dropped {
            return Err(format!(
                "{} is not a member of the ring layout (it already left or was removed)",
                self.me
            ));
        }
        let others: Vec<NodeId> = self
            .current
            .table
            .members()
            .iter()
            .filter(|m| **m != self.me)
            .cloned()
            .collect();
        if others.is_empty() {
            return Err(format!(
                "{} is the only member: there is nobody to hand its data to",
                self.me
            ));
        }
        let next = self
            .current
            .next(others, self.cfg)
            .map_err(|e| format!("cannot compute the layout without {}: {e}", self.me))?;
        self.current = next.clone();
        self.dropped = true;
        Ok(next)
    }

    /// Rule 3.
    pub fn on_received(&mut self, layout: Layout, view: &MembersView) -> Received {
        let theirs = layout.table.config();
        if theirs != self.cfg {
            return Received::Refused(format!(
                "layout version {} has cluster.partitions = {} and cluster.n = {}, this node {} and {}: check the nodes' configuration",
                layout.version, theirs.partitions, theirs.n, self.cfg.partitions, self.cfg.n
            ));
        }
        if self.current.is_newer_than(&layout) {
            return Received::Older;
        }
        if !layout.is_newer_than(&self.current) {
            return Received::Same;
        }
        // Rule 6: a member the others dropped (it left, or was removed) takes their layout
        // as it is; putting itself back would undo their change, and they undo that again.
        let removed = !self.is_standalone() && !layout.table.members().contains(&self.me);
        self.dropped = removed;
        // Rule 7.
        let theirs = layout.table.members();
        for m in self.current.table.members() {
            if !theirs.contains(m) && *m != self.me {
                self.removed.insert(m.clone());
            }
        }
        self.removed.retain(|m| !theirs.contains(m));
        self.current = layout;
        Received::Adopted {
            follow_up: if removed { None } else { self.on_view(view) },
        }
    }

    /// Rule 4.
    pub fn on_digest(&self, version: u64, digest: &[u8; 32]) -> DigestAnswer {
        if self.current.is_newer_than_id(version, digest) {
            DigestAnswer::SendOurs
        } else if (version, *digest) == (self.current.version, self.current.table.digest()) {
            DigestAnswer::Same
        } else {
            DigestAnswer::Pull
        }
    }

    /// Rule 1: sorted, distinct, with `me`.
    fn wanted(&self, view: &MembersView) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self
            .current
            .table
            .members()
            .iter()
            .chain(&view.members)
            .chain(std::iter::once(&self.me))
            .filter(|m| **m == self.me || !(view.departed.contains(m) || self.removed.contains(m)))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId(s.into())
    }

    fn view(members: &[&str], departed: &[&str]) -> MembersView {
        MembersView {
            members: members.iter().map(|s| id(s)).collect(),
            departed: departed.iter().map(|s| id(s)).collect(),
        }
    }

    fn cfg() -> PartitionConfig {
        PartitionConfig {
            partitions: 64,
            n: 3,
        }
    }

    fn book(me: &str) -> LayoutBook {
        LayoutBook::new(id(me), cfg(), Layout::initial([id(me)], cfg()).unwrap())
    }

    fn members(l: &Layout) -> Vec<&str> {
        l.table.members().iter().map(|m| m.as_str()).collect()
    }

    #[test]
    fn a_new_member_makes_the_next_layout_and_nothing_else_does() {
        let two = Layout::initial([id("a"), id("c")], cfg()).unwrap();
        let mut b = LayoutBook::new(id("a"), cfg(), two);
        let l = b.on_view(&view(&["a", "b", "c"], &[])).expect("b joined");
        assert_eq!((l.version, members(&l)), (2, vec!["a", "b", "c"]));
        assert_eq!(
            b.on_view(&view(&["a", "b", "c"], &[])),
            None,
            "no change, no layout"
        );
        // A member membership forgot (reaped, or not heard of yet) is kept.
        assert_eq!(b.on_view(&view(&["a"], &[])), None);
        // Only `left` removes one.
        let l = b.on_view(&view(&["a", "b"], &["c"])).expect("c left");
        assert_eq!((l.version, members(&l)), (3, vec!["a", "b"]));
        // This node never removes itself.
        assert_eq!(b.on_view(&view(&["a", "b"], &["a"])), None);
    }

    #[test]
    fn fresh_nodes_take_a_peers_layout_before_adding_anyone() {
        // A fresh node that saw a cluster's members one by one computes nothing.
        let mut x = book("x");
        assert_eq!(x.on_view(&view(&["a", "x"], &[])), None);
        assert_eq!(x.on_view(&view(&["a", "b", "c", "x"], &[])), None);
        assert!(x.is_standalone());
        // The cluster's layout (version 3) arrives: x takes it and adds itself on top,
        // exactly as the cluster's members compute it when they see x.
        let cluster = Layout::initial([id("a")], cfg())
            .unwrap()
            .next([id("a"), id("b")], cfg())
            .unwrap()
            .next([id("a"), id("b"), id("c")], cfg())
            .unwrap();
        let v = view(&["a", "b", "c", "x"], &[]);
        let Received::Adopted { follow_up } = x.on_received(cluster.clone(), &v) else {
            panic!("the cluster's layout is newer");
        };
        let mine = follow_up.expect("x adds itself");
        let theirs = cluster
            .next([id("a"), id("b"), id("c"), id("x")], cfg())
            .unwrap();
        assert_eq!(mine, theirs, "x and the cluster compute the same layout");
        assert_eq!(
            cluster.table.replica_moves(&mine.table),
            mine.table.shares()[&id("x")]
        );
    }

    #[test]
    fn fresh_nodes_starting_together_converge() {
        let v = view(&["a", "b", "c"], &[]);
        let mut books: Vec<LayoutBook> = ["a", "b", "c"].iter().map(|m| book(m)).collect();
        for b in &mut books {
            assert_eq!(b.on_view(&v), None, "nobody computes alone");
        }
        // Gossip: every node hears every other's layout until nothing changes.
        for _round in 0..4 {
            for i in 0..3 {
                for j in 0..3 {
                    let l = books[j].current().clone();
                    let _ = books[i].on_received(l, &v);
                }
            }
        }
        for b in &books {
            assert_eq!(b.current(), books[0].current());
            assert_eq!(members(b.current()), vec!["a", "b", "c"]);
        }
    }

    #[test]
    fn a_dropped_node_takes_the_layout_without_it_and_stays_out() {
        let base = Layout::initial([id("a"), id("b"), id("x")], cfg()).unwrap();
        let mut x = LayoutBook::new(id("x"), cfg(), base.clone());
        let without = base.next([id("a"), id("b")], cfg()).unwrap();
        // x's own view still lists itself (it has not heard that it left).
        let v = view(&["a", "b", "x"], &[]);
        assert_eq!(
            x.on_received(without.clone(), &v),
            Received::Adopted { follow_up: None }
        );
        assert_eq!(x.current(), &without);
        assert_eq!(x.on_view(&v), None, "it does not put itself back");
        // The others add it again when it comes back: x takes that.
        let back = without.next([id("a"), id("b"), id("x")], cfg()).unwrap();
        assert!(matches!(x.on_received(back, &v), Received::Adopted { .. }));
        assert_eq!(members(x.current()), vec!["a", "b", "x"]);
    }

    #[test]
    fn a_node_that_has_not_heard_of_a_leave_does_not_put_the_leaver_back() {
        let base = Layout::initial([id("a"), id("b"), id("x")], cfg()).unwrap();
        let mut b = LayoutBook::new(id("b"), cfg(), base.clone());
        // a saw x leave and dropped it; b's membership still lists x as a member.
        let without = base.next([id("a"), id("b")], cfg()).unwrap();
        let stale = view(&["a", "b", "x"], &[]);
        assert_eq!(
            b.on_received(without.clone(), &stale),
            Received::Adopted { follow_up: None },
            "b must not re-add x: a and b would undo each other until membership converged"
        );
        assert_eq!(b.on_view(&stale), None);
        // b hears of the leave, then x comes back (a new join): now b adds it.
        assert_eq!(b.on_view(&view(&["a", "b"], &["x"])), None);
        let l = b.on_view(&view(&["a", "b", "x"], &[])).expect("x rejoined");
        assert_eq!(members(&l), vec!["a", "b", "x"]);
    }

    #[test]
    fn a_lone_node_still_follows_a_change_of_n() {
        let one = PartitionConfig {
            partitions: 64,
            n: 1,
        };
        let mut b = LayoutBook::new(id("a"), one, Layout::initial([id("a")], cfg()).unwrap());
        let l = b.on_view(&view(&["a"], &[])).expect("n changed");
        assert_eq!((l.version, l.table.n()), (2, 1));
    }

    #[test]
    fn concurrent_changes_converge_on_one_layout_with_both() {
        // a and c both start from the same v1 {a, b, c}; a sees x join, c sees y.
        let base = Layout::initial([id("a"), id("b"), id("c")], cfg()).unwrap();
        let mut a = LayoutBook::new(id("a"), cfg(), base.clone());
        let mut c = LayoutBook::new(id("c"), cfg(), base);
        let va = view(&["a", "b", "c", "x"], &[]);
        let vc = view(&["a", "b", "c", "y"], &[]);
        let la = a.on_view(&va).unwrap();
        let lc = c.on_view(&vc).unwrap();
        assert_eq!(la.version, lc.version);
        // Each receives the other's: exactly one adopts (the other's is older by digest).
        // It does not put back the member the newer layout lacks (rule 7: it cannot tell
        // a join the other has not heard of from a leave it has not heard of); the other
        // side adds it when its membership hears of it, and everyone converges on both.
        let ra = a.on_received(lc.clone(), &va);
        let rc = c.on_received(la.clone(), &vc);
        let (winner, loser, lv) = match (ra, rc) {
            (Received::Adopted { follow_up: None }, Received::Older) => (&mut c, &mut a, va),
            (Received::Older, Received::Adopted { follow_up: None }) => (&mut a, &mut c, vc),
            other => panic!("expected one adoption with nothing added, got {other:?}"),
        };
        assert_eq!(loser.on_view(&lv), None, "rule 7");
        let both = view(&["a", "b", "c", "x", "y"], &[]);
        let follow = winner
            .on_view(&both)
            .expect("the winner hears of the other join");
        assert_eq!(
            loser.on_received(follow.clone(), &both),
            Received::Adopted { follow_up: None }
        );
        assert_eq!(follow.version, la.version + 1);
        assert_eq!(a.current(), c.current(), "both hold one layout");
        assert_eq!(members(a.current()), vec!["a", "b", "c", "x", "y"]);
    }

    #[test]
    fn digests_ask_for_the_newer_side() {
        let mut a = LayoutBook::new(
            id("a"),
            cfg(),
            Layout::initial([id("a"), id("c")], cfg()).unwrap(),
        );
        let old = a.current().clone();
        let new = a.on_view(&view(&["a", "b"], &[])).unwrap();
        assert_eq!(
            a.on_digest(old.version, &old.table.digest()),
            DigestAnswer::SendOurs
        );
        assert_eq!(
            a.on_digest(new.version, &new.table.digest()),
            DigestAnswer::Same
        );
        assert_eq!(a.on_digest(new.version + 1, &[0; 32]), DigestAnswer::Pull);
        assert_eq!(a.on_received(old, &view(&["a", "b"], &[])), Received::Older);
        assert_eq!(a.on_received(new, &view(&["a", "b"], &[])), Received::Same);
    }

    #[test]
    fn a_layout_with_another_partition_count_or_n_is_refused() {
        let mut a = book("a");
        let other = PartitionConfig {
            partitions: 128,
            n: 3,
        };
        let l = Layout::initial([id("a"), id("b")], other)
            .unwrap()
            .next([id("a"), id("b")], other)
            .unwrap();
        let r = a.on_received(l, &view(&["a", "b"], &[]));
        assert!(matches!(&r, Received::Refused(why) if why.contains("cluster.partitions = 128")));
        assert_eq!(a.current().version, 1, "nothing taken");
    }

    #[test]
    fn a_changed_n_makes_a_new_layout_with_the_same_members() {
        let mut a = LayoutBook::new(
            id("a"),
            PartitionConfig {
                partitions: 64,
                n: 2,
            },
            Layout::initial([id("a"), id("b"), id("c")], cfg()).unwrap(),
        );
        let l = a.on_view(&view(&["a", "b", "c"], &[])).expect("n changed");
        assert_eq!(l.table.effective_n(), 2);
        assert_eq!(l.version, 2);
    }

    #[test]
    fn leave_drops_this_node_and_proposes_nothing_more() {
        let mut b = LayoutBook::new(id("a"), cfg(), Layout::initial([id("a")], cfg()).unwrap());
        assert!(b.leave().unwrap_err().contains("only member"));
        let three = Layout::initial([id("a"), id("b"), id("c")], cfg()).unwrap();
        let mut b = LayoutBook::new(id("a"), cfg(), three.clone());
        let next = b.leave().unwrap();
        assert_eq!(next.version, three.version + 1);
        assert_eq!(next.table.members(), [id("b"), id("c")]);
        assert!(b.leave().is_err(), "it already left");
        // Membership still lists it as a member (it is up, handing off): no re-add.
        assert_eq!(b.on_view(&view(&["a", "b", "c"], &[])), None);
        // A restart with the stored layout keeps it out.
        let mut again = LayoutBook::new(id("a"), cfg(), next);
        assert_eq!(again.on_view(&view(&["a", "b", "c"], &[])), None);
    }
}
