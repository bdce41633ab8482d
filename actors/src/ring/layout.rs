//! The layout: a partition table with a version, the unit nodes agree on and keep on disk.
//!
//! A table computed from the members alone cannot be both exactly balanced and move only a
//! newcomer's share on every join (ARCHITECTURE.md, "Placement"); one computed from the
//! previous table can ([`PartitionTable::next`]). So the table is a history: a node that
//! sees the member set change computes `next` of the newest layout it knows, with the
//! version one higher, and gossips it. Nodes keep the newest layout they have seen, by the
//! total order of [`Layout::is_newer_than`]: (version, digest). Nodes that computed the same
//! change from the same layout hold identical tables; two different layouts with one version
//! (two nodes saw different changes at once) resolve to the higher digest everywhere, and
//! the losers then add what they knew on top of it.
//!
//! # File (`DATA_DIR/layout`)
//! `b"TLAY"`, format byte [`FILE_FORMAT`], the MessagePack [`WireLayout`], then the 32-byte
//! blake3 of everything before it. Written to a temporary file, fsynced, renamed, and the
//! directory fsynced, so a crash leaves the old file or the new one.
//!
//! # Invariants
//! - A `Layout` always holds a valid table ([`PartitionTable::from_held`] checks what
//!   arrives); its version is at least 1.
//! - `a.is_newer_than(b)` is a strict total order on distinct layouts; equal version and
//!   digest means equal layouts.

use super::{PartitionConfig, PartitionTable, RingError};
use std::sync::Arc;
use troupe_protocol::layout::WireLayout;
use troupe_protocol::swim::NodeId;

/// Magic at the start of the layout file.
pub const FILE_MAGIC: &[u8; 4] = b"TLAY";
/// The layout file's format byte.
pub const FILE_FORMAT: u8 = 1;
/// The highest version a layout may have (a change a second for 292 billion years).
pub const MAX_VERSION: u64 = u64::MAX / 2;

/// A partition table and its version. Cheap to clone: the table is shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: u64,
    pub table: Arc<PartitionTable>,
}

/// Why a layout file could not be read. The message names what to do.
#[derive(Debug, thiserror::Error)]
pub enum LayoutFileError {
    #[error("not a troupe layout file (bad magic)")]
    Magic,
    #[error("layout file format {0} is not known to this build (it reads format {FILE_FORMAT})")]
    Format(u8),
    #[error("layout file checksum mismatch: the file is damaged; move it away and the node will take the layout from its peers")]
    Checksum,
    #[error("layout file does not decode: {0}")]
    Decode(String),
    #[error("layout file holds an invalid table: {0}")]
    Table(#[from] RingError),
}

impl Layout {
    /// Version 1: a fresh table of `members` ([`PartitionTable::new`]).
    pub fn initial<I>(members: I, cfg: PartitionConfig) -> Result<Layout, RingError>
    where
        I: IntoIterator,
        I::Item: Into<NodeId>,
    {
        Ok(Layout {
            version: 1,
            table: Arc::new(PartitionTable::new(members, cfg)?),
        })
    }

    /// The layout after this one for `members` and `cfg`: [`PartitionTable::next`], version
    /// one higher.
    pub fn next<I>(&self, members: I, cfg: PartitionConfig) -> Result<Layout, RingError>
    where
        I: IntoIterator,
        I::Item: Into<NodeId>,
    {
        if self.version >= MAX_VERSION {
            return Err(RingError::BadLayout(format!(
                "version {} cannot be followed",
                self.version
            )));
        }
        Ok(Layout {
            version: self.version + 1,
            table: Arc::new(self.table.next(members, cfg)?),
        })
    }

    /// The gossip and election order: higher version, then higher digest.
    pub fn is_newer_than(&self, other: &Layout) -> bool {
        self.is_newer_than_id(other.version, &other.table.digest())
    }

    /// [`is_newer_than`](Self::is_newer_than) against a layout known by version and digest.
    pub fn is_newer_than_id(&self, version: u64, digest: &[u8; 32]) -> bool {
        (self.version, self.table.digest()) > (version, *digest)
    }

    /// The layout's name in transfer trackers: (version, digest).
    pub fn id(&self) -> troupe_protocol::transfer::LayoutId {
        troupe_protocol::transfer::LayoutId {
            version: self.version,
            digest: self.table.digest(),
        }
    }

    pub fn to_wire(&self) -> WireLayout {
        let cfg = self.table.config();
        WireLayout {
            version: self.version,
            partitions: cfg.partitions,
            n: cfg.n as u32,
            members: self.table.members().to_vec(),
            held: self.table.held(),
        }
    }

    /// Checks and rebuilds a layout that arrived or was read back.
    pub fn from_wire(w: WireLayout) -> Result<Layout, RingError> {
        // A version near the top could not be followed (`next` adds one): refused.
        if w.version == 0 || w.version > MAX_VERSION {
            return Err(RingError::BadLayout(format!(
                "version {} (valid: 1 to {MAX_VERSION})",
                w.version
            )));
        }
        let cfg = PartitionConfig {
            partitions: w.partitions,
            n: w.n as usize,
        };
        Ok(Layout {
            version: w.version,
            table: Arc::new(PartitionTable::from_held(w.members, cfg, &w.held)?),
        })
    }

    /// The layout file's bytes (see the module docs).
    pub fn encode_file(&self) -> Vec<u8> {
        let mut out = FILE_MAGIC.to_vec();
        out.push(FILE_FORMAT);
        out.extend(rmp_serde::to_vec_named(&self.to_wire()).expect("BUG: encoding into a Vec"));
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    pub fn decode_file(bytes: &[u8]) -> Result<Layout, LayoutFileError> {
        if bytes.len() < FILE_MAGIC.len() + 1 + 32 || &bytes[..4] != FILE_MAGIC {
            return Err(LayoutFileError::Magic);
        }
        if bytes[4] != FILE_FORMAT {
            return Err(LayoutFileError::Format(bytes[4]));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(LayoutFileError::Checksum);
        }
        let wire: WireLayout = troupe_protocol::codec::decode_one(&body[5..])
            .map_err(|e| LayoutFileError::Decode(e.to_string()))?;
        Ok(Layout::from_wire(wire)?)
    }
}
