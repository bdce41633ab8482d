//! Failure stories: which failed step poisons the facade and which is only retried.
//!
//! Postmortem of issue 8, defect 3: ENOSPC while writing a compaction output -- a `.tmp`
//! file nothing depends on -- poisoned the whole engine, so every write was refused, and
//! after a restart the node retried the same compaction at once and poisoned itself again.
//! A table that is not yet in the MANIFEST holds no acknowledged data (the memtable and the
//! WAL still have a flush's entries; a compaction's inputs are still live), so failing to
//! write it only costs a retry. Only a step after which the disk may disagree with what the
//! engine believes -- the directory fsync before a commit, the MANIFEST append or rewrite --
//! poisons.

use std::path::Path;

use super::*;
use crate::engine::error::EngineError;
use crate::engine::manifest::MANIFEST_TMP_NAME;
use crate::engine::sstable::fault::{inject, FaultOp};
use crate::engine::sstable::table_path;

fn put(k: &str, seq: u64, v: &str) -> Entry {
    Entry::put(k, seq, v)
}

/// File names in `dir` ending in `.tmp`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Table files on disk that the current version does not reference.
fn uncommitted_tables(t: &Tables) -> Vec<u64> {
    let v = t.current_version();
    crate::engine::gc::table_files(t.dir())
        .expect("list")
        .into_iter()
        .filter(|id| !v.contains(*id))
        .collect()
}

/// Two overlapping L0 tables: `l0_trigger` is 2, so an L0 -> L1 compaction is due.
fn two_l0_tables(t: &Tables) {
    let first: Vec<Entry> = (0..40)
        .map(|i| put(&format!("k{i:03}"), i + 1, "old"))
        .collect();
    t.flush(first, Some(1)).expect("flush");
    let second: Vec<Entry> = (0..40)
        .map(|i| put(&format!("k{i:03}"), 100 + i, "new"))
        .collect();
    t.flush(second, Some(2)).expect("flush");
}

#[test]
fn a_failed_compaction_write_leaves_no_output_and_does_not_poison() {
    for op in [FaultOp::Write, FaultOp::Sync] {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = open(dir.path(), &small_opts());
        two_l0_tables(&t);
        let full = inject(dir.path(), 1..=usize::MAX, op, libc::ENOSPC, None);
        let task = t.pick_compaction().expect("L0 at trigger");
        let err = t
            .run_compaction(&task)
            .expect_err("the output cannot be written");
        assert!(matches!(err, EngineError::Io { .. }), "{op:?}: {err}");
        assert!(full.hits() > 0, "{op:?}: the fault fired");
        assert_eq!(
            t.poisoned(),
            None,
            "{op:?}: nothing acknowledged was at risk"
        );
        assert!(
            temp_files(dir.path()).is_empty(),
            "{op:?}: partial output left"
        );
        assert!(uncommitted_tables(&t).is_empty(), "{op:?}: output left");
        // Writes go on: a flush (level 0) still lands while compaction outputs fail.
        t.flush(vec![put("k999", 500, "later")], Some(3))
            .expect("a flush after a failed compaction");
        assert!(
            t.pick_compaction().is_some(),
            "{op:?}: the compaction is still due"
        );

        // The disk has space again: the retry compacts.
        drop(full);
        let task = t.pick_compaction().expect("still due");
        t.run_compaction(&task).expect("the retry succeeds");
        let v = t.current_version();
        assert!(!v.level(1).is_empty(), "{op:?}: L1 holds the merged data");
        assert_eq!(
            t.get(b"k007").expect("get").and_then(|e| e.value),
            Some(b"new".to_vec())
        );
        assert_eq!(t.stats().compactions, 1);
    }
}

#[test]
fn a_restart_with_the_fault_still_present_does_not_poison() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = inject(
        dir.path(),
        1..=usize::MAX,
        FaultOp::Write,
        libc::ENOSPC,
        None,
    );
    {
        let t = open(dir.path(), &small_opts());
        two_l0_tables(&t);
        let task = t.pick_compaction().expect("due");
        t.run_compaction(&task).expect_err("disk full");
        assert_eq!(t.poisoned(), None);
    }
    let t = open(dir.path(), &small_opts());
    let task = t.pick_compaction().expect("still due after the restart");
    t.run_compaction(&task).expect_err("disk still full");
    assert_eq!(
        t.poisoned(),
        None,
        "a restart does not poison itself at once"
    );
    assert_eq!(full.hits(), 2);
    t.flush(vec![put("z", 1000, "z")], Some(3))
        .expect("writes go on");
}

#[test]
fn a_failed_flush_write_is_not_poison_and_the_retry_keeps_every_entry() {
    for op in [FaultOp::Write, FaultOp::Sync] {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = open(dir.path(), &small_opts());
        t.flush(vec![put("a", 1, "1")], Some(1)).expect("flush");
        let entries = vec![put("b", 2, "2"), put("c", 3, "3")];
        let full = inject(dir.path(), 0..=0, op, libc::ENOSPC, Some(1));
        let err = t
            .flush(entries.clone(), Some(2))
            .expect_err("the table cannot be written");
        assert!(matches!(err, EngineError::Io { .. }), "{op:?}: {err}");
        assert_eq!(full.hits(), 1);
        assert_eq!(
            t.poisoned(),
            None,
            "{op:?}: the memtable and WAL still hold it"
        );
        assert!(
            temp_files(dir.path()).is_empty(),
            "{op:?}: partial output left"
        );
        assert!(uncommitted_tables(&t).is_empty());
        assert_eq!(
            t.current_version().retired_wal(),
            Some(1),
            "the WAL segment of a failed flush is not retired"
        );
        // The flusher retries the same entries (under a fresh table id: never reuse a file
        // whose fsync failed).
        t.flush(entries, Some(2)).expect("the retry succeeds");
        drop(t);
        let t = open(dir.path(), &small_opts());
        assert_eq!(scan(&t, vec![]).len(), 3, "{op:?}");
        assert_eq!(t.current_version().retired_wal(), Some(2));
    }
}

/// A failed MANIFEST append leaves the log's tail unknown (the record may or may not be
/// on disk), so the facade must stop writing. The error is a real one from the kernel:
/// a child process runs this test under RLIMIT_FSIZE just above the MANIFEST's size, so
/// the table (smaller) is written and the append fails with EFBIG.
#[test]
fn a_failed_manifest_append_poisons() {
    const CHILD: &str = "TROUPE_TEST_MANIFEST_EFBIG_DIR";
    let Ok(dir) = std::env::var(CHILD) else {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "engine::tests::failures::a_failed_manifest_append_poisons",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
        // The parent checks what a restart finds: the poisoned commit did not delete a
        // table the MANIFEST may reference, so the directory opens.
        let t = open(dir.path(), &big_manifest_opts());
        assert!(t.get(b"k000").expect("get").is_some());
        return;
    };
    let dir = Path::new(&dir);
    let t = open(dir, &big_manifest_opts());
    // Grow the MANIFEST past the size of one small table.
    for i in 0..20u64 {
        t.flush(vec![put(&format!("k{i:03}"), i + 1, "v")], Some(i))
            .expect("flush");
    }
    let manifest = std::fs::metadata(dir.join("MANIFEST")).expect("stat").len();
    let table = std::fs::metadata(table_path(dir, 1)).expect("stat").len();
    assert!(
        table + 16 < manifest,
        "table {table} B, MANIFEST {manifest} B"
    );
    // SAFETY: plain libc calls on this (single-test) child process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: manifest + 8,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let err = t
        .flush(vec![put("z", 100, "z")], Some(100))
        .expect_err("the append crosses RLIMIT_FSIZE");
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(t.poisoned().is_some(), "a failed MANIFEST append poisons");
    assert!(matches!(
        t.flush(vec![put("zz", 101, "z")], Some(101)),
        Err(EngineError::Poisoned { .. })
    ));
    assert!(t.pick_compaction().is_none());
    assert!(t.get(b"k003").expect("reads still work").is_some());
}

fn big_manifest_opts() -> TablesOptions {
    TablesOptions {
        manifest_rewrite_bytes: 1 << 20,
        ..small_opts()
    }
}

/// A failed MANIFEST rewrite happens after the edit was appended and fsynced: the table is
/// committed. The facade poisons (the snapshot step failed half-way), but it must not
/// delete the table: the MANIFEST on disk references it and its flush retired the WAL.
#[test]
fn a_failed_manifest_rewrite_poisons_but_keeps_the_committed_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = open(dir.path(), &small_opts());
    // A directory where the snapshot's temp file goes: the rewrite's create fails.
    std::fs::create_dir(dir.path().join(MANIFEST_TMP_NAME)).expect("mkdir");
    let mut failed_at = None;
    for i in 0..100u64 {
        let key = format!("k{i:03}");
        if let Err(e) = t.flush(vec![put(&key, i + 1, "v")], Some(i)) {
            failed_at = Some((i, key, e));
            break;
        }
    }
    let (i, key, err) = failed_at.expect("the MANIFEST outgrew its rewrite threshold");
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(t.poisoned().is_some(), "a failed rewrite poisons");
    std::fs::remove_dir(dir.path().join(MANIFEST_TMP_NAME)).expect("rmdir");
    drop(t);
    let (t, rec) = Tables::open(dir.path(), small_opts()).expect("reopen finds every table");
    assert_eq!(rec.retired_wal_segment, Some(i), "the flush had committed");
    assert!(t.get(key.as_bytes()).expect("get").is_some());
}
