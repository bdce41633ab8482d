//! The torn-tail rule, the batch layout and their refusals, on hand-built segments.

use super::*;
use proptest::prelude::*;

const SALT: u64 = 0x5eed_5a17;

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

pub(crate) fn rec(seq: u64, key: &str, value: Option<&str>) -> WalRecord {
    WalRecord {
        seq,
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

/// A whole segment 7 holding `recs`, one batch per record (as the `sync` writer leaves
/// it when writes come one at a time).
fn segment(recs: &[WalRecord]) -> Vec<u8> {
    let batches: Vec<_> = recs.iter().map(|r| vec![r.clone()]).collect();
    encode_segment(7, SALT, &batches)
}

fn parse(data: &[u8], last: bool) -> Result<SegmentReplay, WalError> {
    parse_segment(Path::new("/d/wal/7.wal"), 7, data, last)
}

fn damage(r: Result<SegmentReplay, WalError>) -> (u64, Damage) {
    match r {
        Err(WalError::Corrupt {
            path,
            segment,
            offset,
            why,
        }) => {
            assert_eq!(path, Path::new("/d/wal/7.wal"));
            assert_eq!(segment, 7);
            (offset, why)
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn three() -> Vec<WalRecord> {
    vec![
        rec(1, "a", Some("1")),
        rec(2, "b", None),
        rec(3, "c", Some("333")),
    ]
}

#[test]
fn torn_tail_of_the_last_segment_is_dropped_at_every_cut() {
    let recs = three();
    let data = segment(&recs);
    let first_two = segment(&recs[..2]).len();
    let third = record_offsets(&data)[2];
    for cut in first_two..data.len() {
        let seg = parse(&data[..cut], true).unwrap();
        assert_eq!(seg.records, recs[..2].to_vec(), "cut at {cut}");
        assert_eq!(seg.valid_len as usize, first_two);
        assert_eq!(seg.torn_bytes as usize, cut - first_two);
        if cut == first_two {
            continue; // a clean end: valid in any segment
        }
        // The same cut in an older segment is damage where the cut batch breaks off.
        let at = if cut < third { first_two } else { third };
        assert_eq!(
            damage(parse(&data[..cut], false)),
            (at as u64, Damage::TornNotLast),
            "cut at {cut}"
        );
    }
    assert_eq!(parse(&data, true).unwrap().records, recs);
    assert_eq!(parse(&data, false).unwrap().records, recs);
}

#[test]
fn a_partial_segment_header_is_an_empty_last_segment_but_damage_elsewhere() {
    let header = segment_header(7, SALT);
    for cut in 0..SEGMENT_HEADER_LEN {
        let seg = parse(&header[..cut], true).unwrap();
        assert!(seg.records.is_empty());
        assert_eq!((seg.valid_len, seg.torn_bytes), (0, cut as u64));
        assert_eq!(
            damage(parse(&header[..cut], false)),
            (0, Damage::ShortSegmentHeader)
        );
    }
    let seg = parse(&header, false).unwrap();
    assert_eq!(
        (seg.records.len(), seg.valid_len as usize),
        (0, SEGMENT_HEADER_LEN)
    );
    // A prefix, then zeros where the rest should be (the size reached the disk, the data
    // did not); a format-3 header too (an older build crashed right after creating it).
    for header in [header, header_in(3, 7, SALT)] {
        for cut in 0..SEGMENT_HEADER_LEN {
            for len in [cut + 1, SEGMENT_HEADER_LEN, 600] {
                let mut zeros = header[..cut].to_vec();
                zeros.resize(len, 0);
                assert_eq!(parse(&zeros, true).unwrap().torn_bytes as usize, len);
                assert!(parse(&zeros, false).is_err(), "cut {cut}, len {len}");
            }
        }
    }
    assert_eq!(parse(&[0u8; 10], true).unwrap().torn_bytes, 10);
    assert_eq!(parse(&[0u8; 100], true).unwrap().torn_bytes, 100);
    assert_eq!(damage(parse(&[0u8; 100], false)), (0, Damage::BadMagic));
    assert_eq!(
        damage(parse(b"garbage!", true)),
        (0, Damage::ShortSegmentHeader)
    );
}

#[test]
fn a_damaged_segment_header_is_corruption_even_in_the_last_segment() {
    let data = segment(&three());
    let mut bad = data.clone();
    bad[14] ^= 1; // the segment number
    assert_eq!(
        damage(parse(&bad, true)),
        (0, Damage::SegmentHeaderChecksum)
    );
    let mut other = segment_header(8, SALT).to_vec();
    other.extend_from_slice(&data[SEGMENT_HEADER_LEN..]);
    assert_eq!(
        damage(parse(&other, true)),
        (0, Damage::WrongSegment { found: 8 })
    );
    let mut bad = data.clone();
    bad[0] = b'X';
    assert_eq!(damage(parse(&bad, true)), (0, Damage::BadMagic));
}

#[test]
fn old_and_future_formats_are_refused_by_version() {
    // Format 1: `[len u32][blake3-64][payload]` records with no segment header (format 3's
    // records have the same first 12 bytes).
    let v3 = encode_segment_in(3, 7, SALT, &[three()]);
    let mut v1 = Vec::new();
    for at in record_offsets(&v3) {
        let len = u32_at(&v3, at) as usize;
        v1.extend_from_slice(&v3[at..at + 12]);
        v1.extend_from_slice(&v3[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len]);
    }
    for last in [true, false] {
        match parse(&v1, last) {
            Err(WalError::UnsupportedFormat { found: 1, .. }) => {}
            other => panic!("expected format 1, got {other:?}"),
        }
    }
    // Format 2: the same segment header without the salt, records without batches.
    let mut v2 = SEGMENT_MAGIC.to_vec();
    v2.extend_from_slice(&2u32.to_le_bytes());
    v2.extend_from_slice(&7u64.to_le_bytes());
    let crc = crc32fast::hash(&v2);
    v2.extend_from_slice(&crc.to_le_bytes());
    three().iter().for_each(|r| encode_record(r, &mut v2));
    for last in [true, false] {
        match parse(&v2, last) {
            Err(WalError::UnsupportedFormat { found: 2, .. }) => {}
            other => panic!("expected format 2, got {other:?}"),
        }
    }
    let mut v5 = segment(&three());
    v5[8] = 5;
    match parse(&v5, true) {
        Err(e @ WalError::UnsupportedFormat { found: 5, .. }) => {
            assert!(e.to_string().contains("format 5"), "{e}");
            assert!(e.to_string().contains("reads formats 3 to 4"), "{e}");
        }
        other => panic!("expected format 5, got {other:?}"),
    }
}

/// `segment` with its header relabelled as format `format` (the header checksum fixed).
fn relabelled(segment: &[u8], format: u32) -> Vec<u8> {
    let mut out = segment.to_vec();
    out[8..12].copy_from_slice(&format.to_le_bytes());
    let crc = crc32fast::hash(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Format 3 (blake3 payload checksums) is still read, each segment checked by the format its
/// header names: the same records under the other format's label fail their checksum.
#[test]
fn format_3_segments_are_read_and_each_format_checks_its_own_checksum() {
    let batches = [three()[..1].to_vec(), three()[1..].to_vec()];
    let v3 = encode_segment_in(3, 7, SALT, &batches);
    let v4 = encode_segment(7, SALT, &batches);
    assert_ne!(v3, v4, "only the payload checksums differ");
    assert_eq!(v3.len(), v4.len());
    for last in [true, false] {
        assert_eq!(parse(&v3, last).unwrap().records, three());
        assert_eq!(parse(&v4, last).unwrap().records, three());
    }
    let first = record_offsets(&v4)[0];
    for wrong in [relabelled(&v3, 4), relabelled(&v4, 3)] {
        // A later batch proves the first was synced: damage, not a torn tail.
        assert_eq!(
            damage(parse(&wrong, true)),
            (first as u64, Damage::PayloadChecksum)
        );
    }
    // Salvage counts by the header's format too.
    assert_eq!(salvageable_records(&v3, 0), 3);
    assert_eq!(salvageable_records(&relabelled(&v3, 4), 0), 0);
}

#[test]
fn damage_followed_by_a_later_batch_is_corruption_at_its_offset_in_any_segment() {
    let recs = three();
    let data = segment(&recs);
    let offsets = record_offsets(&data);
    let (second, third) = (offsets[1], offsets[2]);
    for last in [true, false] {
        // Every bit of the second record's length: the third batch says it was synced.
        for bit in 0..32 {
            let mut bad = data.clone();
            bad[second + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                damage(parse(&bad, last)),
                (second as u64, Damage::RecordHeaderChecksum),
                "bit {bit}"
            );
        }
        let mut bad = data.clone();
        bad[second + RECORD_HEADER_LEN + 2] ^= 0x40; // its payload
        assert_eq!(
            damage(parse(&bad, last)),
            (second as u64, Damage::PayloadChecksum)
        );
        // Its batch header's length.
        let mut bad = data.clone();
        bad[second - BATCH_HEADER_LEN + 5] ^= 0x01;
        assert_eq!(
            damage(parse(&bad, last)),
            ((second - BATCH_HEADER_LEN) as u64, Damage::BatchHeader)
        );
    }
    // The last record's length in an older segment (in the last segment nothing
    // after it can tell damage from a crash mid-commit: see the module doc).
    let mut bad = data.clone();
    bad[third + 3] ^= 0x80;
    assert_eq!(
        damage(parse(&bad, false)),
        (third as u64, Damage::RecordHeaderChecksum)
    );
    let seg = parse(&bad, true).unwrap();
    assert_eq!(seg.records, recs[..2].to_vec());
    assert_eq!(seg.valid_len as usize, third - BATCH_HEADER_LEN);
}

/// A power cut during a group commit: the batch's sectors reached the disk out of order,
/// so a zeroed hole is followed by intact records of the same (unacknowledged) batch.
#[test]
fn a_zero_hole_in_the_last_batch_before_intact_records_is_a_torn_tail() {
    let recs: Vec<_> = (0..40).map(|i| rec(i, "key", Some("value"))).collect();
    let data = encode_segment(7, SALT, &[recs[..10].to_vec(), recs[10..].to_vec()]);
    let last_batch = segment_header(7, SALT).len() + BATCH_HEADER_LEN + {
        let mut b = Vec::new();
        recs[..10].iter().for_each(|r| encode_record(r, &mut b));
        b.len()
    };
    for hole in [
        last_batch,
        last_batch + 7,
        last_batch + 100,
        data.len() - 600,
    ] {
        let mut torn = data.clone();
        torn[hole..hole + 512].fill(0);
        assert!(!all_zero(&torn[hole + 512..]), "intact records follow");
        let seg = parse(&torn, true).unwrap();
        assert_eq!(seg.records, recs[..10].to_vec(), "hole at {hole}");
        assert_eq!(seg.valid_len as usize, last_batch, "cut at the batch start");
        assert_eq!(seg.torn_bytes as usize, data.len() - last_batch);
    }
}

/// The same hole in a batch that a later batch's `synced_before` covers: those bytes had
/// been fdatasynced, so no crash explains them.
#[test]
fn a_zero_hole_in_a_batch_a_later_batch_proves_synced_is_corruption() {
    let recs: Vec<_> = (0..40).map(|i| rec(i, "key", Some("value"))).collect();
    let data = encode_segment(7, SALT, &[recs[..30].to_vec(), recs[30..].to_vec()]);
    let offsets = record_offsets(&data);
    let hole = offsets[3] + 5;
    let mut bad = data.clone();
    bad[hole..hole + 512].fill(0);
    assert_eq!(
        damage(parse(&bad, true)),
        (offsets[3] as u64, Damage::RecordHeaderChecksum)
    );
    // Relaxed mode: batches written before a sync share its offset; a batch written
    // after the sync proves every earlier batch durable.
    let mut relaxed = segment_header(7, SALT).to_vec();
    let batch = |out: &mut Vec<u8>, recs: &[WalRecord], synced: u64| {
        let mut body = Vec::new();
        recs.iter().for_each(|r| encode_record(r, &mut body));
        out.extend_from_slice(&batch_header(SALT, body.len() as u32, synced));
        out.extend_from_slice(&body);
    };
    let start = SEGMENT_HEADER_LEN as u64;
    batch(&mut relaxed, &recs[..10], start);
    let second = relaxed.len();
    batch(&mut relaxed, &recs[10..20], start);
    let synced = relaxed.len() as u64;
    batch(&mut relaxed, &recs[20..], synced);
    let mut hole_in_second = relaxed.clone();
    hole_in_second[second + 30..second + 60].fill(0);
    assert!(matches!(
        damage(parse(&hole_in_second, true)),
        (at, Damage::RecordHeaderChecksum | Damage::PayloadChecksum) if at as usize > second
    ));
    // Damage after the sync, before a batch that does not cover it: a torn tail.
    let mut torn = relaxed.clone();
    torn[synced as usize + 30..synced as usize + 60].fill(0);
    let seg = parse(&torn, true).unwrap();
    assert_eq!(seg.records, recs[..20].to_vec());
    assert_eq!(seg.valid_len, synced);
    // Without the third batch, the second is unsynced and its hole is a torn tail.
    let seg = parse(&hole_in_second[..synced as usize], true).unwrap();
    assert_eq!(seg.valid_len as usize, second);
}

#[test]
fn any_damage_in_an_older_segment_is_corruption() {
    let recs: Vec<_> = (0..40).map(|i| rec(i, "key", Some("value"))).collect();
    let data = encode_segment(7, SALT, &[recs[..10].to_vec(), recs[10..].to_vec()]);
    let last_batch = record_offsets(&data)[10] - BATCH_HEADER_LEN;
    let mut hole = data.clone();
    hole[last_batch + 100..last_batch + 612].fill(0);
    assert!(parse(&hole, true).is_ok(), "torn in the last segment");
    let (at, _) = damage(parse(&hole, false));
    assert!(at as usize > last_batch && at as usize <= last_batch + 100);
    let mut header = data.clone();
    header[last_batch..last_batch + BATCH_HEADER_LEN].fill(0);
    assert_eq!(
        damage(parse(&header, false)),
        (last_batch as u64, Damage::BatchHeader)
    );
}

#[test]
fn a_planted_batch_header_inside_a_value_proves_nothing() {
    // A client stores a value holding batch headers that claim the bytes before them
    // were synced; a torn batch holding it must still be a torn tail. Only the salt
    // (which the client never sees) tells the planted headers from real ones.
    let with_salt = |salt: u64| {
        let planted = batch_header(salt, 0, 120);
        let value: Vec<u8> = std::iter::repeat_n(planted, 4).flatten().collect();
        let planted = WalRecord {
            seq: 2,
            key: b"k".to_vec(),
            value: Some(value),
        };
        let recs = vec![rec(1, "a", Some("1")), planted, rec(3, "c", Some("3"))];
        let data = encode_segment(7, SALT, &[recs[..1].to_vec(), recs[1..].to_vec()]);
        let at = record_offsets(&data)[1];
        assert!(
            at < 120 && at + 40 > 120,
            "the planted claim covers the damage"
        );
        let mut torn = data.clone();
        torn[at..at + 8].fill(0);
        (recs, parse(&torn, true))
    };
    let (recs, seg) = with_salt(!SALT);
    assert_eq!(seg.unwrap().records, recs[..1].to_vec());
    let (_, seg) = with_salt(SALT);
    assert_eq!(damage(seg).1, Damage::RecordHeaderChecksum);
}

#[test]
fn a_zero_filled_tail_is_ignored_in_the_last_segment_only() {
    let recs = vec![rec(1, "a", Some("1"))];
    let mut data = segment(&recs);
    let valid = data.len();
    data.extend_from_slice(&[0u8; 100]);
    let seg = parse(&data, true).unwrap();
    assert_eq!(seg.records, recs);
    assert_eq!((seg.valid_len as usize, seg.torn_bytes), (valid, 100));
    assert_eq!(
        damage(parse(&data, false)),
        (valid as u64, Damage::BatchHeader)
    );
}

#[test]
fn a_cut_inside_a_batch_shortens_its_header() {
    let recs: Vec<_> = (0..6).map(|i| rec(i, "key", Some("value"))).collect();
    let data = encode_segment(7, SALT, &[recs[..3].to_vec(), recs[3..].to_vec()]);
    let offsets = record_offsets(&data);
    let (cut, h) = cut_segment(&data, offsets[4]);
    let (at, _) = h.expect("the header is rewritten");
    assert_eq!(at, offsets[3] - BATCH_HEADER_LEN);
    assert_eq!(parse(&cut, false).unwrap().records, recs[..4].to_vec());
    // At a batch boundary nothing is rewritten.
    let (cut, h) = cut_segment(&data, offsets[3] - BATCH_HEADER_LEN);
    assert!(h.is_none());
    assert_eq!(parse(&cut, false).unwrap().records, recs[..3].to_vec());
    // Mid-record: the record is cut short, which the parser refuses.
    let (cut, _) = cut_segment(&data, offsets[4] + 5);
    assert_eq!(
        damage(parse(&cut, false)),
        (offsets[4] as u64, Damage::RecordOverrunsBatch)
    );
}

#[test]
fn salvage_counts_the_records_after_a_damaged_length() {
    let recs: Vec<_> = (0..10).map(|i| rec(i, "k", Some("v"))).collect();
    let mut data = segment(&recs);
    let at = record_offsets(&data)[4];
    assert_eq!(salvageable_records(&data, at), 6);
    data[at + 3] ^= 0x80;
    assert_eq!(salvageable_records(&data, at), 5, "the damaged one is lost");
    assert_eq!(salvageable_records(&data, 0), 9);
}

proptest! {
    #[test]
    fn records_round_trip(recs in proptest::collection::vec(
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..20),
         proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))),
        0..20), split in any::<prop::sample::Index>()) {
        let recs: Vec<WalRecord> = recs.into_iter()
            .map(|(seq, key, value)| WalRecord { seq, key, value }).collect();
        let seg = parse(&segment(&recs), false).unwrap();
        prop_assert_eq!(&seg.records, &recs);
        prop_assert_eq!(seg.torn_bytes, 0);
        let at = split.index(recs.len() + 1);
        let two = encode_segment(7, SALT, &[recs[..at].to_vec(), recs[at..].to_vec()]);
        prop_assert_eq!(parse(&two, false).unwrap().records, recs);
    }

    /// Any single flipped bit after the segment header, in the last segment or not,
    /// either refuses (corruption) or, only in the last segment, drops a tail that
    /// holds nothing but the damaged (last) batch: never a valid record after the damage.
    #[test]
    fn a_flipped_bit_never_drops_records_silently(
        n in 2usize..8, pick in any::<prop::sample::Index>(), bit in 0u8..8, last in any::<bool>()
    ) {
        let recs: Vec<_> = (0..n as u64).map(|i| rec(i, "key", Some("value"))).collect();
        let mut data = segment(&recs);
        let at = SEGMENT_HEADER_LEN + pick.index(data.len() - SEGMENT_HEADER_LEN);
        data[at] ^= 1 << bit;
        match parse(&data, last) {
            Ok(seg) => {
                prop_assert!(last, "damage in an older segment was accepted");
                prop_assert_eq!(seg.records.len(), n - 1, "more than the damaged batch dropped");
                prop_assert_eq!(&seg.records[..], &recs[..n - 1]);
            }
            Err(WalError::Corrupt { offset, .. }) => prop_assert!(offset as usize <= at),
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
    }
}

/// The writer thread seals what the Memtable encodes unsealed: the same bytes as a sealed
/// encoding, whatever the run; a run cut inside a record is refused; and an unsealed
/// record in a segment is damage, so a missed seal could never replay as data.
#[test]
fn sealing_an_unsealed_run_gives_the_sealed_encoding() {
    let recs = [
        rec(1, "a", Some("1")),
        rec(2, "", None),
        rec(3, "key000000000042", Some(&"v".repeat(300))),
    ];
    let (mut sealed, mut unsealed) = (Vec::new(), Vec::new());
    for r in &recs {
        encode_record(r, &mut sealed);
        encode_record_unsealed(r, &mut unsealed);
    }
    assert_ne!(sealed, unsealed);
    let mut run = unsealed.clone();
    assert!(seal_records(&mut run));
    assert_eq!(run, sealed);
    assert!(seal_records(&mut run), "sealing twice");
    assert_eq!(run, sealed);
    let mut cut = unsealed[..unsealed.len() - 1].to_vec();
    assert!(!seal_records(&mut cut));

    let mut seg = segment(&[rec(1, "a", Some("1"))]);
    let at = seg.len() - (RECORD_HEADER_LEN + MIN_PAYLOAD + 2);
    seg[at + 4..at + RECORD_HEADER_LEN].fill(0); // the record's checksums, unsealed
    assert!(parse(&seg, false).is_err());
}
