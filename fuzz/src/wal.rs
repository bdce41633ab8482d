//! Target `wal`: the WAL segment parser that start-up recovery runs on every segment
//! ([`parse_segment`], `memtable/wal/format.rs`) and the offline repair tool's planner
//! ([`repair::plan`]) and helpers.
//!
//! The first byte picks the mode:
//! - even: the rest is a segment. Bits 1..4 say which checksums to recompute first
//!   (segment header, batch headers, record headers, record payloads), so that the fuzzer
//!   gets past them. Checked: no panic; a recovered segment accounts for every byte; a
//!   segment cut to what recovery kept parses again to the same records, as the last
//!   segment and (once it has a header) as an older one, which it becomes when the writer
//!   moves on.
//! - odd: a crash. A `sync`-mode segment is built with the real encoder from records taken
//!   from the input, then damaged as a power cut can (the last batch, never synced, is cut
//!   short and/or has a zeroed range) or as bit rot does (one byte of an earlier, synced
//!   batch flipped). Checked: the documented recovery rule (`format.rs`, "Which damage is a
//!   torn tail"): a torn last batch is dropped whole and everything before it is kept; a
//!   flipped synced byte is refused as corruption.

use crate::Bytes;
use std::path::Path;
use troupe_actors::memtable::wal::format::{
    self, encode_segment, parse_segment, WalRecord, BATCH_HEADER_LEN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use troupe_actors::memtable::wal::{repair, WalError};

const FIX_SEGMENT_HEADER: u8 = 1 << 1;
const FIX_BATCH_HEADERS: u8 = 1 << 2;
const FIX_RECORD_HEADERS: u8 = 1 << 3;
const FIX_PAYLOADS: u8 = 1 << 4;

pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    if mode & 1 == 0 {
        let cut = usize::from(b.u16());
        let mut seg = b.rest().to_vec();
        fix_checksums(&mut seg, mode);
        let n = if seg.len() >= 20 { u64_at(&seg, 12) } else { 0 };
        parse_checked(n, &seg);
        tools(n, &seg, cut);
    } else {
        crash(&mut b);
    }
}

fn path() -> &'static Path {
    Path::new("/fuzz/wal/00000000000000000000.wal")
}

/// Parses `seg` as the last and as an older segment and checks what recovery relies on.
pub fn parse_checked(n: u64, seg: &[u8]) {
    for last in [false, true] {
        let Ok(r) = parse_segment(path(), n, seg, last) else {
            continue;
        };
        assert_eq!(
            r.valid_len + r.torn_bytes,
            seg.len() as u64,
            "recovery lost track of bytes"
        );
        assert!(last || r.torn_bytes == 0, "an older segment was torn");
        let kept = &seg[..r.valid_len as usize];
        let again = parse_segment(path(), n, kept, true)
            .unwrap_or_else(|e| panic!("the segment recovery kept does not parse: {e}"));
        assert_eq!(again.records, r.records, "recovery is not idempotent");
        assert_eq!(again.torn_bytes, 0, "recovery is not idempotent");
        if kept.len() >= SEGMENT_HEADER_LEN {
            let older = parse_segment(path(), n, kept, false).unwrap_or_else(|e| {
                panic!("the segment recovery kept does not parse once a newer one exists: {e}")
            });
            assert_eq!(older.records, r.records);
        }
    }
}

/// The repair tool's entry points on arbitrary bytes (`cut` is taken modulo the length).
fn tools(n: u64, seg: &[u8], cut: usize) {
    let cut = cut % (seg.len() + 1);
    let _ = repair::plan(path(), n, seg, cut as u64);
    let _ = format::cut_segment(seg, cut);
    let _ = format::record_offsets(seg);
    let _ = format::salvageable_records(seg, cut);
}

/// Recomputes the checksums `mode` names over whatever structure the bytes describe.
pub fn fix_checksums(seg: &mut [u8], mode: u8) {
    if seg.len() < SEGMENT_HEADER_LEN {
        return;
    }
    // Format 3 if the bytes say so, else this build's: both are read, each with its own
    // payload checksum.
    let format = if u32_at(seg, 8) == 3 {
        3
    } else {
        format::FORMAT_VERSION
    };
    if mode & FIX_SEGMENT_HEADER != 0 {
        seg[..8].copy_from_slice(&format::SEGMENT_MAGIC);
        seg[8..12].copy_from_slice(&format.to_le_bytes());
        let crc = crc32fast::hash(&seg[..28]);
        seg[28..32].copy_from_slice(&crc.to_le_bytes());
    }
    let salt = u64_at(seg, 20);
    let mut pos = SEGMENT_HEADER_LEN;
    while pos + BATCH_HEADER_LEN <= seg.len() && &seg[pos..pos + 4] == b"TBAT" {
        if mode & FIX_BATCH_HEADERS != 0 {
            let mut c = crc32fast::Hasher::new();
            c.update(&salt.to_le_bytes());
            c.update(&seg[pos..pos + 16]);
            let crc = c.finalize();
            seg[pos + 16..pos + 20].copy_from_slice(&crc.to_le_bytes());
        }
        let body = pos + BATCH_HEADER_LEN;
        let end = body.saturating_add(u32_at(seg, pos + 4) as usize);
        let mut r = body;
        while r + RECORD_HEADER_LEN <= end.min(seg.len()) {
            let len = u32_at(seg, r) as usize;
            let payload = r + RECORD_HEADER_LEN;
            if mode & FIX_PAYLOADS != 0 && payload.saturating_add(len) <= seg.len() {
                let p = &seg[payload..payload + len];
                let sum: [u8; 8] = if format == 3 {
                    blake3::hash(p).as_bytes()[..8].try_into().expect("8 bytes")
                } else {
                    u64::from(crc32fast::hash(p)).to_le_bytes()
                };
                seg[r + 4..r + 12].copy_from_slice(&sum);
            }
            if mode & FIX_RECORD_HEADERS != 0 {
                let crc = crc32fast::hash(&seg[r..r + 12]);
                seg[r + 12..r + 16].copy_from_slice(&crc.to_le_bytes());
            }
            r = payload.saturating_add(len);
        }
        pos = end;
    }
}

/// A segment built by the real encoder, damaged as a crash or bit rot would.
fn crash(b: &mut Bytes<'_>) {
    let n = u64::from(b.u8());
    let salt = b.u64();
    let batches: Vec<Vec<WalRecord>> = (0..1 + b.u8() % 4)
        .map(|_| {
            (0..b.u8() % 4)
                .map(|_| {
                    let seq = u64::from(b.u8());
                    let kind = b.u8();
                    let key_len = usize::from(kind % 16);
                    let key = b.take(key_len).to_vec();
                    let value = (kind & 0x80 == 0).then(|| {
                        let len = usize::from(b.u8());
                        b.take(len).to_vec()
                    });
                    WalRecord { seq, key, value }
                })
                .collect()
        })
        .collect();
    let seg = encode_segment(n, salt, &batches);
    let last_start = encode_segment(n, salt, &batches[..batches.len() - 1]).len();
    let span = seg.len() - last_start;
    let all: Vec<WalRecord> = batches.concat();
    let before_last: Vec<WalRecord> = batches[..batches.len() - 1].concat();
    // A batch header inside a key or value with the segment's salt: the salt is random in
    // a real segment, so a client cannot plant one; here the input knows it.
    let planted = seg.windows(4).filter(|w| w == b"TBAT").count() != batches.len();

    let what = b.u8();
    let mut damaged = seg.clone();
    if what % 4 == 3 {
        // Bit rot in a synced batch (not the last): refused, whatever follows.
        if last_start <= SEGMENT_HEADER_LEN {
            return;
        }
        let at = SEGMENT_HEADER_LEN + usize::from(b.u16()) % (last_start - SEGMENT_HEADER_LEN);
        damaged[at] ^= b.u8() | 1;
        let r = parse_segment(path(), n, &damaged, true);
        assert!(
            matches!(r, Err(WalError::Corrupt { .. })),
            "a flipped byte at {at} in a synced batch was not refused: {r:?}"
        );
        return;
    }
    // A power cut in the last batch: a zeroed range (sectors that never reached the disk)
    // and/or a cut (the file's size was not updated).
    if what & 1 != 0 {
        let from = last_start + usize::from(b.u16()) % span;
        let len = usize::from(b.u16()) % (seg.len() - from + 1);
        damaged[from..from + len].fill(0);
    }
    if what & 2 != 0 {
        let cut = last_start + usize::from(b.u16()) % (span + 1);
        damaged.truncate(cut);
    }
    let r = parse_segment(path(), n, &damaged, true);
    if planted {
        return;
    }
    let r = r.unwrap_or_else(|e| panic!("a torn last batch was refused: {e}"));
    if damaged == seg {
        assert_eq!(r.records, all);
        assert_eq!(r.torn_bytes, 0);
    } else {
        assert_eq!(r.records, before_last, "a torn batch was not dropped whole");
        assert_eq!(r.valid_len, last_start as u64);
    }
    parse_checked(n, &damaged);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
