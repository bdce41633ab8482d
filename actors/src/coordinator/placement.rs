//! The coordinator's view of the ring: the layout's partition table (what the nodes agreed
//! on, `crate::layout`), with each member's address and status from membership.
//!
//! Rebuilt only when the layout, the transition or the members' view changes; a request
//! uses the placement current when it starts.
//!
//! While the ring is in transition (`crate::handoff`: the stable layout, whose owners hold
//! the data, differs from the current one) writes go to the primaries of both and reads
//! to the stable ones ([`Placement::read_primaries`], [`Placement::also_write`]). A layout member membership does not know (yet) has no address:
//! it counts as down.

use crate::membership::actor::RingMembers;
use crate::ring::{Layout, PartitionTable};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use troupe_protocol::swim::{MemberInfo, NodeId, Status};

/// What the coordinator follows: membership's view (addresses, status) and the layout.
pub struct RingInputs {
    pub members: watch::Receiver<RingMembers>,
    pub layout: watch::Receiver<Layout>,
    /// The Handoff actor's view: the stable layout while the ring is in transition.
    pub transition: watch::Receiver<crate::handoff::Transition>,
}

impl RingInputs {
    /// Whether either changed since the last [`RingInputs::placement`].
    pub fn has_changed(&self) -> bool {
        self.members.has_changed().unwrap_or(false)
            || self.layout.has_changed().unwrap_or(false)
            || self.transition.has_changed().unwrap_or(false)
    }

    /// The current placement, marking both inputs seen.
    pub fn placement(&mut self) -> Placement {
        let view = self.members.borrow_and_update().clone();
        let layout = self.layout.borrow_and_update().clone();
        let stable = self.transition.borrow_and_update().stable_for(&layout);
        let mut p = Placement::new(&view, &layout);
        p.stable = stable
            .filter(|s| s.table.partitions() == layout.table.partitions())
            .map(|s| s.table);
        p
    }
}

pub struct Placement {
    /// The layout's version.
    pub version: u64,
    pub table: Arc<PartitionTable>,
    pub members: BTreeMap<NodeId, MemberInfo>,
    /// The stable layout's table while the ring is in transition.
    pub stable: Option<Arc<PartitionTable>>,
}

impl Placement {
    pub fn new(view: &RingMembers, layout: &Layout) -> Placement {
        Placement {
            version: layout.version,
            table: layout.table.clone(),
            members: view
                .members
                .iter()
                .map(|m| (m.id.clone(), m.clone()))
                .collect(),
            stable: None,
        }
    }

    /// Where `key` is read: the stable layout's primaries while in transition (they hold
    /// the data; a new owner may not have it yet), else the primaries.
    pub fn read_primaries(&self, key: &[u8]) -> &[NodeId] {
        match &self.stable {
            Some(s) => s.primaries(s.partition_of(key)),
            None => self.primaries(key),
        }
    }

    /// Replicas per key for reads (the stable layout's while in transition).
    pub fn read_n(&self) -> usize {
        self.stable.as_ref().map_or(self.n(), |s| s.effective_n())
    }

    /// While in transition: the stable layout's primaries of `key`, which a write must
    /// also reach (`w` of them acknowledging as well as `w` of the current ones). Empty
    /// when the two agree on the key's partition.
    pub fn also_write(&self, key: &[u8]) -> &[NodeId] {
        match &self.stable {
            Some(s) => {
                let old = s.primaries(s.partition_of(key));
                let mut new: Vec<&NodeId> = self.primaries(key).iter().collect();
                new.sort();
                let mut oldv: Vec<&NodeId> = old.iter().collect();
                oldv.sort();
                if new == oldv {
                    &[]
                } else {
                    old
                }
            }
            None => &[],
        }
    }

    /// The primaries of `key`'s partition, in preference order.
    pub fn primaries(&self, key: &[u8]) -> &[NodeId] {
        self.table.primaries(self.table.partition_of(key))
    }

    /// Replicas per key now (fewer than `cluster.n` while the ring has fewer members).
    pub fn n(&self) -> usize {
        self.table.effective_n()
    }

    /// Whether membership currently believes `id` can answer (alive or suspect).
    pub fn is_up(&self, id: &NodeId) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| matches!(m.status, Status::Alive | Status::Suspect))
    }

    pub fn peer_addr(&self, id: &NodeId) -> Option<&str> {
        self.members.get(id).map(|m| m.peer_addr.as_str())
    }
}

#[cfg(test)]
impl RingInputs {
    /// A ring of one alive member `n1` (16 partitions, N=3) that never changes: for tests of
    /// actors that follow the ring.
    pub(crate) fn single_for_tests() -> RingInputs {
        let info = MemberInfo {
            id: NodeId("n1".into()),
            client_addr: "127.0.0.1:1".into(),
            peer_addr: "127.0.0.1:2".into(),
            admin_addr: "127.0.0.1:3".into(),
            incarnation: 0,
            status: Status::Alive,
            run_id: 1,
        };
        let cfg = crate::ring::PartitionConfig {
            partitions: 16,
            n: 3,
        };
        let layout = Layout::initial([info.id.clone()], cfg).expect("one member");
        let (tx, members) = watch::channel(RingMembers {
            version: 1,
            members: vec![info],
            departed: Vec::new(),
        });
        let (layout_tx, layout) = watch::channel(layout);
        let (transition_tx, transition) = watch::channel(crate::handoff::Transition {
            current: layout.borrow().clone(),
            stable: None,
        });
        // The view and the layout never change: keep the senders alive.
        std::mem::forget(tx);
        std::mem::forget(layout_tx);
        std::mem::forget(transition_tx);
        RingInputs {
            members,
            layout,
            transition,
        }
    }
}
