//! Byte-level helpers shared by every on-disk format: LEB128 varints, length-prefixed
//! byte strings, fixed little-endian integers and blake3-derived checksums.
//!
//! Decoding never panics: each read returns a `DecodeError` carrying the position inside
//! the buffer, which callers turn into a `Corruption` naming the file and absolute offset.

/// Where inside a buffer decoding failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Data-block checksum: CRC-32 (IEEE), hardware-accelerated. Data blocks are read on every
/// lookup that misses the block cache; blake3 cost about 10% of a lookup there.
pub fn block_checksum(data: &[u8]) -> [u8; 4] {
    crc32fast::hash(data).to_le_bytes()
}

/// 4-byte checksum (manifest records): blake3 truncated.
pub fn checksum4(data: &[u8]) -> [u8; 4] {
    let h = blake3::hash(data);
    let mut out = [0u8; 4];
    out.copy_from_slice(&h.as_bytes()[..4]);
    out
}

/// 8-byte checksum (footer, index, filter): blake3 truncated.
pub fn checksum8(data: &[u8]) -> u64 {
    let h = blake3::hash(data);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(out)
}

/// A cursor over a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    /// A varint that must fit a `usize` length no larger than what remains.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        let remaining = self.buf.len().saturating_sub(self.pos) as u64;
        if v > remaining {
            return Err(self.err("length exceeds buffer"));
        }
        Ok(v as usize)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("truncated bytes"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_truncation() {
        let mut buf = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            buf.clear();
            put_varint(&mut buf, v);
            assert_eq!(Decoder::new(&buf).varint(), Ok(v));
            assert!(Decoder::new(&buf[..buf.len() - 1]).varint().is_err());
        }
    }

    #[test]
    fn length_larger_than_buffer_is_an_error() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1000);
        buf.extend_from_slice(b"short");
        assert!(Decoder::new(&buf).bytes().is_err());
    }
}
