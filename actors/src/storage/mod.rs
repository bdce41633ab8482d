//! Assembly of the storage actors: opens the engine and the WAL (blocking, at start-up) and
//! starts the Memtable, Flusher, Compactor and GC actors wired to each other.
//!
//! Owns nothing at run time; [`Storage`] is the bundle of addresses and shared counters
//! that the node, the admin surface and the engine benchmark hold.
//!
//! Recovery, in order (all before any actor exists):
//! 1. `Tables::open`: replay the MANIFEST (dropping a torn tail), delete orphan files no edit
//!    references (leftovers of interrupted flushes and compactions), open every live table
//!    and check its footer, index and filter.
//! 2. `MemtableActor::open`: delete WAL segments `<=` the manifest's retired watermark,
//!    replay the rest into the active memtable (skipping records at or below the last
//!    flushed sequence number), start the WAL writer on the last segment.

pub mod actor_id;

use crate::compactor::{Compactor, CompactorStats};
use crate::engine::compaction::CompactionOptions;
use crate::engine::{Tables, TablesOptions};
use crate::flusher::{Flusher, FlusherStats};
use crate::gc::Gc;
use crate::memtable::{self, wal, MemtableActor, MemtableConfig, OpenReport};
use crate::stats::Registry;
use actix::prelude::*;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Engine settings beyond the memtable's (see `[storage]` in the node config).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub block_cache_bytes: usize,
    /// 0 = unlimited.
    pub compaction_bytes_per_sec: u64,
    pub l0_compaction_trigger: usize,
    /// Flushes wait while L0 holds this many tables (writes then stall).
    pub l0_stop_tables: usize,
    pub level1_bytes: u64,
    pub target_table_bytes: u64,
}

impl EngineConfig {
    pub fn tables_options(&self) -> TablesOptions {
        TablesOptions {
            block_cache_bytes: self.block_cache_bytes,
            compaction: CompactionOptions {
                l0_trigger: self.l0_compaction_trigger,
                level_size_ratio: 10,
                target_table_bytes: self.target_table_bytes,
                l1_max_bytes: self.level1_bytes,
            },
            write_bytes_per_sec: (self.compaction_bytes_per_sec > 0)
                .then_some(self.compaction_bytes_per_sec),
            ..TablesOptions::default()
        }
    }
}

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the tables: {0}")]
    Engine(#[from] crate::engine::EngineError),
    /// Transparent: a WAL error already names its file, and repeating it (as `{0}` plus the
    /// source chain would) doubles a long corruption message.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

/// Storage recovered from disk, not yet running.
pub struct Opened {
    memtable: MemtableActor,
    tables: Arc<Tables>,
    l0_stop_tables: usize,
    pub report: OpenReport,
}

/// Recovers the engine and the WAL under `config.data_dir`. Blocking: call at start-up.
pub fn open(
    config: MemtableConfig,
    engine: &EngineConfig,
    registry: &Registry,
) -> Result<Opened, OpenError> {
    open_with(config, engine, engine.tables_options(), registry)
}

/// [`open`] with the tables' options given (the crash tests pass a recording `io` and a
/// small MANIFEST rewrite threshold).
pub fn open_with(
    config: MemtableConfig,
    engine: &EngineConfig,
    tables_options: TablesOptions,
    registry: &Registry,
) -> Result<Opened, OpenError> {
    let (tables, rec) = Tables::open(&memtable::tables_dir(&config.data_dir), tables_options)?;
    for path in &rec.orphans_deleted {
        log::info!(
            "start-up GC deleted {} (left by an interrupted flush or compaction)",
            path.display()
        );
    }
    if rec.manifest_torn_tail_bytes > 0 {
        log::warn!(
            "MANIFEST: dropped a torn tail of {} bytes (crash during an edit)",
            rec.manifest_torn_tail_bytes
        );
    }
    let tables = Arc::new(tables);
    let (memtable, mut report) = MemtableActor::open(
        config,
        tables.clone(),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        registry.actor("memtable"),
    )?;
    report.tables = rec.tables;
    report.orphans_deleted = rec.orphans_deleted.len();
    Ok(Opened {
        memtable,
        tables,
        l0_stop_tables: engine.l0_stop_tables,
        report,
    })
}

/// The running storage actors.
#[derive(Clone)]
pub struct Storage {
    pub memtable: Addr<MemtableActor>,
    /// Gets from memory and the block cache without the Memtable's mailbox.
    pub local_reads: crate::memtable::view::LocalReads,
    pub compactor: Addr<Compactor>,
    pub gc: Addr<Gc>,
    pub tables: Arc<Tables>,
    /// The node's poison flag (WAL and engine).
    pub health: wal::Health,
    pub flusher_stats: Arc<FlusherStats>,
    pub compactor_stats: Arc<CompactorStats>,
    pub gc_deleted: Arc<AtomicU64>,
    pub orphans_deleted_at_start: usize,
}

impl Storage {
    /// One line per kind of background work that is failing now (`admin status`).
    pub fn background_failures(&self) -> Vec<String> {
        [
            self.flusher_stats.snapshot().failures.failing("flush"),
            self.compactor_stats
                .snapshot()
                .failures
                .failing("compaction"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Opened {
    /// What to wait on for the WAL writer thread to end (once; before `start`), so a
    /// restart knows the log's files are closed before it reopens the directory.
    pub fn take_wal_exit(&mut self) -> Option<memtable::WalThreadExit> {
        self.memtable.take_wal_exit()
    }

    /// Starts the Memtable on `storage` and the Flusher, Compactor and GC on `background`
    /// (their disk work runs on the blocking pool, so they only need an event loop).
    pub fn start(
        self,
        storage: &ArbiterHandle,
        background: &ArbiterHandle,
        registry: &Registry,
    ) -> Storage {
        let Opened {
            mut memtable,
            tables,
            l0_stop_tables,
            report,
        } = self;
        let wal_dir = memtable::wal_dir(memtable.data_dir());
        let health = memtable.health();
        let gc = Gc::new(tables.clone(), registry.actor("gc"));
        let gc_deleted = gc.deleted_counter();
        let gc = Gc::start_in_arbiter(background, move |_| gc);
        let compactor = Compactor::new(
            tables.clone(),
            gc.clone().recipient(),
            health.clone(),
            registry.actor("compactor"),
        );
        let compactor_stats = compactor.stats();
        let compactor = Compactor::start_in_arbiter(background, move |_| compactor);
        let flusher = Flusher::new(
            tables.clone(),
            wal_dir,
            Some(compactor.clone().recipient()),
            registry.actor("flusher"),
            l0_stop_tables,
        );
        let flusher_stats = flusher.stats();
        let flusher = Flusher::start_in_arbiter(background, move |_| flusher);
        memtable.set_flusher(flusher.recipient());
        let local_reads = memtable.local_reads();
        let memtable = MemtableActor::start_in_arbiter(storage, move |_| memtable);
        Storage {
            memtable,
            local_reads,
            compactor,
            gc,
            tables,
            health,
            flusher_stats,
            compactor_stats,
            gc_deleted,
            orphans_deleted_at_start: report.orphans_deleted,
        }
    }
}

#[cfg(test)]
mod powerloss_tests;
#[cfg(test)]
mod tests;
