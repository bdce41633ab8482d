//! Versions: immutable snapshots of which tables make up each level, and the `VersionSet`
//! that derives new versions from edits and tracks when retired files may be deleted.
//!
//! Invariants of a `Version`:
//! * L0 is ordered newest first (descending table id; flushes are applied in seq order, so
//!   this is also descending seq). L0 tables may overlap each other.
//! * Each of L1..Ln is sorted by key and its tables do not overlap.
//! * For any key, a version in level i is newer than any version in level j > i.
//! * `last_flushed_seq` is the highest seq ever flushed; a flush must carry only larger seqs.
//!
//! Deletion safety: versions hold `Arc<TableMeta>`. When an edit removes a table, the set
//! keeps only a `Weak` to it; once every `Version` (and compaction task) that referenced
//! the table is dropped, the `Weak` no longer upgrades and the file may be deleted. A
//! reader that cloned the `Arc<Version>` before the compaction thus keeps its files alive.

use std::sync::{Arc, Weak};

use crate::engine::sstable::TableMeta;

pub const DEFAULT_NUM_LEVELS: usize = 7;

/// One change to the table set. A batch of edits is applied (and logged) atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Add a table at `meta.level`.
    AddTable(TableMeta),
    /// Remove tables (compaction inputs).
    RemoveTables { ids: Vec<u64> },
    /// WAL segments `<= segment` are fully captured by tables and may be deleted.
    RetireWal { segment: u64 },
    /// Id and seq watermarks (written in snapshots; both only ever grow).
    NextIds {
        next_table_id: u64,
        last_flushed_seq: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Version {
    levels: Vec<Vec<Arc<TableMeta>>>,
    retired_wal: Option<u64>,
    next_table_id: u64,
    last_flushed_seq: u64,
}

impl Version {
    pub fn empty(num_levels: usize) -> Self {
        Version {
            levels: vec![Vec::new(); num_levels.max(2)],
            retired_wal: None,
            next_table_id: 1,
            last_flushed_seq: 0,
        }
    }

    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }

    pub fn level(&self, level: usize) -> &[Arc<TableMeta>] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    pub fn retired_wal(&self) -> Option<u64> {
        self.retired_wal
    }

    pub fn next_table_id(&self) -> u64 {
        self.next_table_id
    }

    pub fn last_flushed_seq(&self) -> u64 {
        self.last_flushed_seq
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableMeta>> {
        self.levels.iter().flatten()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.tables().any(|t| t.id == id)
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.level(level).iter().map(|t| t.file_size).sum()
    }

    /// Tables of `level` whose range intersects `[smallest, largest]`, in level order.
    pub fn overlapping(
        &self,
        level: usize,
        smallest: &[u8],
        largest: &[u8],
    ) -> Vec<Arc<TableMeta>> {
        self.level(level)
            .iter()
            .filter(|t| t.overlaps(smallest, largest))
            .cloned()
            .collect()
    }

    /// The table of a sorted level (>= 1) whose range holds `key`, found by binary search.
    pub fn table_for_key(&self, level: usize, key: &[u8]) -> Option<&Arc<TableMeta>> {
        let l = self.level(level);
        let i = l.partition_point(|t| t.largest.as_slice() < key);
        l.get(i).filter(|t| t.smallest.as_slice() <= key)
    }

    /// Apply a batch of edits, returning the new version or why the batch is invalid.
    pub fn apply(&self, edits: &[Edit]) -> Result<Version, String> {
        let mut v = self.clone();
        let mut touched = vec![false; v.levels.len()];
        for edit in edits {
            match edit {
                Edit::AddTable(meta) => {
                    if meta.level >= v.levels.len() {
                        return Err(format!(
                            "table {} at level {} >= num levels",
                            meta.id, meta.level
                        ));
                    }
                    if v.contains(meta.id) {
                        return Err(format!("table {} added twice", meta.id));
                    }
                    if meta.smallest > meta.largest {
                        return Err(format!("table {} has smallest > largest", meta.id));
                    }
                    v.next_table_id = v.next_table_id.max(meta.id + 1);
                    if meta.level == 0 {
                        v.last_flushed_seq = v.last_flushed_seq.max(meta.max_seq);
                    }
                    v.levels[meta.level].push(Arc::new(meta.clone()));
                    touched[meta.level] = true;
                }
                Edit::RemoveTables { ids } => {
                    for id in ids {
                        let mut found = false;
                        for (lvl, tables) in v.levels.iter_mut().enumerate() {
                            if let Some(pos) = tables.iter().position(|t| t.id == *id) {
                                tables.remove(pos);
                                touched[lvl] = true;
                                found = true;
                                break;
                            }
                        }
                        if !found {
                            return Err(format!("removing table {id} which is not live"));
                        }
                    }
                }
                Edit::RetireWal { segment } => {
                    v.retired_wal = Some(v.retired_wal.map_or(*segment, |s| s.max(*segment)));
                }
                Edit::NextIds {
                    next_table_id,
                    last_flushed_seq,
                } => {
                    v.next_table_id = v.next_table_id.max(*next_table_id);
                    v.last_flushed_seq = v.last_flushed_seq.max(*last_flushed_seq);
                }
            }
        }
        for (lvl, tables) in v.levels.iter_mut().enumerate() {
            if !touched[lvl] {
                continue;
            }
            if lvl == 0 {
                tables.sort_by_key(|t| std::cmp::Reverse(t.id));
                continue;
            }
            tables.sort_by(|a, b| a.smallest.cmp(&b.smallest));
            for w in tables.windows(2) {
                if w[0].largest >= w[1].smallest {
                    return Err(format!(
                        "level {lvl}: tables {} and {} overlap",
                        w[0].id, w[1].id
                    ));
                }
            }
        }
        Ok(v)
    }

    /// Edits that rebuild this version from nothing (a manifest snapshot).
    pub fn snapshot_edits(&self) -> Vec<Edit> {
        let mut edits = vec![Edit::NextIds {
            next_table_id: self.next_table_id,
            last_flushed_seq: self.last_flushed_seq,
        }];
        if let Some(segment) = self.retired_wal {
            edits.push(Edit::RetireWal { segment });
        }
        edits.extend(self.tables().map(|t| Edit::AddTable((**t).clone())));
        edits
    }
}

/// The current version plus the tables retired from it that may still be in use.
pub struct VersionSet {
    current: Arc<Version>,
    retired: Vec<(u64, Weak<TableMeta>)>,
}

impl VersionSet {
    pub fn new(v: Version) -> Self {
        VersionSet {
            current: Arc::new(v),
            retired: Vec::new(),
        }
    }

    pub fn current(&self) -> Arc<Version> {
        self.current.clone()
    }

    /// Install the version produced by `edits`; tables it drops become retired.
    pub fn apply(&mut self, edits: &[Edit]) -> Result<Arc<Version>, String> {
        let next = Arc::new(self.current.apply(edits)?);
        for t in self.current.tables() {
            if !next.contains(t.id) {
                self.retired.push((t.id, Arc::downgrade(t)));
            }
        }
        self.current = next.clone();
        Ok(next)
    }

    /// Ids of retired tables no live version references any more. Each id is returned
    /// once; the caller must delete the file (a crash before that leaves an orphan that
    /// start-up GC removes).
    pub fn obsolete_files_ready_to_delete(&mut self) -> Vec<u64> {
        let mut ready = Vec::new();
        self.retired.retain(|(id, weak)| {
            if weak.strong_count() == 0 {
                ready.push(*id);
                false
            } else {
                true
            }
        });
        ready
    }

    /// Retired tables still pinned by some reader.
    pub fn pinned_retired(&self) -> Vec<u64> {
        self.retired
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64, level: usize, lo: &str, hi: &str, size: u64) -> TableMeta {
        TableMeta::for_test(id, level, lo, hi, size)
    }

    #[test]
    fn apply_orders_levels_and_rejects_overlap() {
        let v = Version::empty(4)
            .apply(&[
                Edit::AddTable(meta(1, 0, "a", "z", 1)),
                Edit::AddTable(meta(2, 0, "b", "c", 1)),
                Edit::AddTable(meta(4, 1, "m", "p", 1)),
                Edit::AddTable(meta(3, 1, "a", "f", 1)),
                Edit::RetireWal { segment: 7 },
            ])
            .expect("valid");
        assert_eq!(v.level(0).iter().map(|t| t.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(v.level(1).iter().map(|t| t.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(v.next_table_id(), 5);
        assert_eq!(v.last_flushed_seq(), 29);
        assert_eq!(v.retired_wal(), Some(7));
        assert_eq!(v.table_for_key(1, b"n").map(|t| t.id), Some(4));
        assert!(v.table_for_key(1, b"h").is_none());
        assert!(v.apply(&[Edit::AddTable(meta(5, 1, "e", "g", 1))]).is_err());
        assert!(v.apply(&[Edit::RemoveTables { ids: vec![99] }]).is_err());
        assert!(v.apply(&[Edit::AddTable(meta(1, 2, "a", "b", 1))]).is_err());
        let rebuilt = Version::empty(4)
            .apply(&v.snapshot_edits())
            .expect("snapshot");
        assert_eq!(rebuilt.snapshot_edits(), v.snapshot_edits());
    }

    #[test]
    fn retired_tables_are_released_only_when_no_version_holds_them() {
        let mut vs = VersionSet::new(Version::empty(4));
        vs.apply(&[Edit::AddTable(meta(1, 0, "a", "c", 1))])
            .expect("add");
        let reader_view = vs.current(); // a reader pins the version holding table 1
        vs.apply(&[
            Edit::RemoveTables { ids: vec![1] },
            Edit::AddTable(meta(2, 1, "a", "c", 1)),
        ])
        .expect("compact");
        assert!(vs.obsolete_files_ready_to_delete().is_empty());
        assert_eq!(vs.pinned_retired(), [1]);
        drop(reader_view);
        assert_eq!(vs.obsolete_files_ready_to_delete(), [1]);
        assert!(
            vs.obsolete_files_ready_to_delete().is_empty(),
            "reported once"
        );
    }
}
