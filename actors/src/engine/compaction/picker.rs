//! The pure compaction picker: `Version` in, `CompactionTask` out, no I/O.
//!
//! Scores: L0 = table count / `l0_trigger` (L0 tables overlap, so their count is what
//! costs reads); Li = bytes / budget(i). The highest score >= 1 wins. L0 compacts *all*
//! its tables into L1 -- taking only some could leave an older L0 version above a newer
//! one that moved to L1, breaking the "upper level is newer" invariant lookups rely on.
//! From Li (i >= 1) one table is chosen: the one whose overlap with Li+1 is smallest
//! relative to its own size (least write amplification), ties to the smallest key. The
//! last level is never a compaction source by size.

use std::sync::Arc;

use super::{CompactionOptions, CompactionTask};
use crate::engine::sstable::TableMeta;
use crate::engine::version::Version;

fn key_range(tables: &[Arc<TableMeta>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let lo = tables.iter().map(|t| &t.smallest).min()?;
    let hi = tables.iter().map(|t| &t.largest).max()?;
    Some((lo.clone(), hi.clone()))
}

fn task(
    version: &Version,
    level: usize,
    inputs: Vec<Arc<TableMeta>>,
    score: f64,
) -> Option<CompactionTask> {
    let (lo, hi) = key_range(&inputs)?;
    let output_level = level + 1;
    Some(CompactionTask {
        input_level: level,
        output_level,
        overlapping: version.overlapping(output_level, &lo, &hi),
        inputs,
        score,
    })
}

/// Score of each level that can be a compaction source (all but the last).
pub fn level_scores(version: &Version, opts: &CompactionOptions) -> Vec<f64> {
    (0..version.num_levels() - 1)
        .map(|level| {
            if level == 0 {
                version.level(0).len() as f64 / opts.l0_trigger.max(1) as f64
            } else {
                version.level_bytes(level) as f64 / opts.max_bytes_for_level(level).max(1) as f64
            }
        })
        .collect()
}

/// The most urgent compaction, if any level is over its budget.
pub fn pick(version: &Version, opts: &CompactionOptions) -> Option<CompactionTask> {
    let scores = level_scores(version, opts);
    let (level, &score) = scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
    if score < 1.0 {
        return None;
    }
    if level == 0 {
        return task(version, 0, version.level(0).to_vec(), score);
    }
    let next = level + 1;
    let best = version.level(level).iter().min_by(|a, b| {
        let ratio = |t: &TableMeta| {
            let overlap: u64 = version
                .overlapping(next, &t.smallest, &t.largest)
                .iter()
                .map(|o| o.file_size)
                .sum();
            overlap as f64 / t.file_size.max(1) as f64
        };
        ratio(a)
            .total_cmp(&ratio(b))
            .then(a.smallest.cmp(&b.smallest))
    })?;
    task(version, level, vec![best.clone()], score)
}

/// Force the whole of `level` down one level (manual/admin compaction), if non-empty and
/// not the last level.
pub fn pick_level(version: &Version, level: usize) -> Option<CompactionTask> {
    if level + 1 >= version.num_levels() {
        return None;
    }
    task(version, level, version.level(level).to_vec(), 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::version::Edit;

    fn t(id: u64, level: usize, lo: &str, hi: &str, size: u64) -> Edit {
        Edit::AddTable(TableMeta::for_test(id, level, lo, hi, size))
    }

    fn version(edits: &[Edit]) -> Version {
        Version::empty(4)
            .apply(edits)
            .expect("valid synthetic version")
    }

    fn ids(ts: &[Arc<TableMeta>]) -> Vec<u64> {
        ts.iter().map(|t| t.id).collect()
    }

    fn opts() -> CompactionOptions {
        CompactionOptions {
            l0_trigger: 4,
            level_size_ratio: 10,
            target_table_bytes: 100,
            l1_max_bytes: 1000,
        }
    }

    #[test]
    fn nothing_to_do_below_triggers() {
        let v = version(&[
            t(1, 0, "a", "b", 10),
            t(2, 0, "a", "b", 10),
            t(3, 1, "a", "z", 999),
        ]);
        assert!(pick(&v, &opts()).is_none());
    }

    #[test]
    fn l0_trigger_takes_all_l0_and_overlapping_l1() {
        let v = version(&[
            t(1, 0, "c", "d", 10),
            t(2, 0, "b", "c", 10),
            t(3, 0, "e", "f", 10),
            t(4, 0, "d", "e", 10),
            t(10, 1, "a", "a5", 100),
            t(11, 1, "b5", "c5", 100),
            t(12, 1, "f", "g", 100),
            t(13, 1, "x", "y", 100),
        ]);
        let task = pick(&v, &opts()).expect("L0 at trigger");
        assert_eq!((task.input_level, task.output_level), (0, 1));
        assert_eq!(ids(&task.inputs), [4, 3, 2, 1]);
        assert_eq!(ids(&task.overlapping), [11, 12]);
        assert_eq!(task.input_ids().len(), 6);
    }

    #[test]
    fn oversized_level_picks_least_overlapping_table() {
        let v = version(&[
            t(1, 1, "a", "c", 600),
            t(2, 1, "d", "f", 600),
            t(3, 1, "g", "i", 600),
            t(10, 2, "a", "b", 5000),
            t(11, 2, "e", "e", 100),
            t(12, 2, "g", "h", 400),
        ]);
        let task = pick(&v, &opts()).expect("L1 over budget (1800 > 1000)");
        assert_eq!((task.input_level, task.output_level), (1, 2));
        assert_eq!(
            ids(&task.inputs),
            [2],
            "table 2 has the smallest overlap ratio"
        );
        assert_eq!(ids(&task.overlapping), [11]);
        assert!((task.score - 1.8).abs() < 1e-9);
    }

    #[test]
    fn highest_score_wins_and_last_level_is_never_a_source() {
        let o = opts();
        assert_eq!(o.max_bytes_for_level(3), 100_000);
        // L2 at 3x budget beats L1 at 1.5x; L3 (last) is huge but never picked.
        let v = version(&[
            t(1, 1, "a", "b", 1500),
            t(2, 2, "a", "b", 30_000),
            t(3, 3, "a", "z", 10_000_000),
        ]);
        let task = pick(&v, &o).expect("pick");
        assert_eq!(task.input_level, 2);
        assert_eq!(ids(&task.overlapping), [3]);
        let v = version(&[t(3, 3, "a", "z", 10_000_000)]);
        assert!(pick(&v, &o).is_none());
    }

    #[test]
    fn manual_pick_takes_whole_level() {
        let v = version(&[
            t(1, 1, "a", "b", 1),
            t(2, 1, "c", "d", 1),
            t(3, 2, "b", "c", 1),
        ]);
        let task = pick_level(&v, 1).expect("non-empty");
        assert_eq!(
            (ids(&task.inputs), ids(&task.overlapping)),
            (vec![1, 2], vec![3])
        );
        assert!(pick_level(&v, 0).is_none(), "empty level");
        assert!(pick_level(&v, 3).is_none(), "last level");
    }
}
