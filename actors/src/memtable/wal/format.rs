//! The WAL's on-disk format (version 2) and the pure parser that decides, for one segment's
//! bytes, which records are valid, what is a torn tail, and what is damage. No I/O.
//!
//! The layout is documented in the parent module's doc ([`super`]).
//!
//! The torn-tail rule (why it is this strict): a crash can only cut the *last* segment, and
//! only after its last complete record, because the writer syncs a segment before it creates
//! the next one and never writes anywhere but at the end. So after the last valid record of
//! the last segment, a crash mid-append can leave: fewer bytes than a record header; a
//! header whose checksum is valid but whose record runs past the end of the file; a valid
//! header whose payload fails its checksum with nothing but zeros (or nothing) after it; a
//! header that fails its checksum with nothing but zeros (or nothing) after it (this covers
//! a zero-filled tail). Anything else (a bad header or payload with non-zero data after it,
//! or any damage in an older segment) could be an acknowledged write, so it is
//! [`WalError::Corrupt`] and nothing is changed on disk.

use super::WalError;
use std::path::Path;

/// First bytes of every format-2 (and later) segment. Bytes 0..12 (magic and version) keep
/// this layout in every future format, so an old build can always say which format it met.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TROUPWAL";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// `[magic: 8][format: u32 LE][segment: u64 LE][crc32 of bytes 0..20: u32 LE]`.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// `[len: u32 LE][payload checksum: u64 LE][crc32 of bytes 0..12: u32 LE]`.
pub const RECORD_HEADER_LEN: usize = 16;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// seq (8) + kind (1) + key length (4): the smallest payload.
const MIN_PAYLOAD: usize = 13;

/// One logged mutation. `value: None` is a delete (tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub seq: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What is wrong at the offset a [`WalError::Corrupt`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("the segment header is cut short, and only the last segment can be torn")]
    ShortSegmentHeader,
    #[error("the file does not start with a WAL segment header")]
    BadMagic,
    #[error("the segment header fails its checksum")]
    SegmentHeaderChecksum,
    #[error("the segment header names segment {found}, not the one in the file name")]
    WrongSegment { found: u64 },
    #[error("a record header fails its checksum and non-zero data follows it")]
    RecordHeaderChecksum,
    #[error("a record fails its payload checksum and non-zero data follows it")]
    PayloadChecksum,
    #[error("a record passes its checksums but does not decode")]
    Undecodable,
    #[error(
        "a torn record in a segment that is not the last one (segments are synced before the \
         next is created, so only the last can be torn)"
    )]
    TornNotLast,
}

/// The header segment `n` starts with.
pub fn segment_header(n: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&n.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends the encoded form of `rec` to `out`.
pub fn encode_record(rec: &WalRecord, out: &mut Vec<u8>) {
    let value_len = rec.value.as_ref().map_or(0, Vec::len);
    let len = MIN_PAYLOAD + rec.key.len() + value_len;
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN - 4]);
    out.extend_from_slice(&rec.seq.to_le_bytes());
    out.push(if rec.value.is_some() {
        KIND_PUT
    } else {
        KIND_DELETE
    });
    out.extend_from_slice(&(rec.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&rec.key);
    if let Some(v) = &rec.value {
        out.extend_from_slice(v);
    }
    let sum = payload_checksum(&out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 12].copy_from_slice(&sum.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 12]);
    out[start + 12..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

fn payload_checksum(payload: &[u8]) -> u64 {
    let h = blake3::hash(payload);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode_payload(p: &[u8]) -> Option<WalRecord> {
    if p.len() < MIN_PAYLOAD {
        return None;
    }
    let seq = u64_at(p, 0);
    let kind = p[8];
    let key_len = u32_at(p, 9) as usize;
    let key = p
        .get(MIN_PAYLOAD..MIN_PAYLOAD.checked_add(key_len)?)?
        .to_vec();
    let rest = &p[MIN_PAYLOAD + key_len..];
    let value = match kind {
        KIND_PUT => Some(rest.to_vec()),
        KIND_DELETE if rest.is_empty() => None,
        _ => return None,
    };
    Some(WalRecord { seq, key, value })
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// One record at the start of `rest`, as the parser sees it.
enum Step {
    /// A valid record of this many bytes (header included).
    Record(WalRecord, usize),
    /// Consistent with a crash mid-append (only acceptable at the end of the last segment).
    Torn,
    Damaged(Damage),
}

fn step(rest: &[u8]) -> Step {
    if rest.len() < RECORD_HEADER_LEN {
        return Step::Torn;
    }
    let after_header = &rest[RECORD_HEADER_LEN..];
    if crc32fast::hash(&rest[..12]) != u32_at(rest, 12) {
        // A header cut by the crash (its last bytes never reached the disk) is followed by
        // nothing or zeros; anything else after it may be acknowledged records.
        return if all_zero(after_header) {
            Step::Torn
        } else {
            Step::Damaged(Damage::RecordHeaderChecksum)
        };
    }
    let len = u32_at(rest, 0) as usize;
    let Some(payload) = after_header.get(..len) else {
        return Step::Torn; // a valid header whose record runs past the end of the file
    };
    if payload_checksum(payload) != u64_at(rest, 4) {
        return if all_zero(&after_header[len..]) {
            Step::Torn
        } else {
            Step::Damaged(Damage::PayloadChecksum)
        };
    }
    match decode_payload(payload) {
        Some(r) => Step::Record(r, RECORD_HEADER_LEN + len),
        None => Step::Damaged(Damage::Undecodable),
    }
}

/// Result of reading one segment.
#[derive(Debug)]
pub struct SegmentReplay {
    pub records: Vec<WalRecord>,
    /// Bytes of the segment header and valid records; anything after this is a torn tail.
    pub valid_len: u64,
    /// Bytes of the torn tail (only ever non-zero for the last segment).
    pub torn_bytes: u64,
}

/// Whether `data` starts like a format-1 segment (no header; the first record checks out).
fn looks_like_format_1(data: &[u8]) -> bool {
    const V1_HEADER: usize = 12;
    if data.len() < V1_HEADER {
        return false;
    }
    let len = u32_at(data, 0) as usize;
    data.get(V1_HEADER..V1_HEADER.saturating_add(len))
        .is_some_and(|p| payload_checksum(p) == u64_at(data, 4))
}

/// Parses the bytes of segment `segment` (file `path`). `last` says whether it is the last
/// segment, the only one that may end in a torn tail. Pure: the caller truncates the file to
/// `valid_len` if `torn_bytes > 0` (and then the writer rewrites the segment header if that
/// left the file empty).
pub fn parse_segment(
    path: &Path,
    segment: u64,
    data: &[u8],
    last: bool,
) -> Result<SegmentReplay, WalError> {
    let corrupt = |offset: usize, why: Damage| WalError::Corrupt {
        path: path.to_path_buf(),
        segment,
        offset: offset as u64,
        why,
    };
    let torn = |valid_len: usize| {
        Ok(SegmentReplay {
            records: Vec::new(),
            valid_len: valid_len as u64,
            torn_bytes: (data.len() - valid_len) as u64,
        })
    };
    let expected = segment_header(segment);
    // The segment header. A crash between creating a segment and syncing its header leaves
    // the last segment empty, zero-filled, or holding a prefix of the header.
    if data.len() < SEGMENT_HEADER_LEN {
        if last && (expected.starts_with(data) || all_zero(data)) {
            return torn(0);
        }
        return Err(corrupt(0, Damage::ShortSegmentHeader));
    }
    if data[..8] != SEGMENT_MAGIC {
        if last && all_zero(data) {
            return torn(0);
        }
        if looks_like_format_1(data) {
            return Err(WalError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: 1,
            });
        }
        return Err(corrupt(0, Damage::BadMagic));
    }
    let version = u32_at(data, 8);
    if version != FORMAT_VERSION {
        return Err(WalError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if crc32fast::hash(&data[..20]) != u32_at(data, 20) {
        return Err(corrupt(0, Damage::SegmentHeaderChecksum));
    }
    let found = u64_at(data, 12);
    if found != segment {
        return Err(corrupt(0, Damage::WrongSegment { found }));
    }

    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < data.len() {
        match step(&data[pos..]) {
            Step::Record(r, n) => {
                records.push(r);
                pos += n;
            }
            Step::Torn if last => break,
            Step::Torn => return Err(corrupt(pos, Damage::TornNotLast)),
            Step::Damaged(why) => return Err(corrupt(pos, why)),
        }
    }
    Ok(SegmentReplay {
        records,
        valid_len: pos as u64,
        torn_bytes: (data.len() - pos) as u64,
    })
}

/// Counts the records that still check out in `data[from..]`, resynchronising after damage
/// by trying every offset (a damaged length hides where the next record starts). For
/// reporting what a repair drops; a match by chance needs two checksums to agree.
pub fn salvageable_records(data: &[u8], from: usize) -> usize {
    let mut n = 0;
    let mut pos = from.max(SEGMENT_HEADER_LEN);
    while pos < data.len() {
        match step(&data[pos..]) {
            Step::Record(_, len) => {
                n += 1;
                pos += len;
            }
            _ => pos += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn rec(seq: u64, key: &str, value: Option<&str>) -> WalRecord {
        WalRecord {
            seq,
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    /// A whole segment 7 holding `recs`.
    fn segment(recs: &[WalRecord]) -> Vec<u8> {
        let mut out = segment_header(7).to_vec();
        for r in recs {
            encode_record(r, &mut out);
        }
        out
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
        for cut in first_two..data.len() {
            let seg = parse(&data[..cut], true).unwrap();
            assert_eq!(seg.records, recs[..2].to_vec(), "cut at {cut}");
            assert_eq!(seg.valid_len as usize, first_two);
            assert_eq!(seg.torn_bytes as usize, cut - first_two);
            if cut == first_two {
                continue; // a clean end: valid in any segment
            }
            // The same cut in an older segment is damage at the start of the torn record.
            assert_eq!(
                damage(parse(&data[..cut], false)),
                (first_two as u64, Damage::TornNotLast),
                "cut at {cut}"
            );
        }
        assert_eq!(parse(&data, true).unwrap().records, recs);
        assert_eq!(parse(&data, false).unwrap().records, recs);
    }

    #[test]
    fn a_partial_segment_header_is_an_empty_last_segment_but_damage_elsewhere() {
        let header = segment_header(7);
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
        assert_eq!((seg.records.len(), seg.valid_len), (0, 24));
        // Zeros where the header should be (the size reached the disk, the data did not).
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
        let mut other = segment_header(8).to_vec();
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
        // Format 1: `[len u32][blake3-64][payload]` records with no segment header.
        let mut v1 = Vec::new();
        for r in three() {
            let mut e = Vec::new();
            encode_record(&r, &mut e);
            v1.extend_from_slice(&e[..12]);
            v1.extend_from_slice(&e[RECORD_HEADER_LEN..]);
        }
        for last in [true, false] {
            match parse(&v1, last) {
                Err(WalError::UnsupportedFormat { found: 1, .. }) => {}
                other => panic!("expected format 1, got {other:?}"),
            }
        }
        let mut v3 = segment(&three());
        v3[8] = 3;
        match parse(&v3, true) {
            Err(e @ WalError::UnsupportedFormat { found: 3, .. }) => {
                assert!(e.to_string().contains("format 3"), "{e}");
            }
            other => panic!("expected format 3, got {other:?}"),
        }
    }

    #[test]
    fn damage_followed_by_data_is_corruption_at_its_offset_in_any_segment() {
        let recs = three();
        let data = segment(&recs);
        let second = segment(&recs[..1]).len();
        let third = segment(&recs[..2]).len();
        for last in [true, false] {
            // Every bit of the second record's length.
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
            // The last record's length: its own payload follows the bad header.
            let mut bad = data.clone();
            bad[third + 3] ^= 0x80;
            assert_eq!(
                damage(parse(&bad, last)),
                (third as u64, Damage::RecordHeaderChecksum)
            );
        }
    }

    #[test]
    fn a_garbled_last_record_with_only_zeros_after_it_is_a_torn_tail() {
        let recs = three();
        let mut data = segment(&recs);
        let third = segment(&recs[..2]).len();
        let end = data.len();
        data[end - 1] ^= 0xff; // the last payload byte
        data.extend_from_slice(&[0u8; 64]);
        let seg = parse(&data, true).unwrap();
        assert_eq!(seg.records, recs[..2].to_vec());
        assert_eq!(seg.valid_len as usize, third);
        // A header cut mid-way: its tail (and the payload) never reached the disk.
        let mut data = segment(&recs);
        data[third + 8..].fill(0);
        assert_eq!(parse(&data, true).unwrap().valid_len as usize, third);
        assert_eq!(
            damage(parse(&data, false)),
            (third as u64, Damage::TornNotLast)
        );
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
            (valid as u64, Damage::TornNotLast)
        );
    }

    #[test]
    fn salvage_counts_the_records_after_a_damaged_length() {
        let recs: Vec<_> = (0..10).map(|i| rec(i, "k", Some("v"))).collect();
        let mut data = segment(&recs);
        let at = segment(&recs[..4]).len();
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
            0..20)) {
            let recs: Vec<WalRecord> = recs.into_iter()
                .map(|(seq, key, value)| WalRecord { seq, key, value }).collect();
            let seg = parse(&segment(&recs), false).unwrap();
            prop_assert_eq!(seg.records, recs);
            prop_assert_eq!(seg.torn_bytes, 0);
        }

        /// Any single flipped bit after the segment header, in the last segment or not,
        /// either refuses (corruption) or, only in the last segment, drops a tail that
        /// holds nothing but the damaged record: never a valid record after the damage.
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
                    prop_assert_eq!(seg.records.len(), n - 1, "more than the damaged record dropped");
                    prop_assert_eq!(&seg.records[..], &recs[..n - 1]);
                }
                Err(WalError::Corrupt { offset, .. }) => prop_assert!(offset as usize <= at),
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
    }
}
