//! Space amplification: rewriting the same keys many times must not grow the directory
//! once compaction and GC have run.

use super::*;

#[test]
fn overwrites_then_compaction_and_gc_stay_near_live_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = small_opts();
    opts.writer.block_size = 4096;
    opts.compaction = CompactionOptions {
        l0_trigger: 2,
        level_size_ratio: 10,
        target_table_bytes: 32 << 10,
        l1_max_bytes: 64 << 10,
    };
    let t = open(dir.path(), &opts);
    let n = 1000u64;
    let mut seq = 0;
    let mut peak = 0;
    for round in 0..20u64 {
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                seq += 1;
                Entry::put(format!("key-{i:05}"), seq, vec![round as u8; 100])
            })
            .collect();
        t.flush(entries, Some(round)).expect("flush");
        compact_until_quiet(&t);
        peak = peak.max(dir_bytes(dir.path()));
    }
    let live = n * (9 + 100);
    let after_auto = dir_bytes(dir.path());
    assert!(
        after_auto < 4 * live,
        "after automatic compaction: {after_auto} bytes for {live} live (peak {peak})"
    );
    // Pushing everything to the bottom leaves about one copy.
    for level in 0..opts.num_levels - 1 {
        if let Some(task) = t.pick_level_compaction(level) {
            t.run_compaction(&task).expect("compact");
        }
    }
    t.collect_garbage().expect("gc");
    let after_full = dir_bytes(dir.path());
    eprintln!("space: live {live}, peak {peak}, after auto {after_auto}, after full {after_full}");
    assert!(
        after_full < live * 3 / 2,
        "after full compaction: {after_full} for {live}"
    );
    // Nothing on disk but live tables and the manifest.
    let files = std::fs::read_dir(dir.path()).expect("ls").count();
    assert_eq!(files, t.current_version().tables().count() + 1);
    let s = t.stats();
    assert_eq!(s.levels.iter().map(|l| l.entries).sum::<u64>(), n);
    assert!(s.compactions > 0 && s.files_deleted > 0);
}
