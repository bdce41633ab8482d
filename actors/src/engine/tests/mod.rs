//! Scenario tests of the `Tables` facade: one story per file, close-then-reopen in a
//! temp dir. Shared helpers live here.

mod facade;
mod failures;
mod model;
mod space;

use std::path::Path;

use super::compaction::CompactionOptions;
use super::read::vec_source;
use super::sstable::TableWriterOptions;
use super::{Entry, Tables, TablesOptions};

/// Small everything, so a few hundred entries exercise many blocks, tables and levels.
pub(super) fn small_opts() -> TablesOptions {
    TablesOptions {
        writer: TableWriterOptions {
            block_size: 256,
            ..TableWriterOptions::default()
        },
        block_cache_bytes: 16 << 10,
        compaction: CompactionOptions {
            l0_trigger: 2,
            level_size_ratio: 4,
            target_table_bytes: 2 << 10,
            l1_max_bytes: 4 << 10,
        },
        num_levels: 4,
        manifest_rewrite_bytes: 1 << 10,
        ..TablesOptions::default()
    }
}

pub(super) fn open(dir: &Path, opts: &TablesOptions) -> Tables {
    Tables::open(dir, opts.clone()).expect("open").0
}

/// Run automatic compactions until the picker is satisfied, then GC.
pub(super) fn compact_until_quiet(t: &Tables) {
    for _ in 0..100 {
        let Some(task) = t.pick_compaction() else {
            break;
        };
        t.run_compaction(&task).expect("compaction");
    }
    t.collect_garbage().expect("gc");
}

/// User-visible scan of the whole key space with `mem` as the memtable.
pub(super) fn scan(t: &Tables, mem: Vec<Entry>) -> Vec<(Vec<u8>, Vec<u8>)> {
    t.range(None, None, vec![vec_source(mem)])
        .expect("range")
        .map(|e| {
            let e = e.expect("entry");
            (e.key, e.value.expect("tombstones are hidden"))
        })
        .collect()
}

pub(super) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}
