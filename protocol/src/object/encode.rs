//! Byte encodings of [`Object`] (storage and peer wire) and the shared decoding machinery
//! (LEB128 varints, a bounds-checked reader, [`DecodeError`]) that
//! [`VersionVector`](super::VersionVector)'s context encoding uses too.
//!
//! The object layout (format 1) is documented in the parent module's `//!` doc and in
//! `PROTOCOL.md`, appendix "Object encoding". Invariants of the decoder:
//! - it never panics and never allocates more than the input's length, whatever the input
//!   (counts are checked against the bytes that remain before anything is reserved);
//! - it accepts only the canonical form (actor ids strictly ascending, counters at least 1,
//!   no more values than the counter, minimal varints, no trailing bytes), so equal objects
//!   have equal bytes and a hash of the bytes identifies the object.

use super::{ActorId, Entry, Object, Value};
use std::fmt;
use thiserror::Error;

/// The leading byte of an [`Object`] encoding, format 1.
pub const OBJECT_FORMAT_V1: u8 = 0x01;

/// The leading byte of a context ([`VersionVector`](super::VersionVector)) encoding,
/// format 1. Distinct from [`OBJECT_FORMAT_V1`] so that one cannot pass for the other.
pub const CONTEXT_FORMAT_V1: u8 = 0xC1;

/// Value tag: the value's bytes follow.
const TAG_DATA: u8 = 0x00;
/// Value tag: a delete marker, nothing follows.
const TAG_DELETED: u8 = 0x01;
/// Value tag: a typed state (`crate::crdt`): varint length, then the state's bytes.
const TAG_TYPED: u8 = 0x02;

/// Which encoding a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A causal context (an encoded [`VersionVector`](super::VersionVector)).
    Context,
    /// A stored or replicated [`Object`].
    Object,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Context => "context",
            Kind::Object => "object",
        })
    }
}

/// Why bytes are not a valid context or object. Decoding changes no state; the input is
/// rejected as a whole.
///
/// ```
/// use troupe_protocol::object::{DecodeError, Kind, VersionVector};
/// let err = VersionVector::decode(&[0x07]).unwrap_err();
/// assert!(matches!(err, DecodeError::UnknownFormat { kind: Kind::Context, byte: 0x07, .. }));
/// assert_eq!(err.to_string(), "unknown context format byte 0x07 (this build reads 0xc1)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Zero bytes: not even a format byte.
    #[error("empty {kind}: no format byte")]
    Empty { kind: Kind },
    /// The format byte is not one this build reads (a newer writer, or garbage).
    #[error("unknown {kind} format byte 0x{byte:02x} (this build reads 0x{known:02x})")]
    UnknownFormat { kind: Kind, byte: u8, known: u8 },
    /// The bytes carry the other encoding's format byte (an object passed as a context...).
    #[error("expected a {kind} but these bytes are an encoded {found}")]
    WrongKind { kind: Kind, found: Kind },
    /// The input ended inside a field.
    #[error("{kind} truncated at byte {at}: expected {expected}")]
    Truncated {
        kind: Kind,
        at: usize,
        expected: &'static str,
    },
    /// A varint longer than 10 bytes, overflowing 64 bits, or not in its shortest form.
    #[error("{kind} has a malformed varint at byte {at}")]
    BadVarint { kind: Kind, at: usize },
    /// More actor entries than the limit (contexts) or than the bytes could hold.
    #[error("{kind} claims {count} actor entries, more than the limit of {max}")]
    TooManyEntries { kind: Kind, count: u64, max: u64 },
    /// A context longer than [`MAX_CONTEXT_BYTES`](super::MAX_CONTEXT_BYTES).
    #[error("context is {len} bytes, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// Actor ids must be strictly ascending (sorted, no duplicates).
    #[error("{kind} actor ids are not strictly ascending at byte {at}")]
    UnsortedActors { kind: Kind, at: usize },
    /// Counters start at 1; an entry with counter 0 is never written.
    #[error("{kind} has counter 0 for actor {actor}")]
    ZeroCounter { kind: Kind, actor: ActorId },
    /// An entry holds values for dots its counter does not reach.
    #[error("object entry of actor {actor} has {values} values but counter {counter}")]
    MoreValuesThanCounter {
        actor: ActorId,
        values: u64,
        counter: u64,
    },
    /// A typed state (value tag 0x02) that is not canonical.
    #[error("object has an invalid typed state at byte {at}: {why}")]
    BadTyped { at: usize, why: &'static str },
    /// A value tag other than data (0x00), delete marker (0x01) or typed state (0x02).
    #[error("object has unknown value tag 0x{tag:02x} at byte {at}")]
    BadValueTag { tag: u8, at: usize },
    /// Bytes after the last field.
    #[error("{kind} has {count} trailing bytes")]
    TrailingBytes { kind: Kind, count: usize },
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low group first).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A bounds-checked cursor over untrusted bytes. Every read returns a [`DecodeError`]
/// naming the offset instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: Kind,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], kind: Kind) -> Self {
        Reader { buf, pos: 0, kind }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, expected: &'static str) -> DecodeError {
        DecodeError::Truncated {
            kind: self.kind,
            at: self.pos,
            expected,
        }
    }

    pub(crate) fn u8(&mut self, expected: &'static str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.truncated(expected))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(
        &mut self,
        n: usize,
        expected: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated(expected));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn actor(&mut self) -> Result<ActorId, DecodeError> {
        let b = self.bytes(8, "an 8-byte actor id")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(ActorId(u64::from_be_bytes(a)))
    }

    /// Reads a varint in its shortest form: at most 10 bytes, no bits past 64, and no
    /// final zero group (which would give one number two encodings).
    pub(crate) fn varint(&mut self, expected: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let bad = DecodeError::BadVarint {
            kind: self.kind,
            at: start,
        };
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(expected)?;
            let group = u64::from(b & 0x7f);
            if i == 9 && b > 0x01 {
                return Err(bad);
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(bad);
                }
                return Ok(v);
            }
        }
        Err(bad)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                kind: self.kind,
                count,
            }),
        }
    }
}

/// Checks the leading format byte for `kind`, naming the other kind if it is that one's.
pub(crate) fn check_format(r: &mut Reader<'_>, kind: Kind) -> Result<(), DecodeError> {
    let (known, other, other_kind) = match kind {
        Kind::Context => (CONTEXT_FORMAT_V1, OBJECT_FORMAT_V1, Kind::Object),
        Kind::Object => (OBJECT_FORMAT_V1, CONTEXT_FORMAT_V1, Kind::Context),
    };
    let byte = r
        .u8("a format byte")
        .map_err(|_| DecodeError::Empty { kind })?;
    if byte == known {
        Ok(())
    } else if byte == other {
        Err(DecodeError::WrongKind {
            kind,
            found: other_kind,
        })
    } else {
        Err(DecodeError::UnknownFormat { kind, byte, known })
    }
}

/// Encodes `obj` in format 1 (layout in the module doc of [`super`]).
pub(super) fn encode_object(obj: &Object) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + obj.entries.len() * 12 + obj.value_bytes());
    out.push(OBJECT_FORMAT_V1);
    put_varint(&mut out, obj.entries.len() as u64);
    for e in &obj.entries {
        out.extend_from_slice(&e.actor.0.to_be_bytes());
        put_varint(&mut out, e.counter);
        put_varint(&mut out, e.values.len() as u64);
        for v in &e.values {
            match v {
                Value::Data(bytes) => {
                    out.push(TAG_DATA);
                    put_varint(&mut out, bytes.len() as u64);
                    out.extend_from_slice(bytes);
                }
                Value::Deleted => out.push(TAG_DELETED),
                Value::Typed(t) => {
                    let bytes = t.encode();
                    out.push(TAG_TYPED);
                    put_varint(&mut out, bytes.len() as u64);
                    out.extend_from_slice(&bytes);
                }
            }
        }
    }
    out
}

/// Smallest encoded entry: 8-byte actor, 1-byte counter, 1-byte value count.
const MIN_ENTRY_BYTES: u64 = 10;

/// Decodes and validates a format-1 object.
pub(super) fn decode_object(bytes: &[u8]) -> Result<Object, DecodeError> {
    let kind = Kind::Object;
    let mut r = Reader::new(bytes, kind);
    check_format(&mut r, kind)?;
    let count = r.varint("the entry count")?;
    // Reserve only what the remaining bytes could possibly hold.
    let max = r.remaining() as u64 / MIN_ENTRY_BYTES;
    if count > max {
        return Err(DecodeError::TooManyEntries { kind, count, max });
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let at = r.pos();
        let actor = r.actor()?;
        if entries.last().is_some_and(|prev| prev.actor >= actor) {
            return Err(DecodeError::UnsortedActors { kind, at });
        }
        let counter = r.varint("a counter")?;
        if counter == 0 {
            return Err(DecodeError::ZeroCounter { kind, actor });
        }
        let n = r.varint("a value count")?;
        if n > counter {
            return Err(DecodeError::MoreValuesThanCounter {
                actor,
                values: n,
                counter,
            });
        }
        // Each value takes at least its tag byte.
        if n > r.remaining() as u64 {
            return Err(DecodeError::Truncated {
                kind,
                at: r.pos(),
                expected: "the entry's values",
            });
        }
        let mut values = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let at = r.pos();
            match r.u8("a value tag")? {
                TAG_DATA => {
                    let len = r.varint("a value length")?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    values.push(Value::Data(r.bytes(len, "the value's bytes")?.to_vec()));
                }
                TAG_DELETED => values.push(Value::Deleted),
                TAG_TYPED => {
                    let len = r.varint("a typed state's length")?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    let body = r.bytes(len, "the typed state's bytes")?;
                    let mut sub = Reader::new(body, kind);
                    let typed = crate::crdt::Typed::decode_from(&mut sub).map_err(|e| match e {
                        DecodeError::BadTyped { at: a, why } => {
                            DecodeError::BadTyped { at: at + a, why }
                        }
                        other => other,
                    })?;
                    sub.finish()?;
                    values.push(Value::Typed(typed));
                }
                tag => return Err(DecodeError::BadValueTag { tag, at }),
            }
        }
        entries.push(Entry {
            actor,
            counter,
            values,
        });
    }
    r.finish()?;
    Ok(Object { entries })
}
