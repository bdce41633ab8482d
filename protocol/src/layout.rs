//! The ring layout on the wire and on disk: which members hold which partitions, as the
//! nodes agree on it.
//!
//! A layout is a partition table with a version. Nodes gossip [`LayoutMsg`]s on the peer
//! port's bulk lane (inside [`crate::swim::PeerMsg::Layout`]) and keep the newest layout
//! they know in their data directory. *Newest* is the total order on (`version`, table
//! digest): a higher version wins, and between two different layouts with one version the
//! higher digest wins, so every node ends on the same one.
//!
//! [`WireLayout`] carries only the assignment (`held`: each partition's primaries as
//! indices into `members`); the receiver recomputes the primaries' order, the fallbacks and
//! the digest from it, so a layout cannot arrive with a digest that does not match its
//! table. What is valid (sorted members, index range, distinct primaries) is checked by the
//! receiver (`troupe_actors::ring::Layout::from_wire`).
//!
//! ```
//! use troupe_protocol::layout::{LayoutMsg, WireLayout};
//! let w = WireLayout { version: 2, partitions: 2, n: 1, members: vec!["a".into()], held: vec![0, 0] };
//! let m = LayoutMsg::Full(w);
//! let bytes = rmp_serde::to_vec_named(&m).unwrap();
//! assert_eq!(rmp_serde::from_slice::<LayoutMsg>(&bytes).unwrap(), m);
//! ```

use crate::swim::NodeId;
use serde::{Deserialize, Serialize};

/// A layout as it travels and as it is stored (inside the file framing of
/// `troupe_actors::ring::layout`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLayout {
    /// Grows by one with every change of the assignment a node computes.
    pub version: u64,
    /// Q, `cluster.partitions`.
    pub partitions: u32,
    /// The configured N, `cluster.n`.
    pub n: u32,
    /// The ring members, sorted and distinct.
    pub members: Vec<NodeId>,
    /// `partitions * min(n, members.len())` member indices, partition-major: each
    /// partition's primaries (distinct, in any order).
    pub held: Vec<u32>,
}

/// Layout gossip between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum LayoutMsg {
    /// "I hold this layout": sent now and then to a random member. A receiver holding a
    /// newer one answers with `Full`; one holding an older one answers `Pull`.
    Digest {
        version: u64,
        #[serde(with = "serde_bytes")]
        digest: [u8; 32],
    },
    /// "Send me yours": the answer to a `Digest` newer than the receiver's.
    Pull,
    /// A whole layout: pushed when a node adopts a newer one, or answering `Digest`/`Pull`.
    Full(WireLayout),
}
