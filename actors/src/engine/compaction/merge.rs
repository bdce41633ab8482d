//! The merge executor: reads a task's input tables, writes the merged result as new
//! tables at the output level, and returns the edit that swaps inputs for outputs.
//!
//! What survives a merge:
//! * Only the newest version of each key (no snapshots are served from tables, so older
//!   versions are garbage once a newer one exists in the same merge).
//! * A tombstone is dropped only if (a) no level below the output level has a table whose
//!   key range covers the key -- otherwise an older value could be resurrected there once
//!   the tombstone is gone -- and (b) the `TombstonePolicy` agrees. (a) is enough locally
//!   because every other place an older version could live is part of this merge: all of
//!   the input level's tables covering the key, and every overlapping output-level table.
//!   (b) is for replication: a tombstone must outlive the chance that a peer that missed
//!   the delete re-sends the old value.
//!
//! Outputs are cut at `target_table_bytes`; each output is fsynced by its writer. The
//! caller fsyncs the directory before logging the edit. On error every output written so
//! far is removed and the version is unchanged.

use std::path::Path;
use std::sync::Arc;

use super::CompactionTask;
use crate::engine::error::Result;
use crate::engine::io::Io;
use crate::engine::rate_limit::RateLimiter;
use crate::engine::read::{EntryIter, LevelIter, MergeIter, TableSource};
use crate::engine::sstable::{table_path, TableMeta, TableWriter, TableWriterOptions};
use crate::engine::version::{Edit, Version};

/// Decides whether a tombstone that is locally droppable may really go.
pub trait TombstonePolicy: Send + Sync {
    fn may_drop(&self, key: &[u8], seq: u64) -> bool;
}

/// Single-node default: a locally droppable tombstone is always safe to drop.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysSafe;

impl TombstonePolicy for AlwaysSafe {
    fn may_drop(&self, _key: &[u8], _seq: u64) -> bool {
        true
    }
}

pub struct MergeParams<'a> {
    pub io: &'a Arc<dyn Io>,
    pub dir: &'a Path,
    /// The version the task was picked from; used for the lower-level tombstone check.
    pub version: &'a Version,
    pub tables: &'a dyn TableSource,
    pub writer_opts: TableWriterOptions,
    pub target_table_bytes: u64,
    pub policy: &'a dyn TombstonePolicy,
    pub limiter: Option<Arc<RateLimiter>>,
}

#[derive(Debug, Clone, Default)]
pub struct MergeOutcome {
    /// `RemoveTables(inputs)` then one `AddTable` per output; apply atomically.
    pub edits: Vec<Edit>,
    pub outputs: Vec<TableMeta>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub entries_written: u64,
    pub tombstones_dropped: u64,
    pub shadowed_dropped: u64,
}

/// Could a level below `output_level` hold a version of `key`?
fn older_version_possible(version: &Version, output_level: usize, key: &[u8]) -> bool {
    (output_level + 1..version.num_levels()).any(|l| version.table_for_key(l, key).is_some())
}

pub fn execute(
    task: &CompactionTask,
    p: &MergeParams<'_>,
    next_id: &mut dyn FnMut() -> u64,
) -> Result<MergeOutcome> {
    let mut out = MergeOutcome::default();
    let result = merge_into(task, p, next_id, &mut out);
    if let Err(e) = result {
        for t in &out.outputs {
            let path = table_path(p.dir, t.id);
            if let Err(rm) = p.io.remove_file(&path) {
                log::warn!("compaction cleanup: cannot remove {}: {rm}", path.display());
            }
        }
        return Err(e);
    }
    out.edits.push(Edit::RemoveTables {
        ids: task.input_ids(),
    });
    out.edits
        .extend(out.outputs.iter().cloned().map(Edit::AddTable));
    Ok(out)
}

fn merge_into(
    task: &CompactionTask,
    p: &MergeParams<'_>,
    next_id: &mut dyn FnMut() -> u64,
    out: &mut MergeOutcome,
) -> Result<()> {
    // Sources newest first: L0 tables individually, or the input level as one run, then
    // the overlapping output-level run.
    let mut sources: Vec<EntryIter> = Vec::new();
    let open = |ts: &[Arc<TableMeta>]| -> Result<Vec<_>> {
        ts.iter().map(|t| p.tables.table(t.id)).collect()
    };
    if task.input_level == 0 {
        for r in open(&task.inputs)? {
            sources.push(Box::new(r.iter_range(None, None)));
        }
    } else {
        sources.push(Box::new(LevelIter::new(open(&task.inputs)?, None, None)));
    }
    if !task.overlapping.is_empty() {
        sources.push(Box::new(LevelIter::new(
            open(&task.overlapping)?,
            None,
            None,
        )));
    }
    out.bytes_read = task.input_bytes();

    let mut merged = MergeIter::new(sources, true);
    let mut writer: Option<TableWriter> = None;
    for item in merged.by_ref() {
        let e = item?;
        if e.is_tombstone()
            && !older_version_possible(p.version, task.output_level, &e.key)
            && p.policy.may_drop(&e.key, e.seq)
        {
            out.tombstones_dropped += 1;
            continue;
        }
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(TableWriter::create(
                p.io.clone(),
                p.dir,
                next_id(),
                task.output_level,
                p.writer_opts.clone(),
                p.limiter.clone(),
            )?),
        };
        w.add(&e)?;
        out.entries_written += 1;
        if w.estimated_size() >= p.target_table_bytes {
            finish(writer.take(), out)?;
        }
    }
    out.shadowed_dropped = merged.shadowed_dropped;
    finish(writer.take(), out)
}

fn finish(writer: Option<TableWriter>, out: &mut MergeOutcome) -> Result<()> {
    if let Some(w) = writer {
        let meta = w.finish()?;
        out.bytes_written += meta.file_size;
        out.outputs.push(meta);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
