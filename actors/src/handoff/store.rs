//! The transfer file, `<data_dir>/TRANSFERS`: the transfer book (stable layout, trackers),
//! whether this node is leaving, and where each running fetch stream got to, so both a
//! transition and a stream resume after a restart.
//!
//! Format: `b"TXFR"`, format byte 1, the MessagePack [`Stored`], then the 32-byte blake3 of
//! everything before it. Blocking: called at start-up and by the Handoff actor on a
//! blocking thread. A write is atomic and durable before `save` returns (temporary file,
//! fsync, rename, directory fsync); a damaged file is an error naming what to do.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use troupe_protocol::transfer::{LayoutId, WireTransferState};

pub const FILE: &str = "TRANSFERS";
const MAGIC: &[u8; 4] = b"TXFR";
const FORMAT: u8 = 1;

/// Where one fetch stream got to: everything of `partitions` up to and including `after`
/// is joined here durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The current layout the stream fetches for (a cursor of another layout is void).
    pub layout: LayoutId,
    pub partitions: Vec<u32>,
    pub after: Option<ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub state: WireTransferState,
    /// `admin leave` was asked: hand off, then depart.
    pub leaving: bool,
    pub cursors: Vec<Cursor>,
    /// Partitions whose fetch finished, for the layout named.
    pub done: Option<(LayoutId, Vec<u32>)>,
    /// Partitions whose data this node may delete (rule 7), not deleted yet.
    pub to_drop: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferStoreError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({why}); restore it from a backup if you can. Moving it away makes the node take its current layout as stable: only safe when no ring change was in progress (`troupe admin ring` on the others shows no pending partitions)")]
    Bad { path: PathBuf, why: String },
}

pub fn load(data_dir: &Path) -> Result<Option<Stored>, TransferStoreError> {
    let path = data_dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TransferStoreError::Io { path, source }),
    };
    let bad = |why: &str| TransferStoreError::Bad {
        path: path.clone(),
        why: why.to_string(),
    };
    if bytes.len() < MAGIC.len() + 1 + 32 || &bytes[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if bytes[4] != FORMAT {
        return Err(bad(&format!(
            "format {} is not known to this build",
            bytes[4]
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("checksum mismatch"));
    }
    rmp_serde::from_slice(&body[5..])
        .map(Some)
        .map_err(|e| bad(&e.to_string()))
}

pub fn save(data_dir: &Path, stored: &Stored) -> io::Result<()> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT);
    out.extend(rmp_serde::to_vec_named(stored).map_err(io::Error::other)?);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    crate::layout::store::replace_file(data_dir, FILE, &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Layout, PartitionConfig};
    use troupe_protocol::swim::NodeId;

    #[test]
    fn saved_state_loads_back_and_damage_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().is_none());
        let cfg = PartitionConfig {
            partitions: 16,
            n: 3,
        };
        let l = Layout::initial([NodeId("a".into())], cfg).unwrap();
        let s = Stored {
            state: WireTransferState {
                stable: l.to_wire(),
                acked: vec![(NodeId("a".into()), l.id())],
                synced: vec![],
                provisional: false,
            },
            leaving: true,
            cursors: vec![Cursor {
                layout: l.id(),
                partitions: vec![1, 2],
                after: Some(ByteBuf::from(b"k".to_vec())),
            }],
            done: Some((l.id(), vec![3])),
            to_drop: vec![4],
        };
        save(d.path(), &s).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(s));
        let mut bytes = fs::read(d.path().join(FILE)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(d.path().join(FILE), &bytes).unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("TRANSFERS") && e.contains("checksum"), "{e}");
    }
}
