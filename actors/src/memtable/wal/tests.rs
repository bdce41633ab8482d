//! Tests of the WAL writer and recovery (segments, torn tails, preallocation, group commit).

use super::*;

fn rec(seq: u64, key: &str, value: Option<&str>) -> WalRecord {
    WalRecord {
        seq,
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

/// One encoded record of about 100 bytes (what an append carries).
fn record_of(seq: u64) -> Vec<u8> {
    let mut b = Vec::new();
    encode_record_unsealed(&rec(seq, "k", Some(&"v".repeat(70))), &mut b);
    b
}

/// A sync-mode writer on segment 1 of `dir` whose sink forwards each append's token
/// with whether its batch succeeded.
fn started(dir: &Path) -> (WalWriter<u64>, std::sync::mpsc::Receiver<(u64, bool)>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let sink: DurableSink<u64> = Box::new(move |tokens, r| {
        for t in tokens {
            let _ = tx.send((t, r.is_ok()));
        }
    });
    let wal = WalWriter::start(fsio::real(), dir, 1, Durability::Sync, 1024, sink).unwrap();
    (wal, rx)
}

/// A whole segment `n` holding `recs`, one batch each.
fn segment_bytes(n: u64, recs: &[WalRecord]) -> Vec<u8> {
    let batches: Vec<_> = recs.iter().map(|r| vec![r.clone()]).collect();
    format::encode_segment(n, 1, &batches)
}

/// An append's buffer comes back once the writer copied it into its batch: the next
/// `buffer` is that one, empty, with its capacity (no allocation per group); the pool
/// keeps at most `SPARE_BUFFERS`, none over `SPARE_MAX_BYTES`.
#[test]
fn append_buffers_come_back_for_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rx) = started(dir.path());
    let mut bytes = Vec::with_capacity(64 << 10);
    bytes.extend_from_slice(&record_of(1));
    wal.append(bytes, 1).unwrap();
    assert_eq!(rx.recv().unwrap(), (1, true));
    let again = wal.buffer(16);
    assert!(again.is_empty());
    assert_eq!(again.capacity(), 64 << 10, "the appended buffer, reused");
    assert_eq!(
        wal.buffer(16).capacity(),
        16,
        "the pool is empty: a new one"
    );

    let pool = Spares::default();
    pool.give(Vec::with_capacity(SPARE_MAX_BYTES + 1));
    assert!(
        pool.take().is_none(),
        "a buffer over the size bound is dropped"
    );
    for _ in 0..SPARE_BUFFERS + 3 {
        pool.give(vec![7u8; 10]);
    }
    let kept: Vec<Vec<u8>> = std::iter::from_fn(|| pool.take()).collect();
    assert_eq!(kept.len(), SPARE_BUFFERS);
    assert!(kept.iter().all(|b| b.is_empty() && b.capacity() >= 10));
}

/// Unsealed records are sealed by the writer; a run cut inside a record is never
/// written: its writes fail and the log is poisoned (a torn run written and then
/// dropped by recovery would lose acknowledged writes).
#[test]
fn the_writer_seals_appends_and_refuses_a_cut_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rx) = started(dir.path());
    let mut bytes = Vec::new();
    encode_record_unsealed(&rec(1, "a", Some("1")), &mut bytes);
    wal.append(bytes.clone(), 1).unwrap();
    assert_eq!(rx.recv().unwrap(), (1, true));
    bytes.pop();
    wal.append(bytes, 2).unwrap();
    assert_eq!(rx.recv().unwrap(), (2, false));
    assert!(wal
        .poisoned()
        .is_some_and(|p| p.contains("record boundary")));
    drop(wal);
    let rec = recover(&fsio::RealIo, dir.path()).unwrap();
    assert_eq!(
        rec.records.len(),
        1,
        "the sealed record, and nothing of the cut one"
    );
    assert_eq!(rec.records[0].key, b"a");
}

#[test]
fn writer_group_commits_and_recovers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rx) = started(dir.path());
    for i in 0..100u64 {
        let mut bytes = Vec::new();
        encode_record(&rec(i, &format!("k{i}"), Some("v")), &mut bytes);
        wal.append(bytes, i).unwrap();
    }
    let order: Vec<u64> = (0..100)
        .map(|_| {
            let (t, ok) = rx.recv().unwrap();
            assert!(ok);
            t
        })
        .collect();
    assert_eq!(
        order,
        (0..100).collect::<Vec<_>>(),
        "tokens come back in log order"
    );
    let (tx2, rx2) = std::sync::mpsc::channel();
    wal.rotate(Box::new(move |r| tx2.send(r.unwrap()).unwrap()))
        .unwrap();
    assert_eq!(rx2.recv().unwrap(), 2);
    drop(wal);
    let rec = recover(&fsio::RealIo, dir.path()).unwrap();
    assert_eq!(rec.segments, vec![1, 2]);
    assert_eq!(rec.records.len(), 100);
    assert_eq!(rec.records[99].key, b"k99");
}

/// After an upgrade the last segment may be format 3: the writer leaves it as it is and
/// appends to a new format-4 segment, so recovery reads both, in order.
#[test]
fn a_format_3_segment_is_left_as_it_is_and_writes_go_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = [rec(1, "a", Some("1")), rec(2, "b", None)];
    let v3 = format::encode_segment_in(3, 1, 9, &[old.to_vec()]);
    fs::write(segment_path(dir.path(), 1), &v3).unwrap();
    assert_eq!(recover(&fsio::RealIo, dir.path()).unwrap().records, old);

    let (wal, rx) = started(dir.path());
    let mut bytes = Vec::new();
    encode_record_unsealed(&rec(3, "c", Some("3")), &mut bytes);
    wal.append(bytes, 3).unwrap();
    assert_eq!(rx.recv().unwrap(), (3, true));
    let (tx2, rx2) = std::sync::mpsc::channel();
    wal.rotate(Box::new(move |r| tx2.send(r.unwrap()).unwrap()))
        .unwrap();
    assert_eq!(rx2.recv().unwrap(), 3, "the writer was on segment 2");
    drop(wal);

    assert_eq!(fs::read(segment_path(dir.path(), 1)).unwrap(), v3);
    let two = fs::read(segment_path(dir.path(), 2)).unwrap();
    assert_eq!(format::segment_head(&two).unwrap().format, 4);
    let r = recover(&fsio::RealIo, dir.path()).unwrap();
    assert_eq!(r.segments, vec![1, 2, 3]);
    let mut all = old.to_vec();
    all.push(rec(3, "c", Some("3")));
    assert_eq!(r.records, all);
}

#[test]
fn recovery_truncates_a_torn_tail_so_appends_follow_valid_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    let mut data = segment_bytes(1, &[rec(1, "a", Some("1")), rec(2, "b", Some("2"))]);
    data.truncate(data.len() - 3);
    fs::write(&path, &data).unwrap();
    let r = recover(&fsio::RealIo, dir.path()).unwrap();
    assert_eq!(r.records.len(), 1);
    assert!(r.torn_bytes > 0);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        segment_bytes(1, &[rec(1, "a", Some("1"))]).len() as u64
    );
}

/// Writes `per_segment[i]` records into segment `i + 1` through the writer thread (one
/// rotation between segments) and returns every record written, in log order.
fn write_segments(dir: &Path, per_segment: &[usize]) -> Vec<WalRecord> {
    let (wal, rx) = started(dir);
    let mut all = Vec::new();
    for (i, &n) in per_segment.iter().enumerate() {
        if i > 0 {
            let (rtx, rrx) = std::sync::mpsc::channel();
            wal.rotate(Box::new(move |r| rtx.send(r.unwrap()).unwrap()))
                .unwrap();
            assert_eq!(rrx.recv().unwrap(), i as u64 + 1);
        }
        for _ in 0..n {
            let seq = all.len() as u64 + 1;
            let r = rec(seq, &format!("key{seq:04}"), Some(&format!("value-{seq}")));
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            wal.append(bytes, seq).unwrap();
            assert_eq!(rx.recv().unwrap(), (seq, true), "durable in order");
            all.push(r);
        }
    }
    all
}

use format::record_offsets;

/// Segments are preallocated (zeros past the log's end) so that a group commit's
/// fdatasync finds no file size or block allocation to write; a rotation cuts the old
/// segment back to its end (only the last segment may end in a torn tail), and recovery
/// takes the last segment's zero tail as no damage.
#[test]
fn segments_are_preallocated_and_their_zero_tail_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_segments(dir.path(), &[3, 4]);
    let first = segment_path(dir.path(), 1);
    let data = fs::read(&first).unwrap();
    let seg = parse_segment(&first, 1, &data, false).expect("a rotated segment is whole");
    assert_eq!(seg.valid_len, data.len() as u64, "rotation cut the zeros");
    let last = segment_path(dir.path(), 2);
    let data = fs::read(&last).unwrap();
    let seg = parse_segment(&last, 2, &data, true).unwrap();
    assert!(
        data.len() as u64 >= PREALLOC_MIN && seg.valid_len < data.len() as u64,
        "the last segment is preallocated: {} bytes, {} of them log",
        data.len(),
        seg.valid_len
    );
    assert!(data[seg.valid_len as usize..].iter().all(|&b| b == 0));
    let r = recover(&fsio::RealIo, dir.path()).unwrap();
    assert_eq!(r.records, all);
    assert_eq!(r.torn_bytes, 0, "a zero tail is not reported as torn");
    assert_eq!(fs::metadata(&last).unwrap().len(), seg.valid_len);
}

fn expect_corrupt(r: Result<Recovered, WalError>, want_path: &Path, want_offset: usize) {
    match r {
        Err(WalError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, want_path);
            assert_eq!(offset, want_offset as u64);
        }
        other => panic!("expected corruption in {want_path:?} at {want_offset}, got {other:?}"),
    }
}

/// Postmortem (issue 8): a flipped high bit of a record's length made the record seem to
/// run past the end of the file; recovery took it for a torn tail and truncated every
/// acknowledged write after it.
#[test]
fn flipped_length_bit_mid_segment_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), &[5]);
    let path = segment_path(dir.path(), 1);
    let mut data = fs::read(&path).unwrap();
    let at = record_offsets(&data)[2];
    data[at + 3] ^= 0x80;
    fs::write(&path, &data).unwrap();
    expect_corrupt(recover(&fsio::RealIo, dir.path()), &path, at);
    assert_eq!(fs::read(&path).unwrap(), data, "recovery modified the file");
}

#[test]
fn flipped_length_bit_in_a_non_last_segment_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), &[3, 3]);
    let path = segment_path(dir.path(), 1);
    let mut data = fs::read(&path).unwrap();
    // The last record of a non-last segment: "runs past the end" is no excuse there.
    let at = *record_offsets(&data).last().unwrap();
    data[at + 3] ^= 0x80;
    fs::write(&path, &data).unwrap();
    let last_before = fs::read(segment_path(dir.path(), 2)).unwrap();
    expect_corrupt(recover(&fsio::RealIo, dir.path()), &path, at);
    assert_eq!(fs::read(&path).unwrap(), data, "recovery modified the file");
    assert_eq!(fs::read(segment_path(dir.path(), 2)).unwrap(), last_before);
}

#[test]
fn a_torn_tail_in_a_non_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), &[3, 3]);
    let path = segment_path(dir.path(), 1);
    let mut data = fs::read(&path).unwrap();
    let at = *record_offsets(&data).last().unwrap();
    data.truncate(data.len() - 3);
    fs::write(&path, &data).unwrap();
    expect_corrupt(recover(&fsio::RealIo, dir.path()), &path, at);
    assert_eq!(fs::read(&path).unwrap(), data, "recovery modified the file");
}

/// Relaxed mode syncs on schedule even when the queue never goes quiet. The sink (on the
/// writer thread) queues the next append before the writer looks for work again, so the
/// writer never finds its queue empty and never times out waiting: only the scheduled
/// check after each batch can sync. No speed is asserted: the clock is read only to know
/// that an interval has passed since an observation, after which the writer's own rule
/// ("dirty and the interval passed after a batch: sync") forces an fsync before the next
/// batch, however slow the machine.
#[test]
fn relaxed_mode_syncs_on_schedule_under_nonstop_appends() {
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(2);
    // (when the sink ran, fsyncs completed by then) per batch.
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, u64)>();
    let me: Arc<Mutex<Option<WalWriter<u64>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (me2, stop2) = (me.clone(), stop.clone());
    let sink: DurableSink<u64> = Box::new(move |tokens, r| {
        r.expect("WAL write");
        let mut slot = lock(&me2);
        if stop2.load(std::sync::atomic::Ordering::Acquire) {
            *slot = None; // drop our handle so the thread can exit
            return;
        }
        if let Some(w) = slot.as_ref() {
            let next = tokens.last().expect("a batch has appends") + 1;
            w.append(record_of(next), next)
                .map_err(|(e, _)| e)
                .expect("one append in flight fits the queue");
            let _ = tx.send((Instant::now(), w.fsyncs()));
        }
    });
    let w = WalWriter::start(
        fsio::real(),
        dir.path(),
        1,
        Durability::Relaxed { interval },
        64,
        sink,
    )
    .unwrap();
    *lock(&me) = Some(w.clone());
    w.append(record_of(0), 0).map_err(|(e, _)| e).unwrap();
    let mut batches = 0u64;
    for round in 0..3 {
        // Observe the count at some batch; then wait for a batch that ran a full interval
        // later (its post-batch check must sync unless a sync already happened since);
        // the batch after that one reports the fsync.
        let (seen_at, before) = rx.recv().unwrap();
        let (mut at, mut fsyncs) = rx.recv().unwrap();
        batches += 2;
        while at < seen_at + interval {
            (at, fsyncs) = rx.recv().unwrap();
            batches += 1;
        }
        if fsyncs == before {
            (_, fsyncs) = rx.recv().unwrap();
            batches += 1;
        }
        assert!(
            fsyncs > before,
            "round {round}: no fsync within an interval of nonstop appends \
             ({batches} batches so far, {fsyncs} fsyncs)"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
}
