//! The WAL's on-disk format (version 4; version 3 is still read) and the pure parser that
//! decides, for one segment's bytes, which records are valid, what is a torn tail, and what
//! is damage. No I/O.
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
//! Format 2 (the same day, before batches) is refused by version, like format 1. Format 3
//! differs from format 4 only in each record's payload checksum (the first 8 bytes of the
//! payload's blake3 where format 4 has its CRC-32): this build reads both, and writes only
//! format 4 (the writer never appends to an older segment: it starts a new one instead).
//!
//! Why CRC-32 (format 4, 2026-12-02): a payload checksum is there to catch torn writes and
//! bit rot, not an adversary (the header checksums, seeded with the segment's salt, are what
//! keeps a planted record from passing). CRC-32 finds every burst of up to 32 bits, every
//! flip of up to three bits in a record of up to 11 KiB (of two bits in a larger one), and
//! other damage but for a chance of 2^-32 per record; and it costs about a tenth of blake3
//! on a short record, a cost every write pays (it was ~1,400 instructions per 100-byte put,
//! the largest single cost of the WAL writer thread). PostgreSQL's WAL and RocksDB's log
//! use a CRC-32 the same way.

use super::WalError;
use std::path::Path;

/// First bytes of every format-2 (and later) segment. Bytes 0..12 (magic and version) keep
/// this layout in every future format, so an old build can always say which format it met.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TROUPWAL";
/// The format this build writes.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this build reads.
pub const OLDEST_READ: u32 = 3;
/// `[magic: 8][format: u32 LE][segment: u64 LE][salt: u64 LE][crc32 of bytes 0..28: u32 LE]`.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// `[magic: 4 "TBAT"][body length: u32 LE][synced_before: u64 LE]
/// [crc32 of the salt (u64 LE) then bytes 0..16: u32 LE]`.
pub const BATCH_HEADER_LEN: usize = 20;
const BATCH_MAGIC: [u8; 4] = *b"TBAT";
/// `[len: u32 LE][payload checksum: u64 LE][crc32 of bytes 0..12: u32 LE]`. The payload
/// checksum is the payload's CRC-32 as a u64 in format 4, the first 8 bytes of its blake3 in
/// format 3.
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
    header_in(FORMAT_VERSION, n, salt)
}

/// A segment header of format `format` (an older one only for tests and tools).
pub(crate) fn header_in(format: u32, n: u64, salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&format.to_le_bytes());
    h[12..20].copy_from_slice(&n.to_le_bytes());
    h[20..28].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether this build reads segments of format `format`.
fn readable(format: u32) -> bool {
    (OLDEST_READ..=FORMAT_VERSION).contains(&format)
}

/// What the header of a segment in a format this build reads says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// [`OLDEST_READ`]..=[`FORMAT_VERSION`].
    pub format: u32,
    pub salt: u64,
}

/// The header of a segment whose header (`data[..SEGMENT_HEADER_LEN]`) checks out and names
/// a format this build reads.
pub fn segment_head(data: &[u8]) -> Option<Head> {
    let h = data.get(..SEGMENT_HEADER_LEN)?;
    let format = u32_at(h, 8);
    let ok =
        h[..8] == SEGMENT_MAGIC && readable(format) && crc32fast::hash(&h[..28]) == u32_at(h, 28);
    ok.then(|| Head {
        format,
        salt: u64_at(h, 20),
    })
}

/// The salt of a segment whose header checks out ([`segment_head`]).
pub fn segment_salt(data: &[u8]) -> Option<u64> {
    segment_head(data).map(|h| h.salt)
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
    let start = out.len();
    encode_record_unsealed(rec, out);
    seal_records(&mut out[start..]);
}

/// The bytes `rec` takes in the log (header and payload).
pub fn encoded_len(rec: &WalRecord) -> usize {
    RECORD_HEADER_LEN + MIN_PAYLOAD + rec.key.len() + rec.value.as_ref().map_or(0, Vec::len)
}

/// Appends `rec` to `out` with its two checksums left zero: [`seal_records`] fills them in.
/// The Memtable encodes this way on the event loop, and the WAL writer thread seals every
/// appended run of records before its write(2), so the CRC-32 of each payload costs the
/// request path nothing, except for a relaxed group the Memtable writes itself (at most 8
/// KiB: `WalWriter::append_now`), which it seals on the loop.
pub fn encode_record_unsealed(rec: &WalRecord, out: &mut Vec<u8>) {
    let whole = encoded_len(rec);
    out.reserve(whole);
    out.extend_from_slice(&((whole - RECORD_HEADER_LEN) as u32).to_le_bytes());
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
}

/// Fills in the payload and header checksums of every record in `records`, a run of whole
/// records as [`encode_record_unsealed`] writes them (sealing a sealed record again changes
/// nothing), in this build's format: only for a segment of [`FORMAT_VERSION`]. `false` if
/// the run does not end on a record boundary: a bug upstream, and the records from there on
/// stay unsealed, so recovery would find them damaged, never wrong.
pub fn seal_records(records: &mut [u8]) -> bool {
    seal_in(FORMAT_VERSION, records)
}

/// [`seal_records`] in format `format`.
fn seal_in(format: u32, records: &mut [u8]) -> bool {
    let mut at = 0;
    while at < records.len() {
        let Some(head) = records.get(at..at + 4) else {
            return false;
        };
        let len = u32_at(head, 0) as usize;
        let end = at + RECORD_HEADER_LEN + len;
        if end > records.len() {
            return false;
        }
        let sum = payload_checksum(format, &records[at + RECORD_HEADER_LEN..end]);
        records[at + 4..at + 12].copy_from_slice(&sum.to_le_bytes());
        let crc = crc32fast::hash(&records[at..at + 12]);
        records[at + 12..at + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    true
}

/// A whole segment `n` as the `sync`-mode writer leaves it: one batch per element of
/// `batches`, each with `synced_before` at its own start. For tests and tools.
pub fn encode_segment(n: u64, salt: u64, batches: &[Vec<WalRecord>]) -> Vec<u8> {
    encode_segment_in(FORMAT_VERSION, n, salt, batches)
}

/// [`encode_segment`] in format `format` (an older one only for tests and tools).
pub(crate) fn encode_segment_in(
    format: u32,
    n: u64,
    salt: u64,
    batches: &[Vec<WalRecord>],
) -> Vec<u8> {
    let mut out = header_in(format, n, salt).to_vec();
    for batch in batches {
        let start = out.len();
        out.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
        batch
            .iter()
            .for_each(|r| encode_record_unsealed(r, &mut out));
        seal_in(format, &mut out[start + BATCH_HEADER_LEN..]);
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

/// A record payload's checksum in format `format`: its CRC-32 (format 4), or the first 8
/// bytes of its blake3 (formats 1 and 3).
fn payload_checksum(format: u32, payload: &[u8]) -> u64 {
    if format >= 4 {
        u64::from(crc32fast::hash(payload))
    } else {
        let h = blake3::hash(payload);
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
    }
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

/// The record of a format-`format` segment at the start of `rest` and its length, or why not
/// (`true`: it runs past the end of `rest`).
fn record_at(format: u32, rest: &[u8]) -> Result<(WalRecord, usize), (Damage, bool)> {
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
    if payload_checksum(format, payload) != u64_at(rest, 4) {
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
fn parse_batch(data: &[u8], start: usize, head: Head) -> Result<(Vec<WalRecord>, usize), BadBatch> {
    let Some((len, _)) = batch_at(data, start, head.salt) else {
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
        match record_at(head.format, &present[pos..]) {
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
        .is_some_and(|p| payload_checksum(1, p) == u64_at(data, 4))
}

/// Whether `data` is a prefix of segment `segment`'s header, in a format this build reads,
/// followed by nothing but zeros (the salt and checksum are random, so only the 20 bytes
/// before them can be compared). Format 3 too: an older build may have crashed right after
/// creating the segment.
fn a_torn_header(segment: u64, data: &[u8]) -> bool {
    let written = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let known = written.min(20);
    written <= SEGMENT_HEADER_LEN
        && (OLDEST_READ..=FORMAT_VERSION)
            .any(|f| data[..known] == header_in(f, segment, 0)[..known])
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
    if !readable(version) {
        return Err(WalError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let Some(head) = segment_head(data) else {
        return Err(corrupt(0, Damage::SegmentHeaderChecksum));
    };
    let found = u64_at(data, 12);
    if found != segment {
        return Err(corrupt(0, Damage::WrongSegment { found }));
    }

    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < data.len() {
        match parse_batch(data, pos, head) {
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
                if synced_past(data, bad.at, head.salt).is_some() {
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
    // The header's format if it names one this build reads, even when its checksum fails.
    let format = data
        .get(8..12)
        .map(|b| u32_at(b, 0))
        .filter(|&f| readable(f))
        .unwrap_or(FORMAT_VERSION);
    let mut n = 0;
    let mut pos = from.max(SEGMENT_HEADER_LEN);
    while pos < data.len() {
        match record_at(format, &data[pos..]) {
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
mod tests;
