//! SSTables: immutable sorted files of `Entry`s.
//!
//! Layout of one table file (all integers little-endian, varints LEB128):
//!
//! ```text
//! [data block 0] ... [data block n-1] [bloom filter] [index] [footer: 68 bytes]
//! ```
//!
//! * data block: entries in stream order (key asc, seq desc), each
//!   `varint shared | varint unshared | key suffix | varint seq | varint vlen+1 (0 = tombstone) | value`,
//!   then `u32 entry_count`, then a 4-byte blake3 checksum of everything before it.
//!   Keys are prefix-compressed against the previous key of the same block.
//! * bloom filter: `u8 k | varint num_bits | bit array` (see `bloom.rs`).
//! * index: table properties, then per block `first_key | last_key | varint offset | varint len`.
//! * footer: offsets, lengths and 8-byte checksums of filter and index, format version,
//!   a checksum of the footer itself and a magic number (see `format.rs`).
//!
//! Invariants: a table never holds two entries with the same (key, seq); the first entry
//! for a key is its newest version, so a point lookup reads exactly one block; a file is
//! written under a `.tmp` name and only renamed to `<id>.sst` once complete and fsynced.

pub mod block;
pub mod bloom;
#[cfg(test)]
pub(crate) mod fault;
pub mod format;
pub mod reader;
mod search;
pub mod writer;

pub use block::EntryRef;
pub use reader::{Hit, Probe, ReadCounters, TableIter, TableReader};
pub use writer::{TableWriter, TableWriterOptions};

use std::path::{Path, PathBuf};

use crate::engine::error::{EngineError, Result};
use crate::engine::io::Io;

/// What the manifest knows about one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMeta {
    pub id: u64,
    pub level: usize,
    /// Smallest and largest user key in the table (inclusive).
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub min_seq: u64,
    pub max_seq: u64,
    pub entry_count: u64,
    pub tombstone_count: u64,
    pub file_size: u64,
}

impl TableMeta {
    /// Does this table's key range intersect `[smallest, largest]`?
    pub fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest.as_slice() <= largest && smallest <= self.largest.as_slice()
    }

    pub fn may_contain_key(&self, key: &[u8]) -> bool {
        self.smallest.as_slice() <= key && key <= self.largest.as_slice()
    }

    /// A table of `size` bytes over `[lo, hi]` with seqs `id*10 ..= id*10+9` (tests of the
    /// version set, picker, manifest and GC).
    #[cfg(test)]
    pub fn for_test(id: u64, level: usize, lo: &str, hi: &str, size: u64) -> TableMeta {
        TableMeta {
            id,
            level,
            smallest: lo.as_bytes().to_vec(),
            largest: hi.as_bytes().to_vec(),
            min_seq: id * 10,
            max_seq: id * 10 + 9,
            entry_count: 1,
            tombstone_count: 0,
            file_size: size,
        }
    }
}

/// `<id>.sst`, zero-padded so directory listings sort by age.
pub fn table_file_name(id: u64) -> String {
    format!("{id:016}.sst")
}

pub fn table_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(table_file_name(id))
}

/// The name a table is written under until it is complete.
pub fn temp_table_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.sst.tmp"))
}

/// Parse `<id>.sst` back to its id.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".sst")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// fsync a directory so that creations, renames and deletions in it are durable.
/// Callers do this after `TableWriter::finish` and after deleting files.
pub fn fsync_dir(io: &dyn Io, dir: &Path) -> Result<()> {
    io.sync_dir(dir).map_err(|e| EngineError::io(dir, e))
}

#[cfg(test)]
mod tests;
