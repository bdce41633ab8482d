use super::*;
use crate::hints::record::key_hash;

fn limits() -> Limits {
    Limits {
        max_bytes: 1000,
        max_age_ms: 10_000,
        segment_bytes: 300,
    }
}

/// Reserves and commits a hint of `len` bytes for key `k` at `at`.
fn add(b: &mut HintBook, p: &str, k: &[u8], len: u64, at: u64) -> Result<Reservation, DropReason> {
    let r = b.reserve(p, len)?;
    b.committed(p, r, at, key_hash(k));
    Ok(r)
}

#[test]
fn hints_past_max_bytes_are_dropped_and_disk_stays_bounded() {
    let mut b = HintBook::new(limits());
    for i in 0..10u64 {
        add(&mut b, "n3", format!("k{i}").as_bytes(), 100, i).expect("room");
    }
    assert_eq!(add(&mut b, "n3", b"late", 1, 11), Err(DropReason::Full));
    let f = &b.figures(20)[0];
    assert_eq!((f.count, f.bytes, f.disk_bytes), (10, 1000, 1000));
    // Another primary has its own bound.
    add(&mut b, "n4", b"k", 100, 1).expect("n4 has room");
    // Segments roll at 300 bytes: 10 hints of 100 fill 4 segments (3+3+3+1).
    assert!(b.is_pending(&key_hash(b"k0")));
    assert!(!b.is_pending(&key_hash(b"late")));
}

#[test]
fn delivery_takes_front_batches_and_deletes_emptied_segments() {
    let mut b = HintBook::new(limits());
    for i in 0..7u64 {
        add(&mut b, "n3", format!("k{i}").as_bytes(), 100, i).unwrap();
    }
    let batch = b.take_batch("n3", 250, 100).expect("hints");
    assert_eq!(batch.records.len(), 2, "250 bytes hold two of 100");
    assert_eq!(batch.records[0], (0, 0, 100));
    assert!(
        b.take_batch("n3", 250, 100).is_none(),
        "one batch in flight"
    );
    assert!(b.deliverable().is_empty());
    b.failed("n3");
    let batch = b.take_batch("n3", 350, 100).unwrap();
    assert_eq!(batch.records.len(), 3);
    let (n, gone) = b.delivered("n3");
    assert_eq!(
        (n, gone.clone()),
        (3, vec![0]),
        "segment 0 held exactly those three"
    );
    b.deleted("n3", &gone);
    assert!(!b.is_pending(&key_hash(b"k0")));
    assert!(b.is_pending(&key_hash(b"k3")));
    let f = &b.figures(0)[0];
    assert_eq!((f.count, f.bytes, f.disk_bytes), (4, 400, 400));
    // A single hint larger than the batch bound still goes, alone.
    let batch = b.take_batch("n3", 10, 100).unwrap();
    assert_eq!(batch.records.len(), 1);
}

#[test]
fn draining_everything_closes_the_active_segment() {
    let mut b = HintBook::new(limits());
    add(&mut b, "n3", b"a", 100, 0).unwrap();
    b.take_batch("n3", 1000, 10).unwrap();
    let (_, gone) = b.delivered("n3");
    assert_eq!(gone, vec![0]);
    b.deleted("n3", &gone);
    let r = add(&mut b, "n3", b"b", 100, 1).unwrap();
    assert_eq!(
        (r.segment, r.offset),
        (1, 0),
        "a new file, not the deleted one"
    );
}

#[test]
fn hints_older_than_max_age_are_dropped_oldest_first() {
    let mut b = HintBook::new(limits());
    add(&mut b, "n3", b"old", 100, 0).unwrap();
    add(&mut b, "n3", b"new", 100, 5_000).unwrap();
    assert!(b.expire(10_000).is_empty(), "exactly max_age is kept");
    let out = b.expire(10_001);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.as_str(), out[0].1), ("n3", 1));
    assert!(!b.is_pending(&key_hash(b"old")));
    assert!(b.is_pending(&key_hash(b"new")));
    // A batch in flight is not expired under it.
    b.take_batch("n3", 1000, 10).unwrap();
    assert!(b.expire(1_000_000).is_empty());
    b.failed("n3");
    assert_eq!(b.expire(1_000_000)[0].1, 1);
    assert_eq!(b.count(), 0);
}

#[test]
fn a_failed_append_is_not_kept_and_closes_its_segment() {
    let mut b = HintBook::new(limits());
    let r = b.reserve("n3", 100).unwrap();
    let gone = b.aborted("n3", r);
    assert_eq!(gone, vec![0]);
    b.deleted("n3", &gone);
    assert_eq!(b.count(), 0);
    assert_eq!(b.figures(0)[0].disk_bytes, 0);
    assert_eq!(b.reserve("n3", 100).unwrap().segment, 1);
}

#[test]
fn two_hints_for_one_key_keep_it_pending_until_both_left() {
    let mut b = HintBook::new(limits());
    add(&mut b, "n3", b"k", 100, 0).unwrap();
    add(&mut b, "n4", b"k", 100, 0).unwrap();
    b.take_batch("n3", 1000, 10).unwrap();
    b.delivered("n3");
    assert!(b.is_pending(&key_hash(b"k")), "n4's hint is still pending");
    b.take_batch("n4", 1000, 10).unwrap();
    b.delivered("n4");
    assert!(!b.is_pending(&key_hash(b"k")));
}

#[test]
fn recovered_hints_count_and_appends_start_a_new_segment() {
    let mut b = HintBook::new(limits());
    let meta = |offset, at| RecordMeta {
        offset,
        len: 100,
        at_ms: at,
        key_hash: key_hash(b"r"),
    };
    b.recover("n3", vec![(4, vec![meta(0, 1), meta(100, 2)], 200)]);
    let f = &b.figures(10)[0];
    assert_eq!(
        (f.count, f.bytes, f.disk_bytes, f.oldest_ms),
        (2, 200, 200, Some(9))
    );
    assert!(b.is_pending(&key_hash(b"r")));
    assert_eq!(b.reserve("n3", 100).unwrap().segment, 5);
}
