//! Anti-entropy exchanges on the wire: how two replicas compare their tictac trees and swap
//! the objects that differ.
//!
//! Frames travel on the peer port's bulk lane inside [`crate::swim::PeerMsg::AntiEntropy`].
//! One node (the *initiator*) drives an exchange with one peer by requests carrying ids;
//! the peer (the *responder*) answers each from its own tree and storage without keeping
//! any state of the exchange, so a lost frame costs one request's timeout, nothing else.
//!
//! A tree (per partition) has `fanout^depth` leaf *segments*; a node at level `d` has
//! `fanout` children at level `d + 1`; level 0 is the partition's *root*. Every hash is the
//! XOR of its children, a segment's the XOR of one 64-bit value per key it holds (so equal
//! key sets with equal objects give equal hashes whatever the order of writes).
//!
//! ```
//! use troupe_protocol::antientropy::{AeMsg, AeReq, TreeShape};
//! let m = AeMsg::Req { id: 7, req: AeReq::Roots { shape: TreeShape { fanout: 32, depth: 2 }, partitions: vec![0, 5] } };
//! assert_eq!(AeMsg::decode(&m.encode()).unwrap(), m);
//! ```

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The shape of every partition's tree; both sides of an exchange must use the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    /// Children per inner node, a power of two.
    pub fanout: u32,
    /// Levels below the root; segments per partition = `fanout^depth`.
    pub depth: u32,
}

/// One anti-entropy frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum AeMsg {
    Req { id: u64, req: AeReq },
    Resp { id: u64, resp: AeResp },
}

/// What an initiator asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "lowercase")]
pub enum AeReq {
    /// The root hash of each partition: answered by `Hashes`, one per partition, in order.
    Roots {
        shape: TreeShape,
        partitions: Vec<u32>,
    },
    /// The children's hashes of each `(partition, index)` node at `level`: answered by
    /// `Hashes`, `fanout` per node, in order.
    Children {
        shape: TreeShape,
        level: u32,
        nodes: Vec<(u32, u32)>,
    },
    /// The keys and object hashes in each `(partition, segment)`: answered by `Keys`.
    Segments {
        shape: TreeShape,
        segments: Vec<(u32, u32)>,
    },
    /// The stored objects of these keys: answered by `Objects`.
    Fetch { keys: Vec<ByteBuf> },
    /// Join these objects into the responder's copies: answered by `Pushed`.
    Push { objects: Vec<(ByteBuf, ByteBuf)> },
}

/// What a responder answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "a", rename_all = "lowercase")]
pub enum AeResp {
    Hashes {
        hashes: Vec<u64>,
    },
    /// Every key of the requested segments with its object hash (any order).
    Keys {
        keys: Vec<(ByteBuf, u64)>,
    },
    /// The objects of a prefix of the requested keys (`None`: not stored), at most what fits
    /// a frame comfortably; the initiator asks again for the rest.
    Objects {
        objects: Vec<(ByteBuf, Option<ByteBuf>)>,
    },
    /// How many pushed objects were joined (the others failed, and stay different).
    Pushed {
        joined: u32,
    },
    /// The responder cannot answer now (its tree is still being built at start-up, a
    /// different shape, storage failing): the exchange ends, nothing was changed by it.
    Refused {
        reason: String,
    },
}

impl AeMsg {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("BUG: encoding into a Vec cannot fail")
    }
    pub fn decode(body: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        crate::codec::decode_one(body)
    }
}
