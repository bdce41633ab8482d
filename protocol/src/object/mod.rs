//! The replicated object: what a replica stores for a key. A pure core (no I/O) shared by
//! the server's coordinator, storage and peer code and by tools that print objects.
//!
//! Owns: [`ActorId`], [`Value`] (bytes or a delete marker), [`Object`] (a dotted version
//! vector set, after `dvvset.erl` of Almeida, Gonçalves et al.), [`VersionVector`] (the
//! client's opaque causal context), their byte encodings ([`DecodeError`]), and the sibling
//! limits ([`SIBLING_WARN`], [`SIBLING_MAX`], [`TooManySiblings`]).
//!
//! # The model
//!
//! Every write is an event with a *dot* `(actor, n)`: the `n`-th write coordinated by the
//! replica whose actor id is `actor`. An object keeps, per actor, a counter (it has seen
//! that actor's dots `1..=counter`) and the values of the most recent of those dots that
//! no later write has seen, newest first: `values[i]` has dot `(actor, counter - i)`. The
//! counters form the object's causal history ([`Object::context`]); the values are the
//! siblings, pairwise concurrent writes. A write carries the context its client read; it
//! supersedes exactly the values that context covers ([`Object::update`]). Replicas
//! exchange whole objects and [`Object::join`] them.
//!
//! Invariants (checked by the decoder for bytes from elsewhere):
//! - entries are sorted by actor id, unique, with counter >= 1 and at most `counter`
//!   values;
//! - a dot is issued once: only the replica owning `actor` issues `(actor, n)`, from its
//!   own durable object, and a wiped data directory gets a new actor id. Join assumes it
//!   (the same dot on two replicas carries the same value);
//! - an object is a function of the set of writes it has seen, so equal clocks mean equal
//!   objects, and `join` is commutative, associative and idempotent (property-tested
//!   against a causal-history model in `tests.rs`).
//!
//! Unlike `dvvset.erl` there are no *anonymous* values: troupe clients never hold values
//! with clocks, only contexts, and the coordinator gives every value its dot in the same
//! step that stores it. Without them `join` is a plain per-actor merge.
//!
//! # Object encoding, format 1
//!
//! Used in storage and on the peer wire; `troupe admin object` shows it decoded.
//!
//! ```text
//! 0x01                          format byte (OBJECT_FORMAT_V1)
//! varint  E                     number of entries
//! E times, actor ids strictly ascending:
//!   u64 big-endian  actor id
//!   varint          counter (>= 1)
//!   varint          K: number of values (<= counter), newest first
//!   K times:
//!     0x00 varint(len) bytes    a value
//!     0x01                      a delete marker
//!     0x02 varint(len) bytes    a typed state (`crate::crdt`, its own type byte first)
//! ```
//!
//! Varints are unsigned LEB128 in their shortest form. Any other leading byte is refused
//! by name ([`DecodeError::UnknownFormat`]); a later format gets a new byte. The context
//! encoding is documented on [`VersionVector`].
//!
//! ```
//! use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
//! let (a, b) = (ActorId(0xA), ActorId(0xB));
//! // Two context-free writes through different coordinators: two siblings.
//! let x = Object::new().update(&VersionVector::new(), Value::data("x"), a).unwrap();
//! let y = Object::new().update(&VersionVector::new(), Value::data("y"), b).unwrap();
//! let both = x.join(&y);
//! assert_eq!(both.sibling_count(), 2);
//! // A write with the read's context resolves them.
//! let z = both.update(&both.context(), Value::data("z"), a).unwrap();
//! assert_eq!(z.live_values(), [b"z".as_slice()]);
//! assert_eq!(Object::decode(&z.encode()).unwrap(), z);
//! ```

pub(crate) mod encode;
mod vv;

#[cfg(test)]
mod tests;

pub use encode::{DecodeError, Kind, CONTEXT_FORMAT_V1, OBJECT_FORMAT_V1};
pub use vv::{VersionVector, MAX_CONTEXT_ACTORS, MAX_CONTEXT_BYTES};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use thiserror::Error;

/// Siblings at which a write is logged as a warning (Riak's `warn_siblings`).
pub const SIBLING_WARN: usize = 25;
/// Siblings past which a write is refused (Riak's `max_siblings`).
pub const SIBLING_MAX: usize = 100;

/// A replica's identity in dots: a random 64-bit id created with its data directory and
/// kept there. Shown as 16 hex digits.
///
/// ```
/// use troupe_protocol::object::ActorId;
/// assert_eq!(ActorId(0xbeef).to_string(), "000000000000beef");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub u64);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A dot: the `counter`-th write coordinated by `actor`.
///
/// ```
/// use troupe_protocol::object::{ActorId, Dot};
/// assert_eq!(Dot { actor: ActorId(1), counter: 2 }.to_string(), "0000000000000001:2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    pub actor: ActorId,
    pub counter: u64,
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}

/// What a write stores: bytes, or a delete marker (a delete is a write of a marker, so it
/// is versioned, replicated and joined like any value).
///
/// ```
/// use troupe_protocol::object::Value;
/// assert_eq!(Value::data("v").as_data(), Some(b"v".as_slice()));
/// assert!(Value::Deleted.is_deleted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Data(Vec<u8>),
    Deleted,
    /// The state of a conflict-free type (`crate::crdt`).
    Typed(crate::crdt::Typed),
}

impl Value {
    /// A data value from anything byte-like.
    ///
    /// ```
    /// use troupe_protocol::object::Value;
    /// assert_eq!(Value::data(b"ab"), Value::Data(vec![b'a', b'b']));
    /// ```
    pub fn data(bytes: impl AsRef<[u8]>) -> Value {
        Value::Data(bytes.as_ref().to_vec())
    }

    /// True for a delete marker.
    ///
    /// ```
    /// use troupe_protocol::object::Value;
    /// assert!(!Value::data("x").is_deleted());
    /// ```
    pub fn is_deleted(&self) -> bool {
        matches!(self, Value::Deleted)
    }

    /// The bytes, or `None` for a delete marker.
    ///
    /// ```
    /// use troupe_protocol::object::Value;
    /// assert_eq!(Value::Deleted.as_data(), None);
    /// ```
    pub fn as_data(&self) -> Option<&[u8]> {
        match self {
            Value::Data(b) => Some(b),
            Value::Deleted | Value::Typed(_) => None,
        }
    }
}

/// One actor's part of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    actor: ActorId,
    /// The object has seen this actor's dots `1..=counter`.
    counter: u64,
    /// Newest first: `values[i]` has dot `(actor, counter - i)`; `len() <= counter`.
    values: Vec<Value>,
}

/// A dotted version vector set: the versions of one key a replica holds.
///
/// ```
/// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
/// let o = Object::new().update(&VersionVector::new(), Value::data("v"), ActorId(1)).unwrap();
/// assert_eq!(o.sibling_count(), 1);
/// assert!(o.descends(&Object::new()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Object {
    /// Sorted by actor, unique.
    entries: Vec<Entry>,
}

/// Why [`Object::update`] issued no dot. Nothing was changed.
///
/// ```
/// use troupe_protocol::object::{ActorId, Object, UpdateError, Value, VersionVector};
/// let forged: VersionVector = [(ActorId(1), u64::MAX)].into_iter().collect();
/// let err = Object::new().update(&forged, Value::data("v"), ActorId(1)).unwrap_err();
/// assert_eq!(err, UpdateError::CounterExhausted { actor: ActorId(1) });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpdateError {
    /// The actor's counter is already `u64::MAX`: only a forged or corrupt context gets
    /// here (a replica does not issue 2^64 writes to one key). Reusing a dot would merge
    /// two different writes, so the write is refused.
    #[error("actor {actor} has no dot left to issue: the context claims counter {max} (forged or corrupt context)", max = u64::MAX)]
    CounterExhausted { actor: ActorId },
}

/// A write would leave more than [`SIBLING_MAX`] siblings. The coordinator names the key:
/// see [`TooManySiblings::for_key`].
///
/// ```
/// use troupe_protocol::object::TooManySiblings;
/// let e = TooManySiblings { count: 101, max: 100 };
/// assert_eq!(e.to_string(), "101 siblings, more than the limit of 100");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{count} siblings, more than the limit of {max}")]
pub struct TooManySiblings {
    pub count: usize,
    pub max: usize,
}

impl TooManySiblings {
    /// The client-facing message, naming the key (however the caller renders it).
    ///
    /// ```
    /// use troupe_protocol::object::TooManySiblings;
    /// let e = TooManySiblings { count: 101, max: 100 };
    /// assert_eq!(
    ///     e.for_key("k"),
    ///     "key k has 101 siblings (limit 100); resolve them by reading and writing back with the context"
    /// );
    /// ```
    pub fn for_key(&self, key: &str) -> String {
        format!(
            "key {key} has {} siblings (limit {}); resolve them by reading and writing back with the context",
            self.count, self.max
        )
    }
}

/// The outcome of [`Object::check_siblings`] when the object is within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiblingCheck {
    /// Fewer than [`SIBLING_WARN`] siblings.
    Fine,
    /// At least [`SIBLING_WARN`], at most [`SIBLING_MAX`]: accept, and log a warning.
    Warn { count: usize },
}

impl Object {
    /// The empty object: nothing written, nothing seen (what a replica holds for a
    /// missing key).
    ///
    /// ```
    /// use troupe_protocol::object::Object;
    /// assert!(Object::new().is_empty() && Object::new().context().is_empty());
    /// ```
    pub fn new() -> Object {
        Object::default()
    }

    /// True if the object has seen no write at all.
    ///
    /// ```
    /// use troupe_protocol::object::{Object, VersionVector};
    /// assert!(Object::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Joins two replicas' objects (`dvvset:sync`): the union of what both have seen,
    /// keeping each value unless the other side has seen its dot and dropped it.
    /// Commutative, associative and idempotent.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let a = Object::new().update(&VersionVector::new(), Value::data("a"), ActorId(1)).unwrap();
    /// let b = a.update(&a.context(), Value::data("b"), ActorId(1)).unwrap();
    /// assert_eq!(a.join(&b), b); // b has seen a
    /// assert_eq!(b.join(&a), b);
    /// assert_eq!(b.join(&b), b);
    /// ```
    pub fn join(&self, other: &Object) -> Object {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].actor.cmp(&b[j].actor) {
                Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    out.push(merge_entry(&a[i], &b[j]));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Object { entries: out }
    }

    /// Whether `self.join(other) == other`, without building the join: `other` has every
    /// dot `self` has and has dropped every value `self` dropped. (Descending `self` is not
    /// enough: a write with an incomplete context keeps values another replica has
    /// already seen overwritten.) A replica that holds `self` may then store `other` as is.
    pub fn joins_to(&self, other: &Object) -> bool {
        let mut theirs = other.entries.iter().peekable();
        self.entries.iter().all(|mine| {
            while theirs.next_if(|t| t.actor < mine.actor).is_some() {}
            let Some(t) = theirs.next_if(|t| t.actor == mine.actor) else {
                return false; // a dot `other` lacks
            };
            let floor = |e: &Entry| e.counter.saturating_sub(e.values.len() as u64);
            match t.counter.cmp(&mine.counter) {
                Ordering::Less => false,
                // `other`'s values survive where it dropped at least what `self` dropped.
                Ordering::Greater => floor(t) >= floor(mine),
                // A tie keeps `self`'s values, as many as `other` holds (`merge_entry`).
                Ordering::Equal => {
                    t.values.len() <= mine.values.len()
                        && mine.values[..t.values.len()] == t.values[..]
                }
            }
        })
    }

    /// [`join`](Self::join) of two objects the caller owns: the surviving values move into
    /// the result instead of being copied.
    pub fn join_owned(self, other: Object) -> Object {
        let mut out = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let mut a = self.entries.into_iter().peekable();
        let mut b = other.entries.into_iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.actor.cmp(&y.actor),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            let next = match order {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => a.next().zip(b.next()).map(|(x, y)| merge_owned(x, y)),
            };
            out.extend(next);
        }
        Object { entries: out }
    }

    /// The coordinator's write (`dvvset:update(new(Context, Value), Local, Actor)`):
    /// drops the values `context` covers, keeps the others as siblings, and adds `value`
    /// with a new dot `(actor, n + 1)`, `n` being the larger of this object's and the
    /// context's counter for `actor`. `self` must be the coordinator's own durable object
    /// and `actor` its own id, so the dot is fresh.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let a = ActorId(1);
    /// let v1 = Object::new().update(&VersionVector::new(), Value::data("1"), a).unwrap();
    /// // Same actor, no context: the first write is kept as a sibling, not lost.
    /// let v2 = v1.update(&VersionVector::new(), Value::data("2"), a).unwrap();
    /// assert_eq!(v2.live_values(), [b"2".as_slice(), b"1".as_slice()]);
    /// // With the context of a read, one value remains.
    /// let v3 = v2.update(&v2.context(), Value::data("3"), a).unwrap();
    /// assert_eq!(v3.live_values(), [b"3".as_slice()]);
    /// ```
    pub fn update(
        &self,
        context: &VersionVector,
        value: Value,
        actor: ActorId,
    ) -> Result<Object, UpdateError> {
        let ctx = Object {
            entries: context
                .iter()
                .map(|(actor, counter)| Entry {
                    actor,
                    counter,
                    values: Vec::new(),
                })
                .collect(),
        };
        ctx.join(self).add_dot(value, actor)
    }

    /// [`update`](Self::update) of an object the caller owns: the values the context
    /// covers are dropped in place and the others kept, not copied (a replica's
    /// read-modify-write decodes the stored object only to replace it).
    pub fn update_owned(
        mut self,
        context: &VersionVector,
        value: Value,
        actor: ActorId,
    ) -> Result<Object, UpdateError> {
        // `join` of the context (entries without values) into `self`, in place: an actor
        // the context saw up to `c` keeps only its values with dots above `c`.
        for (a, c) in context.iter() {
            match self.entries.binary_search_by_key(&a, |e| e.actor) {
                Ok(i) => {
                    let e = &mut self.entries[i];
                    if c >= e.counter {
                        e.counter = c;
                        e.values.clear();
                    } else {
                        let keep = usize::try_from(e.counter - c).unwrap_or(usize::MAX);
                        e.values.truncate(keep);
                    }
                }
                Err(i) => self.entries.insert(
                    i,
                    Entry {
                        actor: a,
                        counter: c,
                        values: Vec::new(),
                    },
                ),
            }
        }
        self.add_dot(value, actor)
    }

    /// The last step of an update: `value` with the next dot of `actor`.
    fn add_dot(self, value: Value, actor: ActorId) -> Result<Object, UpdateError> {
        let mut out = self;
        match out.entries.binary_search_by_key(&actor, |e| e.actor) {
            Ok(i) => {
                let e = &mut out.entries[i];
                e.counter = e
                    .counter
                    .checked_add(1)
                    .ok_or(UpdateError::CounterExhausted { actor })?;
                e.values.insert(0, value);
            }
            Err(i) => out.entries.insert(
                i,
                Entry {
                    actor,
                    counter: 1,
                    values: vec![value],
                },
            ),
        }
        Ok(out)
    }

    /// `self.context().encode()`, encoded straight from the clock (one allocation).
    pub fn encoded_context(&self) -> Vec<u8> {
        vv::encode_entries(self.clock())
    }

    /// The causal context a client gets (`dvvset:join/1`): every dot this object has seen.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::data("v"), ActorId(5)).unwrap();
    /// assert_eq!(o.context().get(ActorId(5)), 1);
    /// ```
    pub fn context(&self) -> VersionVector {
        VersionVector::from_sorted(self.clock().collect())
    }

    /// Every sibling with its dot, delete markers included; by actor id, newest first.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Dot, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::Deleted, ActorId(2)).unwrap();
    /// let s: Vec<_> = o.siblings().collect();
    /// assert_eq!(s, [(Dot { actor: ActorId(2), counter: 1 }, &Value::Deleted)]);
    /// ```
    pub fn siblings(&self) -> impl Iterator<Item = (Dot, &Value)> + '_ {
        self.entries.iter().flat_map(|e| {
            e.values.iter().zip(0u64..).map(move |(v, i)| {
                (
                    Dot {
                        actor: e.actor,
                        counter: e.counter - i,
                    },
                    v,
                )
            })
        })
    }

    /// Every sibling, delete markers included.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::Deleted, ActorId(2)).unwrap();
    /// assert_eq!(o.values(), [&Value::Deleted]);
    /// ```
    pub fn values(&self) -> Vec<&Value> {
        self.siblings().map(|(_, v)| v).collect()
    }

    /// The siblings that are not delete markers: what a `get` returns (none: not found).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::Deleted, ActorId(2)).unwrap();
    /// assert!(o.live_values().is_empty());
    /// ```
    pub fn live_values(&self) -> Vec<&[u8]> {
        self.siblings().filter_map(|(_, v)| v.as_data()).collect()
    }

    /// The typed states among the siblings (a typed key's concurrent states).
    pub fn typed_values(&self) -> Vec<&crate::crdt::Typed> {
        self.siblings()
            .filter_map(|(_, v)| match v {
                Value::Typed(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Number of siblings, delete markers included.
    ///
    /// ```
    /// use troupe_protocol::object::Object;
    /// assert_eq!(Object::new().sibling_count(), 0);
    /// ```
    pub fn sibling_count(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum()
    }

    /// True if this object has seen every write `other` has, so `self.join(other) ==
    /// self`: a replica that answered `other` is behind (read repair sends it the join).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let a = Object::new().update(&VersionVector::new(), Value::data("a"), ActorId(1)).unwrap();
    /// let b = Object::new().update(&VersionVector::new(), Value::data("b"), ActorId(2)).unwrap();
    /// assert!(!a.descends(&b) && a.join(&b).descends(&b));
    /// ```
    pub fn descends(&self, other: &Object) -> bool {
        vv::descends_sorted(self.clock(), other.clock())
    }

    /// True if this object has seen every write `context` names: a `get` with `after`
    /// may answer with it (read your writes).
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::data("v"), ActorId(1)).unwrap();
    /// assert!(o.covers(&o.context()) && !Object::new().covers(&o.context()));
    /// ```
    pub fn covers(&self, context: &VersionVector) -> bool {
        vv::descends_sorted(self.clock(), context.iter())
    }

    /// True if the object has siblings and all of them are delete markers: the key reads
    /// as not found, but the markers must stay until every replica has them.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::Deleted, ActorId(1)).unwrap();
    /// assert!(o.is_tombstone_only() && !Object::new().is_tombstone_only());
    /// ```
    pub fn is_tombstone_only(&self) -> bool {
        let mut any = false;
        for (_, v) in self.siblings() {
            if !v.is_deleted() {
                return false;
            }
            any = true;
        }
        any
    }

    /// Whether this object, about to be written, is within the sibling limits. Counts
    /// delete markers: they cost storage and bandwidth like values.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, SiblingCheck, Value, VersionVector};
    /// let o = Object::new().update(&VersionVector::new(), Value::data("v"), ActorId(1)).unwrap();
    /// assert_eq!(o.check_siblings(), Ok(SiblingCheck::Fine));
    /// ```
    pub fn check_siblings(&self) -> Result<SiblingCheck, TooManySiblings> {
        match self.sibling_count() {
            count if count > SIBLING_MAX => Err(TooManySiblings {
                count,
                max: SIBLING_MAX,
            }),
            count if count >= SIBLING_WARN => Ok(SiblingCheck::Warn { count }),
            _ => Ok(SiblingCheck::Fine),
        }
    }

    /// A 64-bit digest of the object's causal context: the first 8 bytes (big-endian) of
    /// blake3 over [`VersionVector::encode`] of [`Object::context`], whose entries are
    /// sorted by actor id, so replicas holding the same object compute the same digest.
    ///
    /// Anti-entropy compares replicas by it: two objects with one context hold the same
    /// siblings, since every dot names one write and a write is only ever joined in whole
    /// (with the causal past its context carries), so the set of dots seen decides the
    /// object.
    ///
    /// ```
    /// use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    /// let a = Object::new().update(&VersionVector::new(), Value::data("v"), ActorId(1)).unwrap();
    /// let b = Object::new().update(&VersionVector::new(), Value::data("w"), ActorId(2)).unwrap();
    /// assert_eq!(a.clock_hash(), a.join(&a).clock_hash());
    /// assert_eq!(a.join(&b).clock_hash(), b.join(&a).clock_hash());
    /// assert_ne!(a.clock_hash(), b.clock_hash());
    /// ```
    pub fn clock_hash(&self) -> u64 {
        Object::hash_clock(self.clock())
    }

    /// [`Object::clock_hash`] of an object whose [`Object::clock`] is `clock`: a caller
    /// may take the clock on one thread and hash it on another.
    pub fn hash_clock(clock: impl ExactSizeIterator<Item = (ActorId, u64)>) -> u64 {
        let h = vv::with_encoded_entries(clock, blake3::hash);
        let first: [u8; 8] = h.as_bytes()[..8]
            .try_into()
            .expect("a blake3 hash has 32 bytes");
        u64::from_be_bytes(first)
    }

    /// The storage and peer-wire bytes (format 1, layout in the module doc).
    ///
    /// ```
    /// use troupe_protocol::object::Object;
    /// assert_eq!(Object::new().encode(), [0x01, 0x00]);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        encode::encode_object(self)
    }

    /// Decodes and validates [`Object::encode`]'s bytes; refuses anything else.
    ///
    /// ```
    /// use troupe_protocol::object::{DecodeError, Object};
    /// assert_eq!(Object::decode(&[0x01, 0x00]).unwrap(), Object::new());
    /// assert!(matches!(Object::decode(&[0x02]), Err(DecodeError::UnknownFormat { byte: 2, .. })));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Object, DecodeError> {
        encode::decode_object(bytes)
    }

    /// The (actor, counter) pairs, sorted by actor: the context without allocating.
    pub fn clock(&self) -> impl ExactSizeIterator<Item = (ActorId, u64)> + '_ {
        self.entries.iter().map(|e| (e.actor, e.counter))
    }

    /// Total bytes of the data values (for sizing buffers).
    fn value_bytes(&self) -> usize {
        self.siblings()
            .map(|(_, v)| v.as_data().map_or(1, |b| b.len() + 3))
            .sum()
    }
}

/// [`merge_entry`] of owned entries: the kept values move.
fn merge_owned(a: Entry, b: Entry) -> Entry {
    let (mut hi, lo) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    let floor = lo.counter.saturating_sub(lo.values.len() as u64);
    let keep = usize::try_from(hi.counter - floor).unwrap_or(usize::MAX);
    hi.values.truncate(keep);
    hi
}

/// Merges one actor's entries from two objects (`dvvset:merge/5`). The side with the
/// larger counter has every dot the other has; of its values, keep those the other side
/// has not dropped: dots above `other.counter - other.values.len()`.
fn merge_entry(a: &Entry, b: &Entry) -> Entry {
    let (hi, lo) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    // Dots of this actor at or below `floor` are dropped on the `lo` side.
    let floor = lo.counter.saturating_sub(lo.values.len() as u64);
    let keep =
        usize::try_from(hi.counter - floor).map_or(hi.values.len(), |k| k.min(hi.values.len()));
    Entry {
        actor: hi.actor,
        counter: hi.counter,
        values: hi.values[..keep].to_vec(),
    }
}

/// Serializes as its format-1 encoding in a MessagePack bin.
impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Object::decode(&bytes).map_err(serde::de::Error::custom)
    }
}
