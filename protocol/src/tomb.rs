//! Tombstone GC between nodes: the messages of a GC round, on the peer bulk lane.
//!
//! A round is run by the first primary of a partition (its *owner*) for delete markers
//! older than `cluster.tombstone_grace`:
//! 1. `Check` to every member that could hold a copy or a hint: for each entry, is a hint
//!    for that key pending here, and (if `must_hold`, the other primaries) does this node
//!    hold exactly this delete marker (same clock hash)?
//! 2. `Verdict`: one bool per entry, in order (true = no hint pending, and held if asked).
//! 3. `Purge` to the other primaries for the entries every member passed: each deletes the
//!    marker if it still holds exactly that one.
//!
//! Bounded: at most [`MAX_ENTRIES`] entries per message; a receiver ignores larger ones.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Entries per message, at most (keys are at most 64 KiB, but typical keys are small: a
/// full message of 1 KiB keys is ~1 MiB, within the peer frame limit).
pub const MAX_ENTRIES: usize = 1000;

/// The hash that names one exact version of an object: blake3 of its encoded context (the
/// sorted version vector), cut to 16 bytes. Equal clocks mean equal objects (see
/// `crate::object`), so two replicas with the same hash hold the same delete marker.
pub fn clock_hash(o: &crate::object::Object) -> [u8; 16] {
    let h = blake3::hash(&o.encoded_context());
    let mut out = [0; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// One delete marker: its key and its [`clock_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombEntry {
    pub key: ByteBuf,
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 16],
    /// The receiver is a primary of the key and must hold this marker.
    pub must_hold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum TombMsg {
    Check { id: u64, entries: Vec<TombEntry> },
    Verdict { id: u64, ok: Vec<bool> },
    Purge { entries: Vec<TombEntry> },
}

impl TombMsg {
    /// Entries carried (for the size bound).
    pub fn entries(&self) -> usize {
        match self {
            TombMsg::Check { entries, .. } | TombMsg::Purge { entries } => entries.len(),
            TombMsg::Verdict { ok, .. } => ok.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::PeerMsg;

    #[test]
    fn a_check_round_trips_on_the_peer_wire() {
        let m = PeerMsg::Tomb(TombMsg::Check {
            id: 7,
            entries: vec![TombEntry {
                key: ByteBuf::from(b"k".to_vec()),
                hash: [3; 16],
                must_hold: true,
            }],
        });
        let back = PeerMsg::decode(&m.encode()).unwrap();
        assert!(
            matches!(back, PeerMsg::Tomb(TombMsg::Check { id: 7, ref entries }) if entries.len() == 1 && entries[0].must_hold)
        );
    }
}
