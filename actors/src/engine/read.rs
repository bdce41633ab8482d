//! The read path over a `Version`: point lookups and merged range iteration.
//!
//! Point lookup order is L0 newest first, then L1, L2, ...; the first hit wins. That is
//! correct because of the version invariants (see `version.rs`): L0 tables are ordered by
//! seq, and every version in level i is newer than any version of the same key below it.
//! Within a table the first entry for a key is its newest. Each table costs a bloom probe
//! and, only on a "maybe", one data block read.
//!
//! `MergeIter` merges any number of sorted sources (memtables first, then tables) into the
//! newest version of each key, in key order. Ties on (key, seq) go to the earlier source,
//! so callers list sources newest first. Tombstones are hidden from users but may be kept
//! for compaction, which must carry them down to shadow older values.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::engine::entry::Entry;
use crate::engine::error::{EngineError, Result};
use crate::engine::sstable::bloom::key_hash;
use smallvec::SmallVec;

use crate::engine::sstable::{EntryRef, Hit, Probe, TableIter, TableMeta, TableReader};
use crate::engine::version::Version;

/// A sorted stream of entries (key asc, seq desc) from one source.
pub type EntryIter = Box<dyn Iterator<Item = Result<Entry>> + Send>;

/// Where the read path gets an open reader for a live table id.
pub trait TableSource {
    fn table(&self, id: u64) -> Result<Arc<TableReader>>;
}

/// A plain map of open readers (tests and one-off tools).
impl TableSource for HashMap<u64, Arc<TableReader>> {
    fn table(&self, id: u64) -> Result<Arc<TableReader>> {
        self.get(&id).cloned().ok_or_else(|| {
            EngineError::InvalidArgument(format!("BUG: live table {id} has no open reader"))
        })
    }
}

/// Newest entry for `key` in `version` (a tombstone is returned as such, not hidden).
pub fn get(version: &Version, tables: &dyn TableSource, key: &[u8]) -> Result<Option<Entry>> {
    let hash = key_hash(key);
    for t in version.level(0) {
        if t.may_contain_key(key) {
            if let Some(e) = tables.table(t.id)?.get_hashed(key, hash)? {
                return Ok(Some(e));
            }
        }
    }
    for level in 1..version.num_levels() {
        if let Some(t) = version.table_for_key(level, key) {
            if let Some(e) = tables.table(t.id)?.get_hashed(key, hash)? {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// [`get`] from memory alone (bloom filters and the block cache): `None` when it would
/// need to read a data block from a file, so the caller reads off the event loop instead
/// (and that read counts the lookup). Counters are bumped only for an answer given here.
/// `f` gets the newest entry where it lies in its cached block (no copy); `hash` is the
/// key's [`key_hash`], which the caller may already hold.
pub fn get_cached_with<R>(
    version: &Version,
    tables: &dyn TableSource,
    key: &[u8],
    hash: (u64, u64),
    f: impl FnOnce(Option<EntryRef<'_>>) -> R,
) -> Option<Result<R>> {
    // One probe per level at most, and L0 is kept short by compaction: inline, no heap.
    let mut probed: SmallVec<[(Arc<TableReader>, Probe); 8]> = SmallVec::new();
    let candidates = version
        .level(0)
        .iter()
        .filter(|t| t.may_contain_key(key))
        .chain((1..version.num_levels()).filter_map(|level| version.table_for_key(level, key)));
    let mut hit = None;
    for t in candidates {
        let reader = match tables.table(t.id) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let (found, probe) = reader.get_cached(key, hash)?;
        probed.push((reader, probe));
        if found.is_some() {
            hit = found;
            break;
        }
    }
    for (reader, probe) in probed {
        reader.count(probe);
    }
    Some(Ok(f(hit.as_ref().map(Hit::entry))))
}

/// Sources over `version` for `[start, end)`: one per L0 table (newest first), then one
/// concatenating iterator per sorted level.
pub fn version_sources(
    version: &Version,
    tables: &dyn TableSource,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Result<Vec<EntryIter>> {
    let in_range = |t: &TableMeta| {
        start.is_none_or(|s| t.largest.as_slice() >= s)
            && end.is_none_or(|e| t.smallest.as_slice() < e)
    };
    let mut sources: Vec<EntryIter> = Vec::new();
    for t in version.level(0).iter().filter(|t| in_range(t)) {
        sources.push(Box::new(tables.table(t.id)?.iter_range(start, end)));
    }
    for level in 1..version.num_levels() {
        let readers = version
            .level(level)
            .iter()
            .filter(|t| in_range(t))
            .map(|t| tables.table(t.id))
            .collect::<Result<Vec<_>>>()?;
        if !readers.is_empty() {
            sources.push(Box::new(LevelIter::new(readers, start, end)));
        }
    }
    Ok(sources)
}

/// Walks the non-overlapping tables of one level in order, opening one table iterator at
/// a time.
pub struct LevelIter {
    tables: std::vec::IntoIter<Arc<TableReader>>,
    current: Option<TableIter>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
}

impl LevelIter {
    pub fn new(tables: Vec<Arc<TableReader>>, start: Option<&[u8]>, end: Option<&[u8]>) -> Self {
        LevelIter {
            tables: tables.into_iter(),
            current: None,
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }
}

impl Iterator for LevelIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.current {
                if let Some(item) = it.next() {
                    return Some(item);
                }
            }
            let t = self.tables.next()?;
            self.current = Some(t.iter_range(self.start.as_deref(), self.end.as_deref()));
        }
    }
}

struct HeapItem {
    entry: Entry,
    src: usize,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    /// `BinaryHeap` pops the maximum, so "greater" here means: smaller key, then larger
    /// seq, then earlier source.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .entry
            .key
            .cmp(&self.entry.key)
            .then(self.entry.seq.cmp(&other.entry.seq))
            .then(other.src.cmp(&self.src))
    }
}

/// K-way merge yielding the newest version of each key. After an `Err` it ends.
pub struct MergeIter {
    sources: Vec<EntryIter>,
    heap: BinaryHeap<HeapItem>,
    started: bool,
    failed: bool,
    keep_tombstones: bool,
    last_key: Option<Vec<u8>>,
    /// Older versions skipped because a newer one of the same key was yielded or hidden.
    pub shadowed_dropped: u64,
}

impl MergeIter {
    /// `sources` newest first; `keep_tombstones` for compaction, false for user reads.
    pub fn new(sources: Vec<EntryIter>, keep_tombstones: bool) -> Self {
        MergeIter {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
            failed: false,
            keep_tombstones,
            last_key: None,
            shadowed_dropped: 0,
        }
    }

    fn pull(&mut self, src: usize) -> Result<()> {
        if let Some(item) = self.sources[src].next() {
            self.heap.push(HeapItem { entry: item?, src });
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            for src in 0..self.sources.len() {
                self.pull(src)?;
            }
        }
        while let Some(HeapItem { entry, src }) = self.heap.pop() {
            self.pull(src)?;
            if self.last_key.as_deref() == Some(entry.key.as_slice()) {
                self.shadowed_dropped += 1;
                continue;
            }
            match &mut self.last_key {
                Some(k) => k.clone_from(&entry.key),
                None => self.last_key = Some(entry.key.clone()),
            }
            if entry.is_tombstone() && !self.keep_tombstones {
                continue;
            }
            return Ok(Some(entry));
        }
        Ok(None)
    }
}

impl Iterator for MergeIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(e) => e.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Wrap an in-memory sorted vector as a source (tests, small memtables).
pub fn vec_source(entries: Vec<Entry>) -> EntryIter {
    Box::new(entries.into_iter().map(Ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(it: MergeIter) -> Vec<(String, u64, Option<String>)> {
        it.map(|e| {
            let e = e.expect("entry");
            let v = e.value.map(|v| String::from_utf8(v).expect("utf8"));
            (String::from_utf8(e.key).expect("utf8"), e.seq, v)
        })
        .collect()
    }

    #[test]
    fn merge_yields_newest_per_key_and_hides_tombstones() {
        let mem = vec![Entry::put("b", 9, "b9"), Entry::tombstone("c", 8)];
        let l0 = vec![
            Entry::put("a", 5, "a5"),
            Entry::put("b", 4, "b4"),
            Entry::put("c", 3, "c3"),
        ];
        let l1 = vec![Entry::put("a", 1, "a1"), Entry::put("d", 2, "d2")];
        let mk = |keep| {
            MergeIter::new(
                vec![
                    vec_source(mem.clone()),
                    vec_source(l0.clone()),
                    vec_source(l1.clone()),
                ],
                keep,
            )
        };
        let user = collect(mk(false));
        assert_eq!(
            user,
            [
                ("a".into(), 5, Some("a5".into())),
                ("b".into(), 9, Some("b9".into())),
                ("d".into(), 2, Some("d2".into())),
            ]
        );
        let mut it = mk(true);
        let all: Vec<_> = it.by_ref().map(|e| e.expect("ok").seq).collect();
        assert_eq!(all, [5, 9, 8, 2]);
        assert_eq!(it.shadowed_dropped, 3);
    }

    #[test]
    fn merge_orders_by_seq_not_source_position() {
        // An older source listed first must not win over a newer seq.
        let it = MergeIter::new(
            vec![
                vec_source(vec![Entry::put("k", 1, "old")]),
                vec_source(vec![Entry::put("k", 2, "new")]),
            ],
            false,
        );
        assert_eq!(collect(it), [("k".into(), 2, Some("new".into()))]);
    }

    #[test]
    fn merge_stops_after_an_error() {
        let bad: EntryIter = Box::new(
            vec![
                Ok(Entry::put("a", 1, "x")),
                Err(EngineError::InvalidArgument("boom".into())),
            ]
            .into_iter(),
        );
        let mut it = MergeIter::new(vec![bad, vec_source(vec![Entry::put("b", 1, "y")])], false);
        let results: Vec<_> = it.by_ref().collect();
        assert!(results.iter().any(|r| r.is_err()));
        assert!(it.next().is_none());
    }
}
