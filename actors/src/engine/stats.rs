//! Counters the facade exposes through `Tables::stats()` (for the admin `stats` command).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::cache::CacheStats;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelStats {
    pub tables: usize,
    pub bytes: u64,
    pub entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    pub levels: Vec<LevelStats>,
    pub flushes: u64,
    pub flush_bytes: u64,
    pub flush_micros: u64,
    pub compactions: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub compaction_micros: u64,
    pub tombstones_dropped: u64,
    /// Lookups answered "absent" by a bloom filter (a block read saved).
    pub bloom_useful: u64,
    /// Bloom "maybe"s that found nothing (false positives).
    pub bloom_useless: u64,
    /// Data blocks read from disk.
    pub block_reads: u64,
    pub cache: Option<CacheStats>,
    pub cache_hit_rate: f64,
    /// Retired tables still pinned by a reader.
    pub pinned_retired_tables: usize,
    pub files_deleted: u64,
    pub manifest_bytes: u64,
    pub poisoned: Option<String>,
}

/// Write-path counters (atomics: flush and compaction run on different threads).
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub flush_micros: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_read: AtomicU64,
    pub compaction_bytes_written: AtomicU64,
    pub compaction_micros: AtomicU64,
    pub tombstones_dropped: AtomicU64,
    pub files_deleted: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

pub(crate) fn read(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
