//! Peer data RPCs: what a coordinator asks the replicas of a key, and what they answer.
//!
//! Every message travels inside [`crate::swim::PeerMsg::Data`] as a batch: a node that has
//! several requests or responses for one peer sends them in one frame. A request carries
//! an id unique per sender; its response carries the same id and goes back on the
//! responder's own outbound connection to the requester (peer connections are one-way).
//!
//! Objects travel as their storage encoding (an opaque `bin` here; `crate::object` defines
//! it), so a replica stores what it receives without re-encoding.
//!
//! ```
//! use troupe_protocol::data::{DataMsg, DataReq};
//! let m = DataMsg::Req { id: 7, req: DataReq::Get { key: b"k".to_vec() } };
//! let bytes = rmp_serde::to_vec_named(&m).unwrap();
//! assert_eq!(rmp_serde::from_slice::<DataMsg>(&bytes).unwrap(), m);
//! ```

use crate::message::Quorum;
use serde::{Deserialize, Serialize};

/// `Deserialize` of [`DataMsg`], [`DataReq`] and [`DataResp`], written by hand (no `Content`
/// buffering of the internally tagged maps).
mod de;
/// Replica gets and puts and their answers, encoded and decoded by hand.
pub(crate) mod fast;
#[cfg(test)]
pub(crate) mod testgen;

/// One request or response of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum DataMsg {
    Req { id: u64, req: DataReq },
    Resp { id: u64, resp: DataResp },
}

/// What a coordinator asks a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum DataReq {
    /// Read the replica's object for `key`.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Join `object` into the replica's object for `key` and make the result durable.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
    },
    /// Coordinate a client write (this node is a primary for `key`, the sender is not):
    /// `value: None` is a delete.
    Coordinate {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(default, with = "serde_bytes")]
        value: Option<Vec<u8>>,
        #[serde(default, with = "serde_bytes")]
        context: Option<Vec<u8>>,
        #[serde(default)]
        w: Option<Quorum>,
        /// An operation on a typed key (`value` and `context` are then unused). Left out
        /// when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        typed: Option<crate::crdt::TypedOp>,
    },
    /// Sloppy quorum: `primary` is down, so keep `object` for `key` as a durable hint on
    /// this node (a fallback of the key's partition) and hand it to `primary` once it is
    /// alive again. Answered `Stored` once the hint is on disk (fsynced); `Failed` when
    /// this node keeps no hints (handoff off, or the primary's hints are full). A node
    /// that predates hints cannot decode a frame holding one, so every request of that
    /// frame times out at the sender: upgrade every node before turning handoff on.
    Hint {
        primary: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
    },
    /// List this replica's keys of `partitions` after `after` (exclusive) that start with
    /// `prefix`, in byte order, at most `limit`, delete markers included (marked dead).
    Keys {
        #[serde(default, with = "serde_bytes")]
        prefix: Option<Vec<u8>>,
        #[serde(default, with = "serde_bytes")]
        after: Option<Vec<u8>>,
        limit: u32,
        partitions: Vec<u32>,
    },
}

/// One key of a replica's listing: whether its object holds a live value, and its clock
/// (the context encoding) so that a coordinator can tell which of two replicas is newer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub live: bool,
    #[serde(with = "serde_bytes")]
    pub clock: Vec<u8>,
}

/// A replica's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "r", rename_all = "lowercase")]
pub enum DataResp {
    /// To `Get`: the replica's object (`None`: it has none).
    Object {
        #[serde(default, with = "serde_bytes")]
        object: Option<Vec<u8>>,
    },
    /// To `Put`: the joined object is durable.
    Stored,
    /// To `Coordinate`: the write was acknowledged by `w` replicas; `context` for the client,
    /// and `values` when the written object holds more than the new version (the put
    /// reply's `values`, PROTOCOL.md §4). Left out when `None`; a node that predates it
    /// ignores it, and its answers read as `None` (the client then gets the context alone).
    Written {
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<Vec<serde_bytes::ByteBuf>>,
        /// For an operation on a typed key: the coordinator's state after it, encoded as in
        /// an object value (`crate::crdt`).
        #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
        typed: Option<Vec<u8>>,
    },
    /// To `Keys`: the entries, and `last`, the last key examined: every key of the asked
    /// partitions after `after` up to `last` is in `entries`. `last: None`: the range is
    /// exhausted.
    Keys {
        entries: Vec<KeyEntry>,
        #[serde(default, with = "serde_bytes")]
        last: Option<Vec<u8>>,
    },
    /// The request failed; `code` is a client error code (`unavailable`, `timeout`,
    /// `overloaded`, `internal`, `bad_request`, `too_large`) the coordinator passes on.
    Failed { code: String, msg: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            DataMsg::Req {
                id: 1,
                req: DataReq::Put {
                    key: b"k".to_vec(),
                    object: vec![1, 2, 3],
                },
            },
            DataMsg::Req {
                id: 2,
                req: DataReq::Coordinate {
                    key: b"k".to_vec(),
                    value: None,
                    context: Some(vec![9]),
                    w: Some(Quorum::All),
                    typed: None,
                },
            },
            DataMsg::Req {
                id: 9,
                req: DataReq::Hint {
                    primary: "n3".into(),
                    key: b"k".to_vec(),
                    object: vec![4, 5],
                },
            },
            DataMsg::Resp {
                id: 1,
                resp: DataResp::Object { object: None },
            },
            DataMsg::Resp {
                id: 2,
                resp: DataResp::Failed {
                    code: "unavailable".into(),
                    msg: "needed 2".into(),
                },
            },
            DataMsg::Resp {
                id: 3,
                resp: DataResp::Written {
                    context: vec![1],
                    values: None,
                    typed: Some(vec![0x10, 0, 0]),
                },
            },
            DataMsg::Resp {
                id: 5,
                resp: DataResp::Written {
                    context: vec![2],
                    values: Some(vec![b"a".to_vec().into(), b"".to_vec().into()]),
                    typed: None,
                },
            },
            DataMsg::Resp {
                id: 4,
                resp: DataResp::Stored,
            },
        ];
        let bytes = rmp_serde::to_vec_named(&msgs).unwrap();
        let back: Vec<DataMsg> = crate::codec::decode_one(&bytes).unwrap();
        assert_eq!(back, msgs);
    }

    /// `Written.values` is optional both ways: without values the bytes are what a node
    /// that predates the field sends and reads, and its answers decode as `None`.
    #[test]
    fn written_without_values_is_the_old_encoding() {
        #[derive(Serialize)]
        struct OldWritten {
            r: &'static str,
            #[serde(with = "serde_bytes")]
            context: Vec<u8>,
        }
        let old = rmp_serde::to_vec_named(&OldWritten {
            r: "written",
            context: vec![1, 2],
        })
        .unwrap();
        let new = DataResp::Written {
            context: vec![1, 2],
            values: None,
            typed: None,
        };
        assert_eq!(rmp_serde::to_vec_named(&new).unwrap(), old);
        assert_eq!(crate::codec::decode_one::<DataResp>(&old).unwrap(), new);
    }
}
