//! Leveled compaction: a pure picker (`picker.rs`) decides *what* to compact from a
//! `Version`; the merge executor (`merge.rs`) does the I/O and returns the manifest edit.
//! Neither installs anything: the facade applies the edit, so a crash mid-merge leaves
//! only orphan output files for start-up GC.

pub mod merge;
pub mod picker;

pub use merge::{execute, AlwaysSafe, MergeOutcome, MergeParams, TombstonePolicy};
pub use picker::{pick, pick_level};

use std::sync::Arc;

use crate::engine::sstable::TableMeta;

#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Compact L0 into L1 once it holds this many tables.
    pub l0_trigger: usize,
    /// Each level may hold this many times more bytes than the one above.
    pub level_size_ratio: u64,
    /// Output tables are cut once they reach this size.
    pub target_table_bytes: u64,
    /// Size budget of L1.
    pub l1_max_bytes: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            l0_trigger: 4,
            level_size_ratio: 10,
            target_table_bytes: 2 << 20,
            l1_max_bytes: 10 << 20,
        }
    }
}

impl CompactionOptions {
    /// Byte budget of `level` (>= 1): l1_max_bytes * ratio^(level-1).
    pub fn max_bytes_for_level(&self, level: usize) -> u64 {
        let mut b = self.l1_max_bytes;
        for _ in 1..level {
            b = b.saturating_mul(self.level_size_ratio);
        }
        b
    }
}

/// One unit of compaction work.
#[derive(Debug, Clone)]
pub struct CompactionTask {
    pub input_level: usize,
    pub output_level: usize,
    /// Tables taken from `input_level` (L0: newest first; else key order).
    pub inputs: Vec<Arc<TableMeta>>,
    /// Tables of `output_level` overlapping the inputs' key range (key order).
    pub overlapping: Vec<Arc<TableMeta>>,
    /// Why it was picked: level size / budget (>= 1.0 when picked by size).
    pub score: f64,
}

impl CompactionTask {
    pub fn input_ids(&self) -> Vec<u64> {
        self.inputs
            .iter()
            .chain(&self.overlapping)
            .map(|t| t.id)
            .collect()
    }

    pub fn input_bytes(&self) -> u64 {
        self.inputs
            .iter()
            .chain(&self.overlapping)
            .map(|t| t.file_size)
            .sum()
    }
}
