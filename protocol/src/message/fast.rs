//! Hand-written MessagePack for the two frames every request pays for: a `get`, `put` or
//! `delete` request coming in, and a reply of `values` and `context` (or nothing) going
//! out. Through serde, decoding a request was 6.5% of a node's CPU under pipelined gets
//! (`deserialize_any` dispatch and an `Option` visitor per field) and encoding its response
//! about 4%.
//!
//! Invariants:
//! - [`decode_plain_request`] returns `Some` only for a frame that the serde path
//!   ([`super::decode_request`]) decodes to the same request; anything else (another op, a
//!   field it does not read, nil, a repeated field, an integer id written as signed, bytes
//!   after the map) is `None`, and the caller falls back to serde, whose answer, error
//!   messages included, is the one the protocol documents.
//! - [`encode_plain_response`] writes exactly the bytes `rmp_serde` writes for the same
//!   [`Response`] (smallest integer, string, bin, array and map headers, fields in
//!   declaration order, absent fields left out), or nothing and returns `false`.
//!
//! Both are held to serde by property tests in this module.

use super::{Reply, Request, Response};

/// Reads MessagePack from a byte slice; every read is bounds-checked and `None` at the end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    }

    /// A map header's entry count.
    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some(usize::from(b & 0x0f)),
            0xde => self.be(2).map(|n| n as usize),
            0xdf => self.be(4).map(|n| n as usize),
            _ => None,
        }
    }

    /// An unsigned integer in any of its unsigned encodings.
    fn uint(&mut self) -> Option<u64> {
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
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
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
    fn bytes_or_str(&mut self) -> Option<&'a [u8]> {
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

/// A `get`, `put` or `delete` request with no field besides `id`, `op`, `key`, `value` and
/// `context`, decoded without serde; `None` for anything else (see the module docs).
pub(super) fn decode_plain_request(body: &[u8]) -> Option<(u64, Request)> {
    let mut c = Cursor { bytes: body };
    let n = c.map_len()?;
    let (mut id, mut op, mut key, mut value, mut context) = (None, None, None, None, None);
    for _ in 0..n {
        let slot = match c.str_bytes()? {
            b"id" => {
                if id.replace(c.uint()?).is_some() {
                    return None;
                }
                continue;
            }
            b"op" => &mut op,
            b"key" => &mut key,
            b"value" => &mut value,
            b"context" => &mut context,
            _ => return None,
        };
        let field = if slot.is_none() {
            c.bytes_or_str()?
        } else {
            return None;
        };
        *slot = Some(field);
    }
    if !c.bytes.is_empty() {
        return None;
    }
    let (id, key) = (id?, key?.to_vec());
    let context = context.map(<[u8]>::to_vec);
    let req = match op? {
        b"get" if value.is_none() && context.is_none() => Request::Get {
            key,
            r: None,
            after: None,
        },
        b"put" => Request::Put {
            key,
            value: value?.to_vec(),
            context,
            w: None,
        },
        b"delete" if value.is_none() => Request::Delete {
            key,
            context,
            w: None,
        },
        _ => return None,
    };
    Some((id, req))
}

fn uint(out: &mut Vec<u8>, v: u64) {
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

fn str(out: &mut Vec<u8>, s: &str) {
    header(out, s.len(), Some((0xa0, 31)), Some(0xd9), [0xda, 0xdb]);
    out.extend_from_slice(s.as_bytes());
}

fn bin(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b.len(), None, Some(0xc4), [0xc5, 0xc6]);
    out.extend_from_slice(b);
}

fn map(out: &mut Vec<u8>, len: usize) {
    header(out, len, Some((0x80, 15)), None, [0xde, 0xdf]);
}

fn array(out: &mut Vec<u8>, len: usize) {
    header(out, len, Some((0x90, 15)), None, [0xdc, 0xdd]);
}

/// Appends `resp` as serde would when it is a success whose reply holds at most `values`
/// and `context` (get, put, delete, ping) and returns `true`; otherwise writes nothing and
/// returns `false`.
pub(super) fn encode_plain_response(resp: &Response, out: &mut Vec<u8>) -> bool {
    let reply = match (&resp.ok, &resp.err) {
        (
            Some(
                r @ Reply {
                    node: None,
                    version: None,
                    value: None,
                    members: None,
                    keys: None,
                    more: None,
                    cursor: None,
                    ..
                },
            ),
            None,
        ) => r,
        _ => return false,
    };
    map(out, 2);
    str(out, "id");
    uint(out, resp.id);
    str(out, "ok");
    map(
        out,
        usize::from(reply.values.is_some()) + usize::from(reply.context.is_some()),
    );
    if let Some(values) = &reply.values {
        str(out, "values");
        array(out, values.len());
        for v in values {
            bin(out, v);
        }
    }
    if let Some(context) = &reply.context {
        str(out, "context");
        bin(out, context);
    }
    true
}

#[cfg(test)]
mod tests;
