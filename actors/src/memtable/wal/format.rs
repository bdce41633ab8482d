//! The WAL's on-disk format (version 3) and the pure parser that decides, for one segment's
//! bytes, which records are valid, what is a torn tail, and what is damage. No I/O.
//!
//! The layout is documented in the parent module's doc ([`super`]). Each group commit (one
//! `write` and, in `sync` mode, one `fdatasync`) is one *batch*: a batch header, then the
//! batch's records. The header says how long the batch is and `synced_before`: the segment
//! offset known durable when the batch was written (sync mode: the batch's own start, since
//! the batch before it was fdatasynced before this one was written; relaxed mode: the end of
//! the last completed fdatasync).
//!
//! # Which damage is a torn tail
//!
//! A crash can only damage bytes that were never synced, and the writer syncs a segment
//! before it creates the next one, so an older segment has no torn tail: any damage there is
//! [`WalError::Corrupt`]. In the last segment the unsynced bytes may reach the disk in any
//! order (page-cache writeback and the device promise no order among unsynced sectors), so
//! a crash mid-commit can leave a zeroed sector *followed by* intact records of the same
//! batch. Recovery therefore parses batch by batch; at the first damage, at offset `X` in the
//! batch starting at `B` (`X = B` when the batch header itself is bad or cut):
//! - if some well-formed batch header at an offset after `X` says `synced_before > X`, the
//!   bytes at `X` were durable before that batch was written, so no crash explains the
//!   damage: corruption, nothing is changed;
//! - otherwise it is a torn tail: the segment is cut at `B` (the whole batch and everything
//!   after it are dropped).
//!
//! Why no acknowledged write is dropped in `sync` mode: a crash damages only unsynced bytes;
//! a batch's records are acknowledged only after the fdatasync of the whole batch returned,
//! and the next batch is written only after that (bytes a killed process left unsynced are
//! synced when the writer reopens the segment, before any batch claims them). So after a
//! power cut the first damaged batch is the one being committed: none of its records was
//! acknowledged and nothing after it was written, and dropping it loses nothing
//! acknowledged; and no later intact header can claim it synced, so a crash never refuses.
//! Real damage (bit rot) to a synced batch is refused whenever an intact batch header
//! follows it, that is everywhere but in the final batch of the last segment (or when the
//! damage also destroyed every later header): there it reads like a crash mid-commit and
//! the batch is dropped.
//! In `relaxed` mode acknowledged writes after the last fdatasync may be lost on power
//! failure (the documented trade-off); what is recovered is still a prefix of the log.
//!
//! A well-formed batch header has the batch magic, a valid checksum, and a `synced_before`
//! not past its own offset (the writer never claims bytes it has not written), so the damage
//! can never lie before the `synced_before` of a batch already read. The header checksum is
//! seeded with the segment's random salt (in the segment header): a client cannot plant a
//! header that passes for a real one inside a value, which would make a torn tail look like
//! corruption and keep the node from starting.
//!
//! Format 2 (the same day, before batches) is refused by version, like format 1.

use super::WalError;
use std::path::Path;

/// First bytes of every format-2 (and later) segment. Bytes 0..12 (magic and version) keep
/// this layout in every future format, so an old build can always say which format it met.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TROUPWAL";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;
/// `[magic: 8][format: u32 LE][segment: u64 LE][salt: u64 LE][crc32 of bytes 0..28: u32 LE]`.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// `[magic: 4 "TBAT"][body length: u32 LE][synced_before: u64 LE]
/// [crc32 of the salt (u64 LE) then bytes 0..16: u32 LE]`.
pub const BATCH_HEADER_LEN: usize = 20;
const BATCH_MAGIC: [u8; 4] = *b"TBAT";
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
    #[error("a batch header is damaged in bytes known to have been synced")]
    BatchHeader,
    #[error("a record header fails its checksum in bytes known to have been synced")]
    RecordHeaderChecksum,
    #[error("a record fails its payload checksum in bytes known to have been synced")]
    PayloadChecksum,
    #[error("a record passes its checksums but does not decode")]
    Undecodable,
    #[error("a record runs past the end of its batch")]
    RecordOverrunsBatch,
    #[error(
        "a torn batch in a segment that is not the last one (segments are synced before the \
         next is created, so only the last can be torn)"
    )]
    TornNotLast,
}

/// A fresh random salt for a new segment.
pub fn new_salt() -> u64 {
    rand::random()
}

/// The header segment `n` starts with.
pub fn segment_header(n: u64, salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&n.to_le_bytes());
    h[20..28].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The salt of a segment whose header (`data[..SEGMENT_HEADER_LEN]`) checks out.
pub fn segment_salt(data: &[u8]) -> Option<u64> {
    let h = data.get(..SEGMENT_HEADER_LEN)?;
    let ok = h[..8] == SEGMENT_MAGIC
        && u32_at(h, 8) == FORMAT_VERSION
        && crc32fast::hash(&h[..28]) == u32_at(h, 28);
    ok.then(|| u64_at(h, 20))
}

fn batch_crc(salt: u64, h: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&salt.to_le_bytes());
    c.update(&h[..16]);
    c.finalize()
}

/// The header of a batch of `body_len` bytes of records, written when the segment was known
/// durable up to `synced_before`.
pub fn batch_header(salt: u64, body_len: u32, synced_before: u64) -> [u8; BATCH_HEADER_LEN] {
    let mut h = [0u8; BATCH_HEADER_LEN];
    h[..4].copy_from_slice(&BATCH_MAGIC);
    h[4..8].copy_from_slice(&body_len.to_le_bytes());
    h[8..16].copy_from_slice(&synced_before.to_le_bytes());
    let crc = batch_crc(salt, &h);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A well-formed batch header at `data[at..]`: its body length and `synced_before`.
fn batch_at(data: &[u8], at: usize, salt: u64) -> Option<(usize, u64)> {
    let h = data.get(at..at.checked_add(BATCH_HEADER_LEN)?)?;
    if h[..4] != BATCH_MAGIC || batch_crc(salt, h) != u32_at(h, 16) {
        return None;
    }
    let synced_before = u64_at(h, 8);
    (synced_before <= at as u64).then_some((u32_at(h, 4) as usize, synced_before))
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

/// A whole segment `n` as the `sync`-mode writer leaves it: one batch per element of
/// `batches`, each with `synced_before` at its own start. For tests and tools.
pub fn encode_segment(n: u64, salt: u64, batches: &[Vec<WalRecord>]) -> Vec<u8> {
    let mut out = segment_header(n, salt).to_vec();
    for batch in batches {
        let start = out.len();
        out.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
        batch.iter().for_each(|r| encode_record(r, &mut out));
        let len = u32::try_from(out.len() - start - BATCH_HEADER_LEN).expect("a small batch");
        out[start..start + BATCH_HEADER_LEN].copy_from_slice(&batch_header(
            salt,
            len,
            start as u64,
        ));
    }
    out
}

/// Offsets of the records of a segment, walking its well-formed batch headers (records are
/// taken on trust). For tests and tools.
pub fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(salt) = segment_salt(data) else {
        return out;
    };
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some((len, _)) = batch_at(data, pos, salt) {
        let end = (pos + BATCH_HEADER_LEN + len).min(data.len());
        let mut r = pos + BATCH_HEADER_LEN;
        while r + RECORD_HEADER_LEN <= end {
            out.push(r);
            r += RECORD_HEADER_LEN + u32_at(data, r) as usize;
        }
        pos = end;
    }
    out
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

/// The record at the start of `rest` and its length, or why not (`true`: it runs past the
/// end of `rest`).
fn record_at(rest: &[u8]) -> Result<(WalRecord, usize), (Damage, bool)> {
    if rest.len() < RECORD_HEADER_LEN {
        return Err((Damage::RecordOverrunsBatch, true));
    }
    if crc32fast::hash(&rest[..12]) != u32_at(rest, 12) {
        return Err((Damage::RecordHeaderChecksum, false));
    }
    let len = u32_at(rest, 0) as usize;
    let Some(payload) = rest[RECORD_HEADER_LEN..].get(..len) else {
        return Err((Damage::RecordOverrunsBatch, true));
    };
    if payload_checksum(payload) != u64_at(rest, 4) {
        return Err((Damage::PayloadChecksum, false));
    }
    match decode_payload(payload) {
        Some(r) => Ok((r, RECORD_HEADER_LEN + len)),
        None => Err((Damage::Undecodable, false)),
    }
}

/// The first damage in a batch.
struct BadBatch {
    at: usize,
    why: Damage,
    /// The file ends inside the batch before the damage could be told from a cut.
    cut: bool,
}

/// Parses the batch at `data[start..]`: its records and where the next batch starts.
fn parse_batch(data: &[u8], start: usize, salt: u64) -> Result<(Vec<WalRecord>, usize), BadBatch> {
    let Some((len, _)) = batch_at(data, start, salt) else {
        let cut = data.len() - start < BATCH_HEADER_LEN;
        return Err(BadBatch {
            at: start,
            why: Damage::BatchHeader,
            cut,
        });
    };
    let body = start + BATCH_HEADER_LEN;
    let end = body + len;
    let present = &data[body..end.min(data.len())];
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < present.len() {
        match record_at(&present[pos..]) {
            Ok((r, n)) => {
                records.push(r);
                pos += n;
            }
            Err((why, overrun)) => {
                let cut = overrun && end > data.len();
                return Err(BadBatch {
                    at: body + pos,
                    why,
                    cut,
                });
            }
        }
    }
    if end > data.len() {
        return Err(BadBatch {
            at: data.len(),
            why: Damage::RecordOverrunsBatch,
            cut: true,
        });
    }
    Ok((records, end))
}

/// The offset of a well-formed batch header after `x` that says `x` had been synced.
fn synced_past(data: &[u8], x: usize, salt: u64) -> Option<usize> {
    let last = data.len().checked_sub(BATCH_HEADER_LEN)?;
    (x + 1..=last).find(|&p| {
        data[p..p + 4] == BATCH_MAGIC
            && batch_at(data, p, salt).is_some_and(|(_, synced)| synced > x as u64)
    })
}

/// Result of reading one segment.
#[derive(Debug)]
pub struct SegmentReplay {
    pub records: Vec<WalRecord>,
    /// Bytes of the segment header and valid batches; anything after this is a torn tail.
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

/// Whether `data` is a prefix of segment `segment`'s header followed by nothing but zeros
/// (the salt and checksum are random, so only the 20 bytes before them can be compared).
fn a_torn_header(segment: u64, data: &[u8]) -> bool {
    let written = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let known = written.min(20);
    written <= SEGMENT_HEADER_LEN && data[..known] == segment_header(segment, 0)[..known]
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
    // The segment header. A crash between creating a segment and syncing its header leaves
    // the last segment empty, or holding a prefix of the header, then maybe zeros. Nothing
    // else is written to a segment before its header is synced.
    if last && segment_salt(data).is_none() && a_torn_header(segment, data) {
        return torn(0);
    }
    if data.len() < SEGMENT_HEADER_LEN {
        return Err(corrupt(0, Damage::ShortSegmentHeader));
    }
    if data[..8] != SEGMENT_MAGIC {
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
    let Some(salt) = segment_salt(data) else {
        return Err(corrupt(0, Damage::SegmentHeaderChecksum));
    };
    let found = u64_at(data, 12);
    if found != segment {
        return Err(corrupt(0, Damage::WrongSegment { found }));
    }

    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < data.len() {
        match parse_batch(data, pos, salt) {
            Ok((batch, next)) => {
                records.extend(batch);
                pos = next;
            }
            Err(bad) if !last => {
                let why = if bad.cut {
                    Damage::TornNotLast
                } else {
                    bad.why
                };
                return Err(corrupt(bad.at, why));
            }
            Err(bad) => {
                if synced_past(data, bad.at, salt).is_some() {
                    return Err(corrupt(bad.at, bad.why));
                }
                break; // torn: drop the batch at `pos` and everything after it
            }
        }
    }
    Ok(SegmentReplay {
        records,
        valid_len: pos as u64,
        torn_bytes: (data.len() - pos) as u64,
    })
}

/// `data[..cut]` as a repair leaves it: if `cut` falls inside the body of a batch, that
/// batch's header is rewritten to end at the cut (returned with its offset, for the
/// repair to write). Whether the result is valid is for [`parse_segment`] to say.
pub fn cut_segment(data: &[u8], cut: usize) -> (Vec<u8>, Option<(usize, [u8; BATCH_HEADER_LEN])>) {
    let mut out = data[..cut].to_vec();
    let Some(salt) = segment_salt(data) else {
        return (out, None);
    };
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < cut {
        let Some((len, synced_before)) = batch_at(data, pos, salt) else {
            break;
        };
        let body = pos + BATCH_HEADER_LEN;
        let end = body + len;
        if cut < body {
            break; // inside the header: the parser reports the batch as damaged
        }
        if cut < end {
            let shorter = u32::try_from(cut - body).expect("shorter than a u32 length");
            let h = batch_header(salt, shorter, synced_before);
            out[pos..body].copy_from_slice(&h);
            return (out, Some((pos, h)));
        }
        pos = end;
    }
    (out, None)
}

/// Counts the records that still check out in `data[from..]`, resynchronising after damage
/// by trying every offset (a damaged length hides where the next record starts). For
/// reporting what a repair drops; a match by chance needs two checksums to agree.
pub fn salvageable_records(data: &[u8], from: usize) -> usize {
    let mut n = 0;
    let mut pos = from.max(SEGMENT_HEADER_LEN);
    while pos < data.len() {
        match record_at(&data[pos..]) {
            Ok((_, len)) => {
                n += 1;
                pos += len;
            }
            Err(_) => pos += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
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
        // did not).
        for cut in 0..SEGMENT_HEADER_LEN {
            for len in [cut + 1, SEGMENT_HEADER_LEN, 600] {
                let mut zeros = header[..cut].to_vec();
                zeros.resize(len, 0);
                assert_eq!(parse(&zeros, true).unwrap().torn_bytes as usize, len);
                assert!(parse(&zeros, false).is_err(), "cut {cut}, len {len}");
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
        let mut v4 = segment(&three());
        v4[8] = 4;
        match parse(&v4, true) {
            Err(e @ WalError::UnsupportedFormat { found: 4, .. }) => {
                assert!(e.to_string().contains("format 4"), "{e}");
            }
            other => panic!("expected format 4, got {other:?}"),
        }
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
}
