//! MessagePack by hand, for the few frames that every request pays for (serde's generic
//! path costs several times more per field): a bounds-checked reader over a byte slice and
//! writers that pick the smallest header for each value, as `rmp_serde` does, so that hand
//! and serde encodings of one value are the same bytes.
//!
//! Invariants: a read never panics and never reads past the slice (`None` instead); a
//! writer writes exactly the bytes `rmp_serde` writes for the same value (held to it by the
//! property tests of its users, `message::fast` and `data::fast`).

/// Reads MessagePack from a byte slice; every read is bounds-checked and `None` at the end.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes }
    }

    /// Whether every byte has been read.
    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.bytes.is_empty()
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    #[inline]
    pub(crate) fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    }

    /// A map header's entry count.
    #[inline]
    pub(crate) fn map_len(&mut self) -> Option<usize> {
        self.count(0x80, [0xde, 0xdf])
    }

    /// An array header's element count.
    #[inline]
    pub(crate) fn array_len(&mut self) -> Option<usize> {
        self.count(0x90, [0xdc, 0xdd])
    }

    /// A count header: a fix form (`fix` to `fix + 15`), or the 16- or 32-bit form.
    #[inline]
    fn count(&mut self, fix: u8, wide: [u8; 2]) -> Option<usize> {
        match self.byte()? {
            b if b & 0xf0 == fix => Some(usize::from(b & 0x0f)),
            b if b == wide[0] => self.be(2).map(|n| n as usize),
            b if b == wide[1] => self.be(4).map(|n| n as usize),
            _ => None,
        }
    }

    /// Reads a nil if one comes next; `false` (nothing read) otherwise.
    #[inline]
    pub(crate) fn nil(&mut self) -> bool {
        let nil = self.bytes.first() == Some(&0xc0);
        if nil {
            self.bytes = &self.bytes[1..];
        }
        nil
    }

    /// An unsigned integer in any of its unsigned encodings.
    #[inline]
    pub(crate) fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    /// A str's bytes (not checked as UTF-8).
    #[inline]
    pub(crate) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let n = match self.byte()? {
            b @ 0xa0..=0xbf => u64::from(b & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        self.take(usize::try_from(n).ok()?)
    }

    /// A bin's or a str's bytes: what a byte field (`serde_bytes`) accepts.
    #[inline]
    pub(crate) fn bytes_or_str(&mut self) -> Option<&'a [u8]> {
        let n = match *self.bytes.first()? {
            0xc4 => 1,
            0xc5 => 2,
            0xc6 => 4,
            _ => return self.str_bytes(),
        };
        self.byte()?;
        let len = self.be(n)?;
        self.take(usize::try_from(len).ok()?)
    }
}

#[inline]
pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A length header: the fix form when `len` fits it (`fix`: tag and largest length), else
/// the smallest of the 8-bit form (when the format has one), the 16-bit and the 32-bit.
#[inline]
fn header(out: &mut Vec<u8>, len: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m: [u8; 2]) {
    match (fix, m8) {
        (Some((tag, max)), _) if len <= max => out.push(tag | len as u8),
        (_, Some(m8)) if len <= 0xff => out.extend_from_slice(&[m8, len as u8]),
        _ if len <= 0xffff => {
            out.push(m[0]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            let len = u32::try_from(len).expect("BUG: MessagePack lengths are below 2^32");
            out.push(m[1]);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

#[inline]
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    header(out, s.len(), Some((0xa0, 31)), Some(0xd9), [0xda, 0xdb]);
    out.extend_from_slice(s.as_bytes());
}

#[inline]
pub(crate) fn bin(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b.len(), None, Some(0xc4), [0xc5, 0xc6]);
    out.extend_from_slice(b);
}

#[inline]
pub(crate) fn nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

#[inline]
pub(crate) fn map(out: &mut Vec<u8>, len: usize) {
    header(out, len, Some((0x80, 15)), None, [0xde, 0xdf]);
}

#[inline]
pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    header(out, len, Some((0x90, 15)), None, [0xdc, 0xdd]);
}

/// Generators of values at the encodings' bounds, for the property tests of this module's
/// users.
#[cfg(test)]
pub(crate) mod bounds {
    use proptest::prelude::*;

    /// Integers on both sides of every integer encoding's bounds, and any.
    pub(crate) fn uint() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0u64..300,
            65_530u64..65_542,
            (1u64 << 32) - 6..(1u64 << 32) + 6,
        ]
    }

    /// Byte strings of lengths on both sides of the fix, 8-bit and 16-bit header bounds,
    /// mostly short.
    pub(crate) fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..40),
            1 => (250usize..262).prop_map(|n| vec![7; n]),
            1 => (65_530usize..65_542).prop_map(|n| vec![9; n]),
        ]
    }
}
