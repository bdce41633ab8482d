//! Peer wire types: the connection handshake and the SWIM membership / failure-detection
//! messages exchanged between nodes on the peer port.
//!
//! Owns: [`PeerHello`], [`PeerWelcome`], [`PeerProof`] (the handshake, see `PROTOCOL.md`,
//! "Peer protocol"), [`PeerMsg`] (every frame after the handshake), [`SwimMsg`] and its
//! payloads, and the member record [`MemberInfo`] they carry. Plain data only: no behaviour
//! beyond ordering helpers and encode/decode.
//!
//! Invariants:
//! - Every frame is one MessagePack map (`to_vec_named`), in the client framing.
//! - `SwimMsg` is internally tagged (`"t"`); `PeerMsg` adjacently tagged (`"k"`, `"m"`), so
//!   new peer message families (replication, hints) can be added without clashing.
//! - `Status` precedence at equal incarnation is `Alive < Suspect < Dead < Left`
//!   (the derived `Ord` follows declaration order and is relied upon).
//! - Byte fields (digests, challenges, proofs) are MessagePack bin (`serde_bytes`).
//!
//! ```
//! use troupe_protocol::swim::{Nack, PeerMsg, SwimMsg};
//! let m = PeerMsg::Swim(SwimMsg::Nack(Nack { seq: 4, from: "n1".into() }));
//! assert_eq!(PeerMsg::decode(&m.encode()).unwrap(), m);
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable node name (unique per logical node across restarts).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn new(s: impl Into<String>) -> Self {
        NodeId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

/// Liveness state of a member. Declaration order is the precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl Status {
    /// Stable one-byte code used by the membership digest.
    pub fn code(self) -> u8 {
        match self {
            Status::Alive => 0,
            Status::Suspect => 1,
            Status::Dead => 2,
            Status::Left => 3,
        }
    }
}

/// One member as known by some node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    /// The three addresses are empty (and left out of the encoding) in a *compact* record:
    /// a status change of a member run the receiver already knows (suspect, dead, left, or
    /// an alive refutation). Receivers fill them from their table and ignore a compact record
    /// about a member or run they do not know. Full-state exchanges never carry one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub admin_addr: String,
    pub incarnation: u64,
    pub status: Status,
    /// Identifies one process lifetime of `id`; should grow across restarts
    /// (e.g. start time in ms) but correctness only needs it to differ.
    pub run_id: u64,
}

impl MemberInfo {
    /// Total order used by merge: higher incarnation, then higher run id,
    /// then status precedence wins.
    pub fn rank(&self) -> (u64, u64, Status) {
        (self.incarnation, self.run_id, self.status)
    }
}

/// One piggybacked gossip item: a member record plus who asserted it
/// (the suspector for `Suspect`, used to count independent confirmations).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub member: MemberInfo,
    pub origin: NodeId,
}

/// Direct (or relayed) probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub seq: u64,
    pub from: NodeId,
    pub updates: Vec<Update>,
}

/// Probe answer. When forwarded by a relay, `from` is the probed target and
/// `seq` is the requester's sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
    pub from: NodeId,
    /// blake3 digest of the sender's member table (see `MemberList::digest`).
    #[serde(with = "serde_bytes")]
    pub digest: [u8; 32],
    pub updates: Vec<Update>,
}

/// Ask `from`'s chosen relay to probe `target` on its behalf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndirectPing {
    pub seq: u64,
    pub from: NodeId,
    pub target: NodeId,
}

/// Lifeguard: a relay's own probe of the target timed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub seq: u64,
    pub from: NodeId,
}

/// Gossip fan-out: pending updates pushed to a few random members every gossip interval,
/// beside the probes. Never answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    pub from: NodeId,
    pub updates: Vec<Update>,
}

/// Push-pull anti-entropy: full member table. `reply` asks for the peer's
/// table back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateExchange {
    pub from: NodeId,
    pub members: Vec<MemberInfo>,
    pub reply: bool,
}

/// Every SWIM peer message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum SwimMsg {
    Ping(Ping),
    Ack(Ack),
    IndirectPing(IndirectPing),
    Nack(Nack),
    StateExchange(StateExchange),
    Gossip(Gossip),
}

impl SwimMsg {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SwimMsg::Ping(_) => "ping",
            SwimMsg::Ack(_) => "ack",
            SwimMsg::IndirectPing(_) => "indirect_ping",
            SwimMsg::Nack(_) => "nack",
            SwimMsg::StateExchange(_) => "state_exchange",
            SwimMsg::Gossip(_) => "gossip",
        }
    }
}

/// Version of the peer protocol spoken after the handshake.
pub const PEER_PROTOCOL_VERSION: u32 = 1;

/// Which outbound connection a frame travels on. Probes never queue behind bulk traffic:
/// each lane is its own TCP connection with its own bounded queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Ping, Ack, IndirectPing, Nack: small and time-critical.
    Control,
    /// Full-state exchanges.
    Bulk,
    /// Replication requests and responses ([`crate::data`]).
    Data,
}

/// First frame on a peer connection, from the connecting node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    pub version: u32,
    pub from: NodeId,
    pub lane: Lane,
    /// Fresh random bytes the acceptor must prove knowledge of the secret over.
    #[serde(with = "serde_bytes")]
    pub challenge: [u8; 32],
}

/// The acceptor's answer to [`PeerHello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerWelcome {
    pub from: NodeId,
    #[serde(with = "serde_bytes")]
    pub challenge: [u8; 32],
    /// Keyed hash over both challenges (absent when the acceptor has no secret).
    #[serde(default, with = "serde_bytes")]
    pub proof: Option<Vec<u8>>,
    /// Set when the acceptor refuses the connection; it closes right after.
    #[serde(default)]
    pub refused: Option<String>,
}

/// The connector's proof, third and last handshake frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProof {
    #[serde(default, with = "serde_bytes")]
    pub proof: Option<Vec<u8>>,
}

/// Every frame after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", content = "m", rename_all = "lowercase")]
pub enum PeerMsg {
    Swim(SwimMsg),
    /// A batch of replication requests and responses for one peer.
    Data(Vec<crate::data::DataMsg>),
    /// Ring layout gossip ([`crate::layout`]), on the bulk lane.
    Layout(crate::layout::LayoutMsg),
    /// Anti-entropy tree exchanges and object repair ([`crate::antientropy`]), on the bulk
    /// lane.
    #[serde(rename = "ae")]
    AntiEntropy(crate::antientropy::AeMsg),
    /// Tombstone GC rounds ([`crate::tomb`]), on the bulk lane.
    Tomb(crate::tomb::TombMsg),
    /// Partition transfers on ring changes ([`crate::transfer`]), on the bulk lane.
    Transfer(crate::transfer::TransferMsg),
}

/// `encode`, `encode_into` and `decode` for each type: through serde, after a hand-written
/// path when one is given (`fast: encoder, decoder`; the encoder returns `false` having
/// written nothing, the decoder `None`, when the value or frame is not theirs).
macro_rules! codec_impl {
    ($($t:ty),*) => {$(
        codec_impl!($t, fast: |_, _| false, |_| None);
    )*};
    ($t:ty, fast: $encode:expr, $decode:expr) => {
        impl $t {
            pub fn encode(&self) -> Vec<u8> {
                let mut out = Vec::new();
                self.encode_into(&mut out);
                out
            }
            /// [`Self::encode`] appended to `out` (a reused buffer).
            pub fn encode_into(&self, out: &mut Vec<u8>) {
                let fast: fn(&$t, &mut Vec<u8>) -> bool = $encode;
                if !fast(self, out) {
                    rmp_serde::encode::write_named(out, self)
                        .expect("BUG: encoding into a Vec cannot fail")
                }
            }
            pub fn decode(body: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
                let fast: fn(&[u8]) -> Option<$t> = $decode;
                match fast(body) {
                    Some(decoded) => Ok(decoded),
                    None => crate::codec::decode_one(body),
                }
            }
        }
    };
}
codec_impl!(PeerHello, PeerWelcome, PeerProof, SwimMsg);
// The replication batches of gets and puts by hand (`data::fast`: the same bytes as
// serde's, which property tests hold it to).
codec_impl!(
    PeerMsg,
    fast: |m, out| matches!(m, PeerMsg::Data(b) if crate::data::fast::encode_frame(b, out)),
    |body| crate::data::fast::decode_frame(body).map(PeerMsg::Data)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_frames_with_trailing_bytes_are_refused() {
        let mut body = PeerProof { proof: None }.encode();
        assert!(PeerProof::decode(&body).is_ok());
        body.push(0);
        assert!(PeerProof::decode(&body).is_err());
    }

    fn info() -> MemberInfo {
        MemberInfo {
            id: "a".into(),
            client_addr: "c".into(),
            peer_addr: "p".into(),
            admin_addr: "x".into(),
            incarnation: 7,
            status: Status::Suspect,
            run_id: 99,
        }
    }

    #[test]
    fn msgpack_roundtrip_all_messages() {
        let msgs = vec![
            SwimMsg::Ping(Ping {
                seq: 1,
                from: "a".into(),
                updates: vec![Update {
                    member: info(),
                    origin: "b".into(),
                }],
            }),
            SwimMsg::Ack(Ack {
                seq: 2,
                from: "b".into(),
                digest: [200; 32],
                updates: vec![],
            }),
            SwimMsg::IndirectPing(IndirectPing {
                seq: 3,
                from: "a".into(),
                target: "c".into(),
            }),
            SwimMsg::Nack(Nack {
                seq: 4,
                from: "c".into(),
            }),
            SwimMsg::StateExchange(StateExchange {
                from: "a".into(),
                members: vec![info()],
                reply: true,
            }),
            SwimMsg::Gossip(Gossip {
                from: "a".into(),
                updates: vec![Update {
                    member: MemberInfo {
                        client_addr: String::new(),
                        peer_addr: String::new(),
                        admin_addr: String::new(),
                        ..info()
                    },
                    origin: "b".into(),
                }],
            }),
        ];
        for m in msgs {
            let bytes = rmp_serde::to_vec_named(&m).expect("encode");
            let back: SwimMsg = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn handshake_frames_roundtrip_with_bin_fields() {
        let h = PeerHello {
            version: PEER_PROTOCOL_VERSION,
            from: "a".into(),
            lane: Lane::Control,
            challenge: [7; 32],
        };
        let bytes = h.encode();
        // 0xc4 0x20: bin 8 of 32 bytes, not an array of ints
        assert!(bytes.windows(2).any(|w| w == [0xc4, 0x20]));
        assert_eq!(PeerHello::decode(&bytes).unwrap(), h);
        let w = PeerWelcome {
            from: "b".into(),
            challenge: [1; 32],
            proof: Some(vec![2; 32]),
            refused: None,
        };
        assert_eq!(PeerWelcome::decode(&w.encode()).unwrap(), w);
        let p = PeerProof { proof: None };
        assert_eq!(PeerProof::decode(&p.encode()).unwrap(), p);
        let m = PeerMsg::Swim(SwimMsg::Ack(Ack {
            seq: 1,
            from: "b".into(),
            digest: [9; 32],
            updates: vec![],
        }));
        assert_eq!(PeerMsg::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn status_precedence_order() {
        assert!(Status::Alive < Status::Suspect);
        assert!(Status::Suspect < Status::Dead);
        assert!(Status::Dead < Status::Left);
    }
}
