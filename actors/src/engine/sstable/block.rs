//! Data blocks: encoding (used by the writer) and checked decoding (used by the reader).
//!
//! A block is decoded whole into a `Block` (a sorted `Vec<Entry>`), which is what the block
//! cache holds. Decoding verifies the trailing checksum before looking at any entry, so a
//! flipped byte is reported as corruption rather than producing a wrong entry.

use crate::engine::codec::{block_checksum, put_bytes, put_varint, DecodeError, Decoder};
use crate::engine::entry::Entry;

use super::search::Windows;

/// Checksum + entry count trailer.
pub const BLOCK_TRAILER_LEN: usize = 8;

/// Accumulates entries for one block.
pub struct BlockBuilder {
    buf: Vec<u8>,
    count: u32,
    prev_key: Vec<u8>,
    prefix_compression: bool,
}

impl BlockBuilder {
    pub fn new(prefix_compression: bool) -> Self {
        BlockBuilder {
            buf: Vec::with_capacity(4096 + 512),
            count: 0,
            prev_key: Vec::new(),
            prefix_compression,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the block if finished now.
    pub fn encoded_len(&self) -> usize {
        self.buf.len() + BLOCK_TRAILER_LEN
    }

    pub fn add(&mut self, e: &Entry) {
        let shared = if self.prefix_compression {
            self.prev_key
                .iter()
                .zip(e.key.iter())
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            0
        };
        put_varint(&mut self.buf, shared as u64);
        put_bytes(&mut self.buf, &e.key[shared..]);
        put_varint(&mut self.buf, e.seq);
        match &e.value {
            None => put_varint(&mut self.buf, 0),
            Some(v) => {
                put_varint(&mut self.buf, v.len() as u64 + 1);
                self.buf.extend_from_slice(v);
            }
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(&e.key);
        self.count += 1;
    }

    /// Finish the block, returning its bytes and resetting the builder.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&self.count.to_le_bytes());
        let sum = block_checksum(&out);
        out.extend_from_slice(&sum);
        self.count = 0;
        self.prev_key.clear();
        self.buf = Vec::with_capacity(out.capacity());
        out
    }
}

/// One entry's version and value, borrowed from where it is stored (a block, or a
/// memtable under its read lock): what a point lookup hands its caller instead of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub seq: u64,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Where one entry lives inside a decoded [`Block`].
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// End of this entry's key in `Block::keys` (it starts where the previous one ends).
    key_end: u32,
    seq: u64,
    /// Offset of the value in `Block::raw`; `value_len == TOMBSTONE` marks a delete.
    value_off: u32,
    value_len: u32,
}

const TOMBSTONE: u32 = u32::MAX;

/// A decoded, checksum-verified data block: the block's bytes plus one slot per entry and
/// the full (prefix-expanded) keys packed in one buffer, so decoding costs three
/// allocations however many entries the block holds, and a lookup binary-searches without
/// copying. Entries are materialised (`entry`) only when returned.
#[derive(Debug)]
pub struct Block {
    raw: Vec<u8>,
    keys: Vec<u8>,
    slots: Vec<Slot>,
    /// The keys' search windows (see `search`).
    windows: Windows,
    /// Approximate memory charge for the block cache.
    pub charge: usize,
}

impl Block {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Key of entry `i` (`i < len()`).
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.slots[i - 1].key_end as usize
        };
        &self.keys[start..self.slots[i].key_end as usize]
    }

    /// Entry `i` as an owned record, or `None` past the end.
    pub fn entry(&self, i: usize) -> Option<Entry> {
        let s = self.slots.get(i)?;
        let value = (s.value_len != TOMBSTONE).then(|| {
            let off = s.value_off as usize;
            self.raw[off..off + s.value_len as usize].to_vec()
        });
        Some(Entry {
            key: self.key(i).to_vec(),
            seq: s.seq,
            value,
        })
    }

    /// Index of the first entry whose key is >= `key`.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        self.windows.lower_bound(key, |i| self.key(i))
    }

    /// Index of the first (newest) entry for exactly `key`.
    pub fn position(&self, key: &[u8]) -> Option<usize> {
        let i = self.lower_bound(key);
        (i < self.len() && self.key(i) == key).then_some(i)
    }

    /// The first (newest) entry for exactly `key`.
    pub fn find(&self, key: &[u8]) -> Option<Entry> {
        self.position(key).and_then(|i| self.entry(i))
    }

    /// Entry `i` where it lies in the block (`i < len()`): no copy.
    pub fn entry_ref(&self, i: usize) -> EntryRef<'_> {
        let s = &self.slots[i];
        let value = (s.value_len != TOMBSTONE).then(|| {
            let off = s.value_off as usize;
            &self.raw[off..off + s.value_len as usize]
        });
        EntryRef { seq: s.seq, value }
    }

    /// An empty block with the given cache charge (cache tests).
    #[cfg(test)]
    pub fn empty_with_charge(charge: usize) -> Self {
        Block {
            raw: Vec::new(),
            keys: Vec::new(),
            slots: Vec::new(),
            windows: Windows::default(),
            charge,
        }
    }
}

/// Verify and decode a block, taking ownership of its bytes. `DecodeError::at` is relative
/// to the block start.
pub fn decode_block(mut raw: Vec<u8>) -> Result<Block, DecodeError> {
    if raw.len() < BLOCK_TRAILER_LEN || raw.len() > u32::MAX as usize {
        return Err(DecodeError {
            at: 0,
            what: "block shorter than its trailer",
        });
    }
    let (body, sum) = raw.split_at(raw.len() - 4);
    if block_checksum(body) != sum {
        return Err(DecodeError {
            at: 0,
            what: "data block checksum mismatch",
        });
    }
    let entries_len = body.len() - 4;
    let count_raw = &body[entries_len..];
    let count = u32::from_le_bytes([count_raw[0], count_raw[1], count_raw[2], count_raw[3]]);
    let mut d = Decoder::new(&body[..entries_len]);
    // `count` is checksummed, but cap the pre-allocation anyway.
    let mut slots = Vec::with_capacity((count as usize).min(entries_len));
    let mut keys: Vec<u8> = Vec::with_capacity(entries_len.min(count as usize * 24));
    let mut prev_start = 0usize;
    for _ in 0..count {
        let at = d.pos();
        let shared = d.varint()? as usize;
        let prev_len = keys.len() - prev_start;
        if shared > prev_len {
            return Err(DecodeError {
                at,
                what: "shared prefix longer than previous key",
            });
        }
        let suffix = d.bytes()?;
        // Prefix expansion can outgrow the block many times over; slots address keys with
        // u32 offsets, so refuse (as corruption) rather than wrap.
        if keys.len() + shared + suffix.len() > u32::MAX as usize {
            return Err(DecodeError {
                at,
                what: "expanded keys exceed 4 GiB",
            });
        }
        let start = keys.len();
        keys.extend_from_within(prev_start..prev_start + shared);
        keys.extend_from_slice(suffix);
        prev_start = start;
        let seq = d.varint()?;
        let (value_off, value_len) = match d.varint()? {
            0 => (0, TOMBSTONE),
            n => {
                let len = usize::try_from(n - 1)
                    .ok()
                    .filter(|&l| l < TOMBSTONE as usize)
                    .ok_or(DecodeError {
                        at,
                        what: "value length overflow",
                    })?;
                let off = d.pos();
                d.take(len)?;
                (off as u32, len as u32)
            }
        };
        slots.push(Slot {
            key_end: keys.len() as u32,
            seq,
            value_off,
            value_len,
        });
    }
    if !d.is_empty() {
        return Err(DecodeError {
            at: d.pos(),
            what: "trailing bytes after last entry",
        });
    }
    raw.truncate(entries_len);
    let key_of = |i: usize| {
        let start = if i == 0 {
            0
        } else {
            slots[i - 1].key_end as usize
        };
        &keys[start..slots[i].key_end as usize]
    };
    let windows = Windows::new((0..slots.len()).map(key_of));
    let charge =
        raw.capacity() + keys.capacity() + slots.capacity() * 24 + windows.heap_bytes() + 96;
    Ok(Block {
        raw,
        keys,
        slots,
        windows,
        charge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_prefix_compression() {
        for pc in [true, false] {
            let mut b = BlockBuilder::new(pc);
            let entries = vec![
                Entry::put("apple", 9, "red"),
                Entry::tombstone("apple", 3),
                Entry::put("applesauce", 1, ""),
                Entry::put("banana", 2, vec![0u8; 300]),
            ];
            for e in &entries {
                b.add(e);
            }
            let raw = b.finish();
            assert!(b.is_empty());
            let block = decode_block(raw).expect("decodes");
            let back: Vec<Entry> = (0..block.len()).filter_map(|i| block.entry(i)).collect();
            assert_eq!(back, entries);
            assert_eq!(block.find(b"apple"), Some(entries[0].clone()));
            assert_eq!(block.find(b"appl"), None);
            assert_eq!(block.lower_bound(b"zzz"), 4);
            assert_eq!(block.lower_bound(b"applesauce"), 2);
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let mut b = BlockBuilder::new(true);
        b.add(&Entry::put("k1", 1, "v1"));
        b.add(&Entry::put("k2", 2, "v2"));
        let raw = b.finish();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert!(decode_block(bad).is_err(), "flip at {i} undetected");
        }
    }
}
