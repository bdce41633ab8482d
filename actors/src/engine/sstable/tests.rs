//! Table-level tests: round trip, one-block lookups, and corruption of every section.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::engine::cache::BlockCache;
use crate::engine::entry::Entry;
use crate::engine::error::{EngineError, Section};

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// Write `n` keys; every 7th key also has an older version, every 5th newest is a tombstone.
fn write_table(dir: &Path, id: u64, n: usize) -> (TableMeta, Vec<Entry>) {
    let mut w = TableWriter::create(
        crate::engine::io::real(),
        dir,
        id,
        0,
        TableWriterOptions::default(),
        None,
    )
    .expect("create writer");
    let mut all = Vec::new();
    for i in 0..n {
        let newest = if i % 5 == 0 {
            Entry::tombstone(key(i), 1000 + i as u64)
        } else {
            Entry::put(key(i), 1000 + i as u64, format!("value-{i}").repeat(3))
        };
        all.push(newest);
        if i % 7 == 0 {
            all.push(Entry::put(key(i), i as u64, "old"));
        }
    }
    for e in &all {
        w.add(e).expect("add");
    }
    (w.finish().expect("finish"), all)
}

fn open(dir: &Path, id: u64) -> crate::engine::error::Result<Arc<TableReader>> {
    TableReader::open(&table_path(dir, id), id, None, Arc::default()).map(Arc::new)
}

#[test]
fn round_trip_get_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (meta, all) = write_table(dir.path(), 1, 2000);
    assert_eq!(meta.entry_count, all.len() as u64);
    assert_eq!(meta.smallest, key(0));
    assert_eq!(meta.largest, key(1999));
    assert_eq!(meta.min_seq, 0);
    assert_eq!(meta.max_seq, 2999);
    assert!(!temp_table_path(dir.path(), 1).exists());
    let r = open(dir.path(), 1).expect("open");
    assert!(r.block_count() > 10, "expected several 4 KiB blocks");
    assert_eq!(r.file_size(), meta.file_size);

    for i in 0..2000 {
        let got = r.get(&key(i)).expect("get").expect("present");
        assert_eq!(got.seq, 1000 + i as u64, "newest version must win");
        assert_eq!(got.is_tombstone(), i % 5 == 0);
    }
    assert_eq!(r.get(b"key-").expect("get"), None);
    assert_eq!(r.get(b"zzz").expect("get"), None);

    let scanned: Vec<Entry> = r
        .iter_range(None, None)
        .collect::<crate::engine::error::Result<_>>()
        .expect("scan");
    assert_eq!(scanned, all);
    let sub: Vec<Entry> = r
        .iter_range(Some(&key(100)), Some(&key(200)))
        .collect::<crate::engine::error::Result<_>>()
        .expect("scan");
    let want: Vec<Entry> = all
        .iter()
        .filter(|e| e.key >= key(100) && e.key < key(200))
        .cloned()
        .collect();
    assert_eq!(sub, want);
    assert_eq!(r.iter_range(Some(b"zz"), None).count(), 0);
}

#[test]
fn point_lookup_reads_at_most_one_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_table(dir.path(), 1, 3000);
    let r = open(dir.path(), 1).expect("open");
    let reads = || r.counters().block_reads.load(Ordering::Relaxed);
    for i in (0..3000).step_by(13) {
        let before = reads();
        r.get(&key(i)).expect("get");
        assert_eq!(reads() - before, 1, "key {i}");
    }
    for i in 0..500 {
        let before = reads();
        r.get(format!("absent-{i}").as_bytes()).expect("get");
        assert!(reads() - before <= 1);
    }
    // With a cache, a repeated lookup reads nothing from disk.
    let cache = Arc::new(BlockCache::new(1 << 20));
    let r = TableReader::open(
        &table_path(dir.path(), 1),
        1,
        Some(cache.clone()),
        Arc::default(),
    )
    .expect("open");
    r.get(&key(42)).expect("get");
    let before = r.counters().block_reads.load(Ordering::Relaxed);
    r.get(&key(42)).expect("get");
    assert_eq!(r.counters().block_reads.load(Ordering::Relaxed), before);
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn writer_rejects_out_of_order_entries_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = TableWriter::create(
        crate::engine::io::real(),
        dir.path(),
        9,
        0,
        TableWriterOptions::default(),
        None,
    )
    .expect("create");
    w.add(&Entry::put("b", 1, "x")).expect("add");
    assert!(matches!(
        w.add(&Entry::put("a", 2, "x")),
        Err(EngineError::InvalidArgument(_))
    ));
    // Same key: an older seq may follow, a newer one may not.
    w.add(&Entry::put("b", 0, "x")).expect("older version ok");
    assert!(w.add(&Entry::put("b", 5, "x")).is_err());
    drop(w);
    assert!(!temp_table_path(dir.path(), 9).exists());
    let w = TableWriter::create(
        crate::engine::io::real(),
        dir.path(),
        10,
        0,
        TableWriterOptions::default(),
        None,
    )
    .expect("create");
    assert!(w.finish().is_err(), "empty tables are refused");
}

/// Flip one byte at `offset` and check the failure names the file and `section`.
fn assert_flip_detected(dir: &Path, offset: u64, section: Section, probe_all: bool) {
    let path = table_path(dir, 1);
    let mut bytes = std::fs::read(&path).expect("read");
    let original = bytes.clone();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let result = open(dir, 1).and_then(|r| {
        if probe_all {
            for i in 0..1000 {
                r.get(&key(i))?;
            }
            for e in r.iter_range(None, None) {
                e?;
            }
        }
        Ok(())
    });
    std::fs::write(&path, &original).expect("restore");
    match result {
        Err(EngineError::Corruption {
            path: p,
            section: s,
            ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(s, section, "flip at {offset}");
        }
        other => panic!("flip at {offset} in {section}: expected corruption, got {other:?}"),
    }
}

#[test]
fn corruption_in_each_section_is_reported_with_file_and_section() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (meta, _) = write_table(dir.path(), 1, 1000);
    let raw = std::fs::read(table_path(dir.path(), 1)).expect("read");
    let footer =
        format::Footer::decode(&raw[raw.len() - format::FOOTER_LEN..]).expect("footer decodes");
    // Data blocks: first byte, a middle byte, and the last byte before the filter.
    for off in [0, footer.filter_offset / 2, footer.filter_offset - 1] {
        assert_flip_detected(dir.path(), off, Section::DataBlock, true);
    }
    for off in [
        footer.filter_offset,
        footer.filter_offset + footer.filter_len - 1,
    ] {
        assert_flip_detected(dir.path(), off, Section::Filter, false);
    }
    for off in [
        footer.index_offset,
        footer.index_offset + footer.index_len - 1,
    ] {
        assert_flip_detected(dir.path(), off, Section::Index, false);
    }
    for off in [meta.file_size - 1, meta.file_size - 20, meta.file_size - 68] {
        assert_flip_detected(dir.path(), off, Section::Footer, false);
    }
    // Truncation is corruption too, never a panic.
    let path = table_path(dir.path(), 1);
    std::fs::write(&path, &raw[..raw.len() - 10]).expect("truncate");
    assert!(open(dir.path(), 1).expect_err("truncated").is_corruption());
    std::fs::write(&path, b"tiny").expect("tiny");
    assert!(open(dir.path(), 1).expect_err("tiny").is_corruption());
}

#[test]
fn file_names_round_trip() {
    assert_eq!(parse_table_file_name(&table_file_name(42)), Some(42));
    assert_eq!(parse_table_file_name("0000000000000042.sst.tmp"), None);
    assert_eq!(parse_table_file_name("MANIFEST"), None);
    assert_eq!(parse_table_file_name(".sst"), None);
}
