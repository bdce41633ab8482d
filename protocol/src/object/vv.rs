//! [`VersionVector`]: per actor id, how many of its writes have been seen. It is the causal
//! context a client gets with a read or a write and passes back ("I have seen these
//! versions"), encoded as an opaque byte string that the server produces and validates.
//!
//! Invariants: entries are sorted by actor id with no duplicates, and every counter is at
//! least 1 (a missing actor means 0), so equal vectors have equal entries and equal bytes.
//!
//! Context encoding, format 1 (a client never needs to read it; it is documented for tools):
//!
//! ```text
//! 0xC1                          format byte (CONTEXT_FORMAT_V1)
//! varint  E                     number of entries, at most MAX_CONTEXT_ACTORS
//! E times, actor ids strictly ascending:
//!   u64 big-endian  actor id
//!   varint          counter (>= 1)
//! ```
//!
//! Varints are unsigned LEB128 in their shortest form. A context comes from clients, so
//! [`VersionVector::decode`] treats it as untrusted: bounded length, every field checked,
//! no panics, nothing allocated beyond the input's size.

use super::encode::{check_format, put_varint, DecodeError, Kind, Reader, CONTEXT_FORMAT_V1};
use super::ActorId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;

/// The most actor entries a context may carry. An entry exists per replica that ever
/// coordinated a write of the key, so real keys have a handful; the bound only stops a
/// hostile client from making the server decode megabytes.
pub const MAX_CONTEXT_ACTORS: usize = 1024;

/// The longest valid context encoding: format byte, entry count, and the largest entries.
pub const MAX_CONTEXT_BYTES: usize = 1 + 2 + MAX_CONTEXT_ACTORS * (8 + 10);

/// A version vector: actor id -> counter, sorted by actor id.
///
/// ```
/// use troupe_protocol::object::{ActorId, VersionVector};
/// let a: VersionVector = [(ActorId(1), 2), (ActorId(2), 1)].into_iter().collect();
/// let b: VersionVector = [(ActorId(1), 1)].into_iter().collect();
/// assert!(a.descends(&b) && !b.descends(&a));
/// assert_eq!(VersionVector::decode(&a.encode()).unwrap(), a);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    /// Sorted by actor, counters >= 1.
    entries: Vec<(ActorId, u64)>,
}

impl VersionVector {
    /// The empty vector: has seen nothing (the context of a context-free write).
    ///
    /// ```
    /// use troupe_protocol::object::VersionVector;
    /// assert!(VersionVector::new().is_empty());
    /// ```
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// The counter of `actor`: how many of its writes this vector has seen (0 if absent).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let v: VersionVector = [(ActorId(7), 3)].into_iter().collect();
    /// assert_eq!((v.get(ActorId(7)), v.get(ActorId(8))), (3, 0));
    /// ```
    pub fn get(&self, actor: ActorId) -> u64 {
        match self.entries.binary_search_by_key(&actor, |&(a, _)| a) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Number of actors with a non-zero counter.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let v: VersionVector = [(ActorId(1), 1), (ActorId(2), 0)].into_iter().collect();
    /// assert_eq!(v.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for the vector that has seen nothing.
    ///
    /// ```
    /// use troupe_protocol::object::VersionVector;
    /// assert!(VersionVector::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The (actor, counter) pairs in ascending actor order.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let v: VersionVector = [(ActorId(9), 1), (ActorId(3), 4)].into_iter().collect();
    /// assert_eq!(v.iter().collect::<Vec<_>>(), [(ActorId(3), 4), (ActorId(9), 1)]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// True if `self` has seen everything `other` has (pointwise `>=`; equal vectors
    /// descend each other).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let a: VersionVector = [(ActorId(1), 1)].into_iter().collect();
    /// let b: VersionVector = [(ActorId(2), 1)].into_iter().collect();
    /// assert!(!a.descends(&b) && !b.descends(&a)); // concurrent
    /// assert!(a.descends(&VersionVector::new()));
    /// ```
    pub fn descends(&self, other: &VersionVector) -> bool {
        descends_sorted(self.iter(), other.iter())
    }

    /// The pointwise maximum: everything either vector has seen.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let a: VersionVector = [(ActorId(1), 3)].into_iter().collect();
    /// let b: VersionVector = [(ActorId(1), 1), (ActorId(2), 1)].into_iter().collect();
    /// let m = a.merge(&b);
    /// assert_eq!(m.iter().collect::<Vec<_>>(), [(ActorId(1), 3), (ActorId(2), 1)]);
    /// ```
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    out.push((a[i].0, a[i].1.max(b[j].1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        VersionVector { entries: out }
    }

    /// The opaque context bytes a client receives (format 1, see the module doc).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, VersionVector};
    /// let v: VersionVector = [(ActorId(0x0102030405060708), 300)].into_iter().collect();
    /// assert_eq!(v.encode(), [0xC1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0xac, 0x02]);
    /// assert_eq!(VersionVector::new().encode(), [0xC1, 0]);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        encode_entries(self.entries.iter().copied())
    }

    /// Decodes context bytes from an untrusted client. Only the canonical encoding is
    /// accepted; anything else is a [`DecodeError`] that says what is wrong and where.
    ///
    /// ```
    /// use troupe_protocol::object::{DecodeError, VersionVector};
    /// assert_eq!(VersionVector::decode(&[0xC1, 0]).unwrap(), VersionVector::new());
    /// assert!(matches!(VersionVector::decode(b""), Err(DecodeError::Empty { .. })));
    /// assert!(matches!(VersionVector::decode(&[0xC1, 1, 0]), Err(DecodeError::Truncated { .. })));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<VersionVector, DecodeError> {
        let kind = Kind::Context;
        if bytes.len() > MAX_CONTEXT_BYTES {
            return Err(DecodeError::TooLong {
                len: bytes.len(),
                max: MAX_CONTEXT_BYTES,
            });
        }
        let mut r = Reader::new(bytes, kind);
        check_format(&mut r, kind)?;
        let count = r.varint("the entry count")?;
        if count > MAX_CONTEXT_ACTORS as u64 {
            return Err(DecodeError::TooManyEntries {
                kind,
                count,
                max: MAX_CONTEXT_ACTORS as u64,
            });
        }
        // An entry takes at least 9 bytes; check before reserving.
        if count > r.remaining() as u64 / 9 {
            return Err(DecodeError::Truncated {
                kind,
                at: r.pos(),
                expected: "the context's entries",
            });
        }
        let mut entries: Vec<(ActorId, u64)> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let at = r.pos();
            let actor = r.actor()?;
            if entries.last().is_some_and(|&(prev, _)| prev >= actor) {
                return Err(DecodeError::UnsortedActors { kind, at });
            }
            let counter = r.varint("a counter")?;
            if counter == 0 {
                return Err(DecodeError::ZeroCounter { kind, actor });
            }
            entries.push((actor, counter));
        }
        r.finish()?;
        Ok(VersionVector { entries })
    }

    /// Builds from entries already sorted, unique and non-zero (the object's clock).
    pub(super) fn from_sorted(entries: Vec<(ActorId, u64)>) -> VersionVector {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(entries.iter().all(|&(_, c)| c > 0));
        VersionVector { entries }
    }
}

/// `a >= b` pointwise, for two actor-sorted sequences of (actor, counter), counters >= 1.
pub(super) fn descends_sorted(
    a: impl IntoIterator<Item = (ActorId, u64)>,
    b: impl IntoIterator<Item = (ActorId, u64)>,
) -> bool {
    let mut a = a.into_iter().peekable();
    for (actor, counter) in b {
        while a.next_if(|&(x, _)| x < actor).is_some() {}
        match a.next() {
            Some((x, c)) if x == actor && c >= counter => {}
            _ => return false,
        }
    }
    true
}

/// Collects (actor, counter) pairs in any order: duplicates keep the larger counter,
/// zero counters are dropped.
impl FromIterator<(ActorId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ActorId, u64)>>(iter: I) -> Self {
        let mut v: Vec<(ActorId, u64)> = iter.into_iter().filter(|&(_, c)| c > 0).collect();
        v.sort_unstable();
        // Sorted by (actor, counter): the last of each run of equal actors is the largest.
        let mut entries: Vec<(ActorId, u64)> = Vec::with_capacity(v.len());
        for (actor, counter) in v {
            match entries.last_mut() {
                Some(last) if last.0 == actor => last.1 = counter,
                _ => entries.push((actor, counter)),
            }
        }
        VersionVector { entries }
    }
}

/// Serializes as its context encoding in a MessagePack bin (how it travels in frames).
impl Serialize for VersionVector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.encode())
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        VersionVector::decode(&bytes).map_err(serde::de::Error::custom)
    }
}

/// `f` of the context bytes of `entries` (as [`encode_entries`]), encoded on the stack when
/// they fit in 256 bytes (up to 13 actors): hashing a clock allocates nothing.
pub(crate) fn with_encoded_entries<R>(
    entries: impl ExactSizeIterator<Item = (ActorId, u64)>,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    const STACK: usize = 256;
    if 11 + entries.len() * 18 > STACK {
        return f(&encode_entries(entries));
    }
    let mut buf = [0u8; STACK];
    buf[0] = CONTEXT_FORMAT_V1;
    let mut at = 1 + varint_into(&mut buf[1..], entries.len() as u64);
    for (actor, counter) in entries {
        buf[at..at + 8].copy_from_slice(&actor.0.to_be_bytes());
        at += 8;
        at += varint_into(&mut buf[at..], counter);
    }
    f(&buf[..at])
}

/// Writes `v` as [`put_varint`] does at the start of `out`; returns its length (at most 10).
fn varint_into(out: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// The context bytes of sorted, unique `(actor, counter)` pairs: what
/// [`VersionVector::encode`] gives for them, without building the vector first.
pub(crate) fn encode_entries(entries: impl ExactSizeIterator<Item = (ActorId, u64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + entries.len() * 12);
    out.push(CONTEXT_FORMAT_V1);
    put_varint(&mut out, entries.len() as u64);
    for (actor, counter) in entries {
        out.extend_from_slice(&actor.0.to_be_bytes());
        put_varint(&mut out, counter);
    }
    out
}
