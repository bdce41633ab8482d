//! Data blocks: encoding (used by the writer) and checked decoding (used by the reader).
//!
//! A block is decoded whole into a `Block` (a sorted `Vec<Entry>`), which is what the block
//! cache holds. Decoding verifies the trailing checksum before looking at any entry, so a
//! flipped byte is reported as corruption rather than producing a wrong entry.

use crate::engine::codec::{checksum4, put_bytes, put_varint, DecodeError, Decoder};
use crate::engine::entry::Entry;

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
        let sum = checksum4(&out);
        out.extend_from_slice(&sum);
        self.count = 0;
        self.prev_key.clear();
        self.buf = Vec::with_capacity(out.capacity());
        out
    }
}

/// A decoded, checksum-verified data block.
#[derive(Debug)]
pub struct Block {
    pub entries: Vec<Entry>,
    /// Approximate memory charge for the block cache.
    pub charge: usize,
}

impl Block {
    /// Index of the first entry whose key is >= `key`.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| e.key.as_slice() < key)
    }
}

/// Verify and decode a block. `DecodeError::at` is relative to the block start.
pub fn decode_block(raw: &[u8]) -> Result<Block, DecodeError> {
    if raw.len() < BLOCK_TRAILER_LEN {
        return Err(DecodeError {
            at: 0,
            what: "block shorter than its trailer",
        });
    }
    let (body, sum) = raw.split_at(raw.len() - 4);
    if checksum4(body) != sum {
        return Err(DecodeError {
            at: 0,
            what: "data block checksum mismatch",
        });
    }
    let (entries_raw, count_raw) = body.split_at(body.len() - 4);
    let count = u32::from_le_bytes([count_raw[0], count_raw[1], count_raw[2], count_raw[3]]);
    let mut d = Decoder::new(entries_raw);
    // `count` is checksummed, but cap the pre-allocation anyway.
    let mut entries = Vec::with_capacity((count as usize).min(entries_raw.len()));
    let mut prev: Vec<u8> = Vec::new();
    let mut charge = 0usize;
    for _ in 0..count {
        let at = d.pos();
        let shared = d.varint()? as usize;
        if shared > prev.len() {
            return Err(DecodeError {
                at,
                what: "shared prefix longer than previous key",
            });
        }
        let suffix = d.bytes()?;
        let mut key = Vec::with_capacity(shared + suffix.len());
        key.extend_from_slice(&prev[..shared]);
        key.extend_from_slice(suffix);
        let seq = d.varint()?;
        let value = match d.varint()? {
            0 => None,
            n => {
                let len = usize::try_from(n - 1).map_err(|_| DecodeError {
                    at,
                    what: "value length overflow",
                })?;
                Some(d.take(len)?.to_vec())
            }
        };
        prev.clone_from(&key);
        let e = Entry { key, seq, value };
        charge += e.approx_size() + 32;
        entries.push(e);
    }
    if !d.is_empty() {
        return Err(DecodeError {
            at: d.pos(),
            what: "trailing bytes after last entry",
        });
    }
    Ok(Block { entries, charge })
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
            let block = decode_block(&raw).expect("decodes");
            assert_eq!(block.entries, entries);
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
            assert!(decode_block(&bad).is_err(), "flip at {i} undetected");
        }
    }
}
