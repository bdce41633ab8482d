//! Model test: random puts, deletes, gets, scans, flushes, compactions, GC and reopens
//! against a `BTreeMap`. The "memtable" is an in-test sorted map flushed into tables; it
//! is flushed before every reopen (standing in for WAL replay, which is not ours).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::engine::read::vec_source;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Get(u8),
    Range(u8, u8),
    Flush,
    Compact,
    CompactLevel(u8),
    Gc,
    /// Reopen; with `true` run GC first, so no file may be left as an orphan.
    Reopen(bool),
}

/// Keys of varied length sharing prefixes, so prefix compression is exercised.
fn key(k: u8) -> Vec<u8> {
    let mut v = format!("key{:02}", k % 40).into_bytes();
    if k.is_multiple_of(3) {
        v.extend_from_slice(b"-with-a-longer-tail");
    }
    v
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..60)).prop_map(|(k, v)| Op::Put(k, v)),
        4 => any::<u8>().prop_map(Op::Delete),
        4 => any::<u8>().prop_map(Op::Get),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Range(a, b)),
        3 => Just(Op::Flush),
        2 => Just(Op::Compact),
        1 => (0u8..4).prop_map(Op::CompactLevel),
        1 => Just(Op::Gc),
        1 => any::<bool>().prop_map(Op::Reopen),
    ]
}

struct Harness {
    dir: tempfile::TempDir,
    opts: TablesOptions,
    tables: Option<Tables>,
    /// key -> (seq, value or tombstone): the newest unflushed write per key.
    mem: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    seq: u64,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = small_opts();
        let tables = Some(open(dir.path(), &opts));
        Harness {
            dir,
            opts,
            tables,
            mem: BTreeMap::new(),
            model: BTreeMap::new(),
            seq: 0,
        }
    }

    fn t(&self) -> &Tables {
        self.tables.as_ref().expect("tables open between ops")
    }

    fn mem_entries(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Vec<Entry> {
        self.mem
            .iter()
            .filter(|(k, _)| {
                lo.is_none_or(|l| k.as_slice() >= l) && hi.is_none_or(|h| k.as_slice() < h)
            })
            .map(|(k, (seq, v))| Entry {
                key: k.clone(),
                seq: *seq,
                value: v.clone(),
            })
            .collect()
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        if let Some((_, v)) = self.mem.get(k) {
            return v.clone();
        }
        self.t().get(k).expect("get").and_then(|e| e.value)
    }

    fn flush(&mut self) {
        let entries = self.mem_entries(None, None);
        self.t().flush(entries, None).expect("flush");
        self.mem.clear();
    }

    fn apply(&mut self, op: &Op) -> std::result::Result<(), TestCaseError> {
        match op {
            Op::Put(k, v) => {
                self.seq += 1;
                self.mem.insert(key(*k), (self.seq, Some(v.clone())));
                self.model.insert(key(*k), v.clone());
            }
            Op::Delete(k) => {
                self.seq += 1;
                self.mem.insert(key(*k), (self.seq, None));
                self.model.remove(&key(*k));
            }
            Op::Get(k) => {
                prop_assert_eq!(
                    self.get(&key(*k)),
                    self.model.get(&key(*k)).cloned(),
                    "get {:?}",
                    key(*k)
                );
            }
            Op::Range(a, b) => {
                let (lo, hi) = (key(*a).min(key(*b)), key(*a).max(key(*b)));
                let mem = self.mem_entries(Some(&lo), Some(&hi));
                let got: Vec<(Vec<u8>, Vec<u8>)> = self
                    .t()
                    .range(Some(&lo), Some(&hi), vec![vec_source(mem)])
                    .expect("range")
                    .map(|e| e.map(|e| (e.key, e.value.unwrap_or_default())))
                    .collect::<crate::engine::Result<_>>()
                    .expect("scan");
                let want: Vec<(Vec<u8>, Vec<u8>)> = self
                    .model
                    .range(lo.clone()..hi.clone())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Flush => self.flush(),
            Op::Compact => compact_until_quiet(self.t()),
            Op::CompactLevel(l) => {
                if let Some(task) = self.t().pick_level_compaction(*l as usize) {
                    self.t().run_compaction(&task).expect("compaction");
                }
            }
            Op::Gc => {
                self.t().collect_garbage().expect("gc");
            }
            Op::Reopen(gc_first) => {
                self.flush();
                if *gc_first {
                    self.t().collect_garbage().expect("gc");
                }
                self.tables = None;
                let (t, rec) = Tables::open(self.dir.path(), self.opts.clone()).expect("reopen");
                // Without GC, tables retired by compaction are left for start-up GC; with
                // it nothing pins them, so every one must already be gone.
                if *gc_first {
                    prop_assert!(
                        rec.orphans_deleted.is_empty(),
                        "orphans: {:?}",
                        rec.orphans_deleted
                    );
                }
                prop_assert!(rec.last_flushed_seq <= self.seq);
                self.tables = Some(t);
            }
        }
        Ok(())
    }

    fn check_all(&self) -> std::result::Result<(), TestCaseError> {
        for k in 0..40u8 {
            for k in [k, k + 120] {
                prop_assert_eq!(self.get(&key(k)), self.model.get(&key(k)).cloned());
            }
        }
        let all = scan(self.t(), self.mem_entries(None, None));
        let want: Vec<(Vec<u8>, Vec<u8>)> = self.model.clone().into_iter().collect();
        prop_assert_eq!(all, want);
        Ok(())
    }
}

fn run(ops: &[Op]) -> std::result::Result<(), TestCaseError> {
    let mut h = Harness::new();
    for op in ops {
        h.apply(op)?;
    }
    h.check_all()?;
    // Everything must also survive a final flush + full compaction + reopen.
    h.apply(&Op::Compact)?;
    for l in 0..3 {
        h.apply(&Op::CompactLevel(l))?;
    }
    h.apply(&Op::Gc)?;
    h.apply(&Op::Reopen(true))?;
    h.check_all()
}

proptest! {
    // 48 cases by default; PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_btreemap_model(ops in prop::collection::vec(op(), 1..150)) {
        run(&ops)?;
    }
}

/// Postmortem: the first shrunk failure of the model test. A table retired by a level
/// compaction with no GC before close is, after reopen, unreferenced by the manifest and
/// so deleted by start-up GC. The harness wrongly demanded "no orphans after a clean
/// close"; the engine was right. Pinned so start-up GC of retired tables stays covered.
#[test]
fn regression_retired_tables_left_at_close_are_start_up_orphans() {
    let mut h = Harness::new();
    for op in [Op::Put(0, vec![]), Op::Flush] {
        h.apply(&op).expect("op");
    }
    let flushed = h.t().current_version().level(0)[0].id;
    h.apply(&Op::CompactLevel(0)).expect("compact");
    assert_eq!(
        h.t().stats().pinned_retired_tables,
        0,
        "retired but not yet collected"
    );
    h.tables = None;
    let (t, rec) = Tables::open(h.dir.path(), h.opts.clone()).expect("reopen");
    assert_eq!(
        rec.orphans_deleted,
        [crate::engine::sstable::table_path(h.dir.path(), flushed)]
    );
    h.tables = Some(t);
    h.check_all().expect("model still matches");
}

/// Postmortem: second shrunk failure, `[Range(39, 40)]`. `key()` is not monotonic in its
/// argument (40 wraps to "key00..."), so ordering the bounds by argument handed
/// `BTreeMap::range` a start above its end and the harness panicked. Bounds are now
/// ordered as keys; the engine must return an empty scan for an empty/inverted range.
#[test]
fn regression_range_bounds_ordered_as_keys() {
    run(&[Op::Put(39, b"v".to_vec()), Op::Flush, Op::Range(39, 40)]).expect("model");
    let h = Harness::new();
    let inverted = h
        .t()
        .range(Some(&key(39)), Some(&key(40)), vec![])
        .expect("range");
    assert_eq!(inverted.count(), 0);
}
