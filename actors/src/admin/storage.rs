//! Admin commands of the storage engine: `stats`, `flush`, `compact`, `gc`.
//!
//! `stats` gathers each storage actor's counters: the Memtable's (asked by message), the
//! Flusher's, Compactor's and GC's (shared atomics) and the engine's (levels, bloom filter,
//! block cache; read from `Tables::stats`, which touches memory only, never the disk).
//! `flush`, `compact` and `gc` ask the owning actor and reply when the work is done.

use super::{err, ok};
use crate::compactor::{CompactAll, CompactorSnapshot};
use crate::flusher::FlusherSnapshot;
use crate::gc::CollectNow;
use crate::memtable::{GetMemtableStats, MemtableStats, Seal};
use crate::storage::Storage;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use troupe_protocol::ErrorCode;

#[derive(Serialize)]
struct Level {
    level: usize,
    tables: usize,
    bytes: u64,
    entries: u64,
}

#[derive(Serialize)]
struct EngineReply {
    levels: Vec<Level>,
    flushes: u64,
    flush_bytes: u64,
    flush_micros: u64,
    compactions: u64,
    compaction_bytes_read: u64,
    compaction_bytes_written: u64,
    compaction_micros: u64,
    tombstones_dropped: u64,
    bloom_useful: u64,
    bloom_useless: u64,
    block_reads: u64,
    block_cache_hits: u64,
    block_cache_misses: u64,
    block_cache_bytes: u64,
    block_cache_capacity: u64,
    block_cache_hit_rate: f64,
    pinned_retired_tables: usize,
    manifest_bytes: u64,
    poisoned: Option<String>,
}

#[derive(Serialize)]
struct GcReply {
    tables_deleted: u64,
    orphans_deleted_at_start: usize,
}

#[derive(Serialize)]
struct StatsReply {
    memtable: MemtableStats,
    flusher: FlusherSnapshot,
    compactor: CompactorSnapshot,
    gc: GcReply,
    engine: EngineReply,
    /// Sections of other actors (tombstones, ...), by name.
    #[serde(flatten)]
    sections:
        std::collections::BTreeMap<&'static str, std::collections::BTreeMap<&'static str, u64>>,
    /// Hinted handoff's counters, when the node runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    hints: Option<crate::hints::HintSnapshot>,
}

fn engine_reply(s: &Storage) -> EngineReply {
    let e = s.tables.stats();
    let cache = e.cache.unwrap_or_default();
    EngineReply {
        levels: e
            .levels
            .iter()
            .enumerate()
            .map(|(level, l)| Level {
                level,
                tables: l.tables,
                bytes: l.bytes,
                entries: l.entries,
            })
            .collect(),
        flushes: e.flushes,
        flush_bytes: e.flush_bytes,
        flush_micros: e.flush_micros,
        compactions: e.compactions,
        compaction_bytes_read: e.compaction_bytes_read,
        compaction_bytes_written: e.compaction_bytes_written,
        compaction_micros: e.compaction_micros,
        tombstones_dropped: e.tombstones_dropped,
        bloom_useful: e.bloom_useful,
        bloom_useless: e.bloom_useless,
        block_reads: e.block_reads,
        block_cache_hits: cache.hits,
        block_cache_misses: cache.misses,
        block_cache_bytes: cache.used_bytes,
        block_cache_capacity: cache.capacity_bytes,
        block_cache_hit_rate: e.cache_hit_rate,
        pinned_retired_tables: e.pinned_retired_tables,
        manifest_bytes: e.manifest_bytes,
        poisoned: e.poisoned,
    }
}

#[derive(Serialize)]
struct Compacted {
    compactions: u64,
}

#[derive(Serialize)]
struct Collected {
    tables_deleted: Vec<u64>,
}

#[derive(Serialize)]
struct Flushed {
    flushed: bool,
}

/// Runs one storage command; `None` if `op` is not one.
pub(super) fn command(
    s: &Storage,
    id: u64,
    op: &str,
    sections: std::collections::BTreeMap<
        &'static str,
        std::collections::BTreeMap<&'static str, u64>,
    >,
    hints: Option<crate::hints::HintSnapshot>,
) -> Option<Pin<Box<dyn Future<Output = Vec<u8>>>>> {
    let s = s.clone();
    Some(match op {
        "stats" => Box::pin(async move {
            match s.memtable.send(GetMemtableStats).await {
                Ok(memtable) => ok(
                    id,
                    StatsReply {
                        memtable,
                        flusher: s.flusher_stats.snapshot(),
                        compactor: s.compactor_stats.snapshot(),
                        gc: GcReply {
                            tables_deleted: s.gc_deleted.load(Ordering::Relaxed),
                            orphans_deleted_at_start: s.orphans_deleted_at_start,
                        },
                        // The engine's state lock is held across manifest fsyncs: read it on
                        // the blocking pool, not on the admin event loop.
                        engine: match tokio::task::spawn_blocking({
                            let s = s.clone();
                            move || engine_reply(&s)
                        })
                        .await
                        {
                            Ok(e) => e,
                            Err(e) => return err(id, ErrorCode::Internal, e.to_string()),
                        },
                        sections,
                        hints,
                    },
                ),
                Err(e) => err(id, ErrorCode::Internal, e.to_string()),
            }
        }),
        "flush" => Box::pin(async move {
            match s.memtable.send(Seal).await {
                Ok(Ok(())) => ok(id, Flushed { flushed: true }),
                Ok(Err(e)) => err(id, ErrorCode::Internal, e.to_string()),
                Err(e) => err(id, ErrorCode::Internal, e.to_string()),
            }
        }),
        "compact" => Box::pin(async move {
            match s.compactor.send(CompactAll).await {
                Ok(Ok(compactions)) => ok(id, Compacted { compactions }),
                Ok(Err(e)) => err(id, ErrorCode::Internal, e),
                Err(e) => err(id, ErrorCode::Internal, e.to_string()),
            }
        }),
        "gc" => Box::pin(async move {
            match s.gc.send(CollectNow).await {
                Ok(Ok(tables_deleted)) => ok(id, Collected { tables_deleted }),
                Ok(Err(e)) => err(id, ErrorCode::Internal, e),
                Err(e) => err(id, ErrorCode::Internal, e.to_string()),
            }
        }),
        _ => return None,
    })
}
