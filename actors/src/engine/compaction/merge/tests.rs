//! Merge executor tests on real table files.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::engine::compaction::pick_level;
use crate::engine::entry::Entry;
use crate::engine::rate_limit::tests::FakeClock;
use crate::engine::rate_limit::Clock;
use crate::engine::sstable::{ReadCounters, TableReader};

struct Fixture {
    dir: tempfile::TempDir,
    version: Version,
    readers: HashMap<u64, Arc<TableReader>>,
    next_id: u64,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
            version: Version::empty(4),
            readers: HashMap::new(),
            next_id: 1,
        }
    }

    fn add_table(&mut self, level: usize, entries: &[Entry]) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut w = TableWriter::create(
            crate::engine::io::real(),
            self.dir.path(),
            id,
            level,
            TableWriterOptions::default(),
            None,
        )
        .expect("writer");
        for e in entries {
            w.add(e).expect("add");
        }
        let meta = w.finish().expect("finish");
        self.version = self.version.apply(&[Edit::AddTable(meta)]).expect("apply");
        self.open(id);
        id
    }

    fn open(&mut self, id: u64) {
        let r = TableReader::open(
            &table_path(self.dir.path(), id),
            id,
            None,
            Arc::new(ReadCounters::default()),
        )
        .expect("open");
        self.readers.insert(id, Arc::new(r));
    }

    fn compact(&mut self, level: usize, policy: &dyn TombstonePolicy, target: u64) -> MergeOutcome {
        let task = pick_level(&self.version, level).expect("task");
        let mut next = self.next_id;
        let out = execute(
            &task,
            &MergeParams {
                io: &crate::engine::io::real(),
                dir: self.dir.path(),
                version: &self.version,
                tables: &self.readers,
                writer_opts: TableWriterOptions::default(),
                target_table_bytes: target,
                policy,
                limiter: None,
            },
            &mut || {
                next += 1;
                next - 1
            },
        )
        .expect("merge");
        self.next_id = next;
        self.version = self.version.apply(&out.edits).expect("apply edit");
        for t in &out.outputs {
            self.open(t.id);
        }
        out
    }

    fn get(&self, key: &str) -> Option<Entry> {
        crate::engine::read::get(&self.version, &self.readers, key.as_bytes()).expect("get")
    }
}

struct NeverDrop;
impl TombstonePolicy for NeverDrop {
    fn may_drop(&self, _: &[u8], _: u64) -> bool {
        false
    }
}

#[test]
fn merge_keeps_newest_and_drops_shadowed_versions() {
    let mut f = Fixture::new();
    f.add_table(0, &[Entry::put("a", 1, "a1"), Entry::put("b", 2, "b2")]);
    f.add_table(0, &[Entry::put("a", 3, "a3"), Entry::put("c", 4, "c4")]);
    f.add_table(0, &[Entry::put("b", 5, "b5")]);
    let out = f.compact(0, &AlwaysSafe, u64::MAX);
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(out.entries_written, 3);
    assert_eq!(out.shadowed_dropped, 2);
    assert!(f.version.level(0).is_empty());
    assert_eq!(f.get("a").and_then(|e| e.value), Some(b"a3".to_vec()));
    assert_eq!(f.get("b").map(|e| e.seq), Some(5));
    assert_eq!(f.get("c").map(|e| e.seq), Some(4));
}

#[test]
fn tombstone_dropped_only_when_no_lower_level_can_hold_the_key() {
    let mut f = Fixture::new();
    // L2 holds an old value of "k" (and nothing for "z").
    f.add_table(2, &[Entry::put("k", 1, "old")]);
    f.add_table(0, &[Entry::tombstone("k", 10), Entry::tombstone("z", 11)]);
    let out = f.compact(0, &AlwaysSafe, u64::MAX);
    // "z": nothing below L1 covers it -> dropped. "k": L2 covers it -> kept, or the old
    // value would come back.
    assert_eq!(out.tombstones_dropped, 1);
    assert!(f.get("k").expect("tombstone kept").is_tombstone());
    assert!(f.get("z").is_none());
    // Merging L1 into L2 (the last level holding "k") finally drops it and the old value.
    let out = f.compact(1, &AlwaysSafe, u64::MAX);
    assert_eq!((out.tombstones_dropped, out.shadowed_dropped), (1, 1));
    assert!(out.outputs.is_empty());
    assert!(f.get("k").is_none());
    assert_eq!(f.version.tables().count(), 0);
}

#[test]
fn tombstone_policy_can_veto_the_drop() {
    let mut f = Fixture::new();
    f.add_table(0, &[Entry::put("k", 1, "v")]);
    f.add_table(0, &[Entry::tombstone("k", 2)]);
    let out = f.compact(0, &NeverDrop, u64::MAX);
    assert_eq!(out.tombstones_dropped, 0);
    assert_eq!(out.shadowed_dropped, 1, "the older value still goes");
    assert_eq!(f.get("k"), Some(Entry::tombstone("k", 2)));
}

#[test]
fn outputs_split_at_target_size_and_do_not_overlap() {
    let mut f = Fixture::new();
    let entries: Vec<Entry> = (0..5000)
        .map(|i| Entry::put(format!("key-{i:05}"), i, vec![b'x'; 100]))
        .collect();
    f.add_table(0, &entries);
    let out = f.compact(0, &AlwaysSafe, 64 * 1024);
    assert!(out.outputs.len() >= 7, "got {} outputs", out.outputs.len());
    for t in &out.outputs[..out.outputs.len() - 1] {
        assert!(
            t.file_size >= 64 * 1024 && t.file_size < 80 * 1024,
            "size {}",
            t.file_size
        );
    }
    assert_eq!(f.version.level(1).len(), out.outputs.len()); // apply() checked non-overlap
    for i in (0..5000).step_by(97) {
        assert_eq!(f.get(&format!("key-{i:05}")).map(|e| e.seq), Some(i));
    }
}

#[test]
fn rate_limiter_throttles_compaction_writes() {
    let mut f = Fixture::new();
    let entries: Vec<Entry> = (0..2000)
        .map(|i| Entry::put(format!("key-{i:05}"), i, vec![b'x'; 500]))
        .collect();
    f.add_table(0, &entries);
    let clock = Arc::new(FakeClock::default());
    let limiter = Arc::new(RateLimiter::new(100_000, 4096, clock.clone()));
    let task = pick_level(&f.version, 0).expect("task");
    let mut id = 100;
    let out = execute(
        &task,
        &MergeParams {
            io: &crate::engine::io::real(),
            dir: f.dir.path(),
            version: &f.version,
            tables: &f.readers,
            writer_opts: TableWriterOptions::default(),
            target_table_bytes: u64::MAX,
            policy: &AlwaysSafe,
            limiter: Some(limiter),
        },
        &mut || {
            id += 1;
            id
        },
    )
    .expect("merge");
    // ~1 MB at 100 KB/s: about 10 s of (fake) sleeping.
    let expected = out.bytes_written.saturating_sub(4096) as f64 / 100_000.0;
    assert!((clock.now().as_secs_f64() - expected).abs() < 0.1);
}
