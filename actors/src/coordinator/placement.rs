//! The coordinator's view of the ring: the layout's partition table (what the nodes agreed
//! on, `crate::layout`), with each member's address and status from membership.
//!
//! Rebuilt only when the layout or the members' view changes; a request uses the placement
//! current when it starts. A layout member membership does not know (yet) has no address:
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
}

impl RingInputs {
    /// Whether either changed since the last [`RingInputs::placement`].
    pub fn has_changed(&self) -> bool {
        self.members.has_changed().unwrap_or(false) || self.layout.has_changed().unwrap_or(false)
    }

    /// The current placement, marking both inputs seen.
    pub fn placement(&mut self) -> Placement {
        let view = self.members.borrow_and_update().clone();
        let layout = self.layout.borrow_and_update().clone();
        Placement::new(&view, &layout)
    }
}

pub struct Placement {
    /// The layout's version.
    pub version: u64,
    pub table: Arc<PartitionTable>,
    pub members: BTreeMap<NodeId, MemberInfo>,
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
        // The view and the layout never change: keep the senders alive.
        std::mem::forget(tx);
        std::mem::forget(layout_tx);
        RingInputs { members, layout }
    }
}
