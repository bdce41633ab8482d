//! Partition transfers when the ring changes (join, leave, remove): the Handoff actors'
//! messages, on the peer bulk lane inside [`crate::swim::PeerMsg::Transfer`].
//!
//! Two kinds of traffic:
//! - **State gossip** ([`TransferMsg::State`]): the *stable* layout (the newest one whose
//!   every member holds all the data it owns in it) and two trackers per node, merged by
//!   taking the maximum: `acked` (the node writes to the owners of the layout it names)
//!   and `synced` (the node holds everything it owns in the layout it names). Layouts are
//!   named by [`LayoutId`] and ordered by (version, digest) like layouts themselves.
//! - **Fetch streams**: a new owner asks a holder for the objects of a set of partitions
//!   in key order, a page at a time ([`TransferMsg::Fetch`] -> [`TransferMsg::Chunk`]);
//!   `after` is the last key it already has, so a stream resumes anywhere (after either
//!   side restarts, or from another holder: every holder orders keys alike).
//!
//! Bounded: a `Chunk` carries at most the `max_bytes` the fetch asked for (at least one
//! object), and a holder caps `max_bytes` at [`MAX_CHUNK_BYTES`].
//!
//! ```
//! use troupe_protocol::transfer::TransferMsg;
//! let m = TransferMsg::Fetch { id: 1, partitions: vec![3, 9], after: None, max_bytes: 65536 };
//! let bytes = rmp_serde::to_vec_named(&m).unwrap();
//! assert_eq!(rmp_serde::from_slice::<TransferMsg>(&bytes).unwrap(), m);
//! ```

use crate::layout::WireLayout;
use crate::swim::NodeId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The most object bytes one `Chunk` carries (a holder caps a fetch's `max_bytes` here).
pub const MAX_CHUNK_BYTES: u32 = 1 << 20;

/// Names one layout: its version and table digest (the layouts' total order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayoutId {
    pub version: u64,
    #[serde(with = "serde_bytes")]
    pub digest: [u8; 32],
}

/// The transfer state as it travels and as it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTransferState {
    /// The stable layout: every one of its members holds all it owns in it.
    pub stable: WireLayout,
    /// Per node: the newest layout it writes to (as well as to the stable one's owners).
    pub acked: Vec<(NodeId, LayoutId)>,
    /// Per node: the newest layout whose data it holds for every partition it owns there.
    pub synced: Vec<(NodeId, LayoutId)>,
    /// The stable layout is a fresh, empty node's own: it gives way to any that is not.
    #[serde(default)]
    pub provisional: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum TransferMsg {
    /// Gossip: the sender's transfer state (sent every gossip round to one member, and at
    /// once to a few when it changes).
    State(WireTransferState),
    /// "Send me the objects of these partitions with keys after `after`, up to `max_bytes`."
    Fetch {
        id: u64,
        partitions: Vec<u32>,
        after: Option<ByteBuf>,
        max_bytes: u32,
    },
    /// Objects in key order (key, encoded object); `next`: the last key this chunk covered
    /// (ask again with it as `after`), `None` when the holder's data is exhausted.
    /// `estimate`: with the answer to a fetch from the start, the keys of these partitions
    /// the holder has (for progress and ETA), when it knows.
    Chunk {
        id: u64,
        objects: Vec<(ByteBuf, ByteBuf)>,
        next: Option<ByteBuf>,
        #[serde(default)]
        estimate: Option<u64>,
    },
    /// The holder cannot serve the fetch (storage failing, shutting down): try another.
    Refused { id: u64, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::PeerMsg;

    #[test]
    fn transfer_messages_round_trip_on_the_peer_wire() {
        let id = LayoutId {
            version: 4,
            digest: [7; 32],
        };
        let msgs = [
            PeerMsg::Transfer(TransferMsg::State(WireTransferState {
                stable: WireLayout {
                    version: 3,
                    partitions: 2,
                    n: 1,
                    members: vec!["a".into()],
                    held: vec![0, 0],
                },
                acked: vec![("a".into(), id)],
                synced: vec![],
                provisional: false,
            })),
            PeerMsg::Transfer(TransferMsg::Chunk {
                id: 9,
                objects: vec![(ByteBuf::from(b"k".to_vec()), ByteBuf::from(vec![1, 2]))],
                next: Some(ByteBuf::from(b"k".to_vec())),
                estimate: Some(10),
            }),
            PeerMsg::Transfer(TransferMsg::Refused {
                id: 2,
                reason: "x".into(),
            }),
        ];
        for m in msgs {
            assert_eq!(PeerMsg::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn layout_ids_order_by_version_then_digest() {
        let a = LayoutId {
            version: 2,
            digest: [9; 32],
        };
        let b = LayoutId {
            version: 3,
            digest: [0; 32],
        };
        let c = LayoutId {
            version: 3,
            digest: [1; 32],
        };
        assert!(a < b && b < c);
    }
}
