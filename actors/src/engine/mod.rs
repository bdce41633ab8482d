//! The storage engine's library core: everything of the LSM tree below the memtable/WAL.
//! Plain synchronous Rust with `std::fs`; the actors call it on blocking threads.
//!
//! Layout (bottom-up):
//! * `entry` -- the `Entry` record shared with the memtable; `error` -- `EngineError`.
//! * `codec` -- varints and checksums used by every format.
//! * `sstable/` -- table file format, `TableWriter`, `TableReader`, bloom filter.
//! * `cache` -- byte-bounded LRU block cache.
//! * `version` -- immutable `Version`s, edits, and the `VersionSet` that knows when a
//!   retired file is unpinned.
//! * `manifest` -- the append-only, checksummed log of edits (+ snapshot rewrite).
//! * `read` -- point lookup across a version and the merged range iterator.
//! * `compaction/` -- pure leveled picker and the merge executor; `rate_limit` throttles
//!   background writes.
//! * `io` -- the `Io` trait every mutating file-system call goes through (crash tests
//!   record it).
//! * `gc` -- orphan detection at start-up and safe deletion of retired files.
//! * `tables` -- the `Tables` facade tying it together (open, flush, get, range, compact,
//!   collect_garbage, stats).

pub mod cache;
pub mod codec;
pub mod compaction;
pub mod entry;
pub mod error;
pub mod gc;
pub mod io;
pub mod manifest;
pub mod rate_limit;
pub mod read;
pub mod sstable;
pub mod stats;
pub mod tables;
pub mod version;

pub use entry::Entry;
pub use error::{EngineError, Result};
pub use tables::{CompactionReport, RangeIter, Recovered, Tables, TablesOptions};

#[cfg(test)]
mod tests;
