//! The storage engine's error type.
//!
//! Every variant says what happened to on-disk state. Corruption always names the file and
//! the section/offset where it was found, so an operator can tell a torn manifest tail from
//! a rotten data block without reading code. The engine never returns wrong data in place
//! of one of these errors, and never panics on bad bytes.

use std::io;
use std::path::PathBuf;

/// Result alias used across `crate::engine`.
pub type Result<T> = std::result::Result<T, EngineError>;

/// Which part of a file a corruption was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// A table's fixed-size footer.
    Footer,
    /// A table's sparse index (including table properties).
    Index,
    /// A table's bloom filter.
    Filter,
    /// One data block of a table.
    DataBlock,
    /// A record of the MANIFEST log.
    ManifestRecord,
    /// The MANIFEST file header.
    ManifestHeader,
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Section::Footer => "footer",
            Section::Index => "index",
            Section::Filter => "bloom filter",
            Section::DataBlock => "data block",
            Section::ManifestRecord => "manifest record",
            Section::ManifestHeader => "manifest header",
        };
        f.write_str(s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An operating-system I/O call failed. State: whatever the call was doing may be
    /// partially done; the facade poisons itself if this happened on a durability step
    /// (directory fsync before a commit, MANIFEST append or rewrite). A failed write of a
    /// not yet committed table is not one: the table is removed and the facade stays
    /// writable, so the caller may retry.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Bytes on disk fail a checksum or do not decode. State unchanged: nothing was read
    /// into the engine from the bad section.
    #[error("corruption in {} ({section} at offset {offset}): {detail}", path.display())]
    Corruption {
        path: PathBuf,
        section: Section,
        offset: u64,
        detail: String,
    },

    /// An earlier durability failure (fsync, manifest append) poisoned the facade; no
    /// further writes are accepted because we no longer know what is on disk.
    #[error("storage engine is poisoned by an earlier failure: {reason}")]
    Poisoned { reason: String },

    /// The caller broke an API contract (e.g. unsorted entries). State unchanged: any
    /// partially written file was removed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A compaction task was picked from a version that has since changed (its inputs are
    /// no longer all live). State unchanged: outputs were removed; pick again.
    #[error("stale compaction task: input table {table_id} is no longer live")]
    StaleCompaction { table_id: u64 },
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        section: Section,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        EngineError::Corruption {
            path: path.into(),
            section,
            offset,
            detail: detail.into(),
        }
    }

    /// True for corruption errors (useful for callers deciding whether to quarantine).
    pub fn is_corruption(&self) -> bool {
        matches!(self, EngineError::Corruption { .. })
    }
}
