//! The coordinator's view of the ring: the partition table computed from the ring members
//! membership publishes, with each member's address and status.
//!
//! Rebuilt only when the members' view changes (its `version` moved); a request uses the
//! placement current when it starts.

use crate::membership::actor::RingMembers;
use crate::ring::{PartitionConfig, PartitionTable};
use std::collections::BTreeMap;
use troupe_protocol::swim::{MemberInfo, NodeId, Status};

pub struct Placement {
    pub version: u64,
    pub table: PartitionTable,
    pub members: BTreeMap<NodeId, MemberInfo>,
}

impl Placement {
    pub fn new(view: &RingMembers, cfg: PartitionConfig) -> Result<Placement, String> {
        let ids: Vec<NodeId> = view.members.iter().map(|m| m.id.clone()).collect();
        let table = PartitionTable::new(ids, cfg).map_err(|e| e.to_string())?;
        Ok(Placement {
            version: view.version,
            table,
            members: view
                .members
                .iter()
                .map(|m| (m.id.clone(), m.clone()))
                .collect(),
        })
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
