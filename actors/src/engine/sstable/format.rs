//! Table footer and index encodings.
//!
//! Footer (fixed 68 bytes at the end of the file, little-endian):
//!
//! ```text
//!  0 filter_offset u64 |  8 filter_len u64 | 16 filter_checksum u64
//! 24 index_offset  u64 | 32 index_len  u64 | 40 index_checksum  u64
//! 48 format_version u32 | 52 footer_checksum u64 (of bytes 0..52) | 60 magic u64
//! ```
//!
//! Index: `varint entry_count | varint tombstone_count | varint min_seq | varint max_seq |
//! varint block_count | block_count x (bytes first_key | bytes last_key | varint offset |
//! varint len)`. Decoding checks that blocks are ordered, non-overlapping and lie inside
//! the data region, so a reader can trust offsets once `open` succeeds.

use crate::engine::codec::{checksum8, put_bytes, put_varint, DecodeError, Decoder};

pub const FOOTER_LEN: usize = 68;
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"TRPSST\x00\x01");
/// 2: CRC-32 data-block checksums and a cache-local (512-bit blocked) bloom filter.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub filter_offset: u64,
    pub filter_len: u64,
    pub filter_checksum: u64,
    pub index_offset: u64,
    pub index_len: u64,
    pub index_checksum: u64,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = Vec::with_capacity(FOOTER_LEN);
        for v in [
            self.filter_offset,
            self.filter_len,
            self.filter_checksum,
            self.index_offset,
            self.index_len,
            self.index_checksum,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let sum = checksum8(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        let mut out = [0u8; FOOTER_LEN];
        out.copy_from_slice(&b);
        out
    }

    /// Decode and verify magic, checksum and version. `at` is relative to the footer.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        if raw.len() != FOOTER_LEN {
            return Err(DecodeError {
                at: 0,
                what: "footer has wrong length",
            });
        }
        let mut d = Decoder::new(&raw[60..]);
        if d.u64_le()? != TABLE_MAGIC {
            return Err(DecodeError {
                at: 60,
                what: "bad magic (not a troupe table)",
            });
        }
        let mut d = Decoder::new(&raw[52..60]);
        if d.u64_le()? != checksum8(&raw[..52]) {
            return Err(DecodeError {
                at: 52,
                what: "footer checksum mismatch",
            });
        }
        let mut d = Decoder::new(raw);
        let f = Footer {
            filter_offset: d.u64_le()?,
            filter_len: d.u64_le()?,
            filter_checksum: d.u64_le()?,
            index_offset: d.u64_le()?,
            index_len: d.u64_le()?,
            index_checksum: d.u64_le()?,
        };
        let version = d.u32_le()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError {
                at: 48,
                what: "unsupported table format version (this build reads version 2 only)",
            });
        }
        Ok(f)
    }
}

/// One sparse-index entry: the key range and location of a data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHandle {
    pub first_key: Vec<u8>,
    pub last_key: Vec<u8>,
    pub offset: u64,
    pub len: u64,
}

/// Whole-table statistics stored in the index section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableProps {
    pub entry_count: u64,
    pub tombstone_count: u64,
    pub min_seq: u64,
    pub max_seq: u64,
}

pub fn encode_index(props: &TableProps, blocks: &[BlockHandle]) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint(&mut b, props.entry_count);
    put_varint(&mut b, props.tombstone_count);
    put_varint(&mut b, props.min_seq);
    put_varint(&mut b, props.max_seq);
    put_varint(&mut b, blocks.len() as u64);
    for h in blocks {
        put_bytes(&mut b, &h.first_key);
        put_bytes(&mut b, &h.last_key);
        put_varint(&mut b, h.offset);
        put_varint(&mut b, h.len);
    }
    b
}

/// Decode the index and check it describes blocks inside `[0, data_end)`.
pub fn decode_index(
    raw: &[u8],
    data_end: u64,
) -> Result<(TableProps, Vec<BlockHandle>), DecodeError> {
    let mut d = Decoder::new(raw);
    let props = TableProps {
        entry_count: d.varint()?,
        tombstone_count: d.varint()?,
        min_seq: d.varint()?,
        max_seq: d.varint()?,
    };
    let at = d.pos();
    let n = d.varint()?;
    if n == 0 || n > raw.len() as u64 {
        return Err(DecodeError {
            at,
            what: "implausible block count",
        });
    }
    let mut blocks: Vec<BlockHandle> = Vec::with_capacity(n as usize);
    let mut expected_offset = 0u64;
    for _ in 0..n {
        let at = d.pos();
        let h = BlockHandle {
            first_key: d.bytes()?.to_vec(),
            last_key: d.bytes()?.to_vec(),
            offset: d.varint()?,
            len: d.varint()?,
        };
        let bad = |what| Err(DecodeError { at, what });
        if h.first_key > h.last_key {
            return bad("block first key after last key");
        }
        if h.offset != expected_offset {
            return bad("block offsets not contiguous");
        }
        if h.len < super::block::BLOCK_TRAILER_LEN as u64
            || h.offset.checked_add(h.len).is_none_or(|e| e > data_end)
        {
            return bad("block outside data region");
        }
        if let Some(prev) = blocks.last() {
            if prev.last_key > h.first_key {
                return bad("blocks out of order");
            }
        }
        expected_offset = h.offset + h.len;
        blocks.push(h);
    }
    if expected_offset != data_end {
        return Err(DecodeError {
            at: d.pos(),
            what: "blocks do not cover the data region",
        });
    }
    if !d.is_empty() {
        return Err(DecodeError {
            at: d.pos(),
            what: "trailing bytes after index",
        });
    }
    Ok((props, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_footer() -> Footer {
        Footer {
            filter_offset: 1,
            filter_len: 2,
            filter_checksum: 3,
            index_offset: 4,
            index_len: 5,
            index_checksum: 6,
        }
    }

    #[test]
    fn a_footer_of_another_format_version_is_refused() {
        let f = sample_footer();
        let mut raw = f.encode();
        raw[48..52].copy_from_slice(&1u32.to_le_bytes()); // a version-1 table
        let sum = checksum8(&raw[..52]);
        raw[52..60].copy_from_slice(&sum.to_le_bytes());
        let e = Footer::decode(&raw).expect_err("v1 refused");
        assert_eq!(e.at, 48);
        assert!(e.what.contains("format version"), "{}", e.what);
    }

    #[test]
    fn footer_round_trip_and_checks() {
        let f = sample_footer();
        let raw = f.encode();
        assert_eq!(Footer::decode(&raw), Ok(f));
        for i in 0..FOOTER_LEN {
            let mut bad = raw;
            bad[i] ^= 0x80;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn index_round_trip_and_bounds() {
        let props = TableProps {
            entry_count: 3,
            tombstone_count: 1,
            min_seq: 1,
            max_seq: 9,
        };
        let blocks = vec![
            BlockHandle {
                first_key: b"a".to_vec(),
                last_key: b"c".to_vec(),
                offset: 0,
                len: 100,
            },
            BlockHandle {
                first_key: b"c".to_vec(),
                last_key: b"f".to_vec(),
                offset: 100,
                len: 50,
            },
        ];
        let raw = encode_index(&props, &blocks);
        assert_eq!(decode_index(&raw, 150), Ok((props, blocks)));
        assert!(decode_index(&raw, 149).is_err());
        assert!(decode_index(&raw, 151).is_err());
    }
}
