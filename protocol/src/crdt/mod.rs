//! Conflict-free data types: a PN-counter, an add-wins observed-remove set and a
//! last-writer-wins register. Pure: no I/O.
//!
//! A typed key's state travels inside the key's [`Object`](crate::object::Object) as a
//! [`Value::Typed`](crate::object::Value) sibling: the coordinator joins the typed siblings
//! it holds, applies the client's operation for its own actor id, and writes the result with
//! the object's whole context, so it replaces every version it saw (one state per
//! concurrent coordinator at most). Readers [`Typed::join`] the typed siblings; replication,
//! read repair and the sibling bound are the object's.
//!
//! # Types
//! - [`PnCounter`]: per actor id, the sum of its increments and of its decrements; the
//!   value is their difference. Join: per-actor maximum (only the actor's own coordinator
//!   raises its entries, from its own durable state, so the maximum is the latest).
//! - [`OrSet`]: the observed-remove set without tombstones (ORSWOT): a clock (per actor, the
//!   adds it issued) and per element the dots of the adds that put it there. An add issues a
//!   new dot; a remove drops the element's dots the coordinator observed. Join keeps a dot
//!   both sides hold, or one side holds and the other's clock has not seen: so a remove
//!   never cancels an add it did not observe (add wins).
//! - [`LwwRegister`]: a value with a hybrid-logical-clock timestamp and the writer's actor
//!   id; join keeps the greater `(timestamp, actor)`.
//!
//! # Encoding (inside an object value, see `crate::object`)
//! A type byte, then:
//! ```text
//! 0x10 counter   varint P, P x (u64 BE actor, varint sum)     increments, actors ascending
//!                varint N, N x (u64 BE actor, varint sum)     decrements, actors ascending
//! 0x11 set       varint C, C x (u64 BE actor, varint counter) clock, actors ascending
//!                varint E, E x (varint len, bytes,            elements ascending
//!                               varint D, D x (u64 BE actor, varint counter))  dots ascending
//! 0x12 register  u64 BE timestamp, u64 BE actor, varint len, bytes
//! ```
//! Canonical only (sorted, no zero sums or counters, no empty dot sets, no trailing bytes),
//! so equal states have equal bytes.
//!
//! # Invariants
//! - `join` is commutative, associative and idempotent for each type (property-tested
//!   against plain models in `tests.rs`: an integer, a set, a timestamped value);
//! - an operation never panics: overflow of the counter's i64 value, of a sum, and a set
//!   past its member limit are errors that change nothing.

mod counter;
mod encode;
mod register;
mod set;

#[cfg(test)]
mod tests;

pub use counter::PnCounter;
pub use register::{hlc_now, LwwRegister};
pub use set::OrSet;

use crate::object::ActorId;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Default `limits.max_set_members`: adds past it are refused.
pub const DEFAULT_MAX_SET_MEMBERS: usize = 100_000;

/// Which type a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeKind {
    Counter,
    Set,
    Register,
}

impl fmt::Display for TypeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypeKind::Counter => "counter",
            TypeKind::Set => "set",
            TypeKind::Register => "register",
        })
    }
}

impl TypeKind {
    /// The client ops that work on this type, for error messages.
    pub fn ops(self) -> &'static str {
        match self {
            TypeKind::Counter => "incr and counter",
            TypeKind::Set => "sadd, srem and smembers",
            TypeKind::Register => "reg_put and reg_get",
        }
    }
}

/// The state of a typed key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Typed {
    Counter(PnCounter),
    Set(OrSet),
    Register(LwwRegister),
}

/// An operation on a typed key, as a coordinator applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum TypedOp {
    /// Add `by` (negative: subtract).
    Incr {
        by: i64,
    },
    SetAdd {
        members: Vec<serde_bytes::ByteBuf>,
    },
    SetRemove {
        members: Vec<serde_bytes::ByteBuf>,
    },
    RegPut {
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

/// Why an operation was not applied. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TypedError {
    #[error("the counter would leave the range of a 64-bit signed integer ({value} + {by})")]
    CounterOverflow { value: i64, by: i64 },
    #[error("the set would hold {would} members, more than limits.max_set_members = {max}")]
    SetTooLarge { would: usize, max: usize },
    #[error("the key holds a {found}, not a {wanted}: use {}", found.ops())]
    WrongType { found: TypeKind, wanted: TypeKind },
}

impl TypedOp {
    pub fn kind(&self) -> TypeKind {
        match self {
            TypedOp::Incr { .. } => TypeKind::Counter,
            TypedOp::SetAdd { .. } | TypedOp::SetRemove { .. } => TypeKind::Set,
            TypedOp::RegPut { .. } => TypeKind::Register,
        }
    }

    /// The state after this operation, issued by `actor` at hybrid-logical time `now`
    /// (registers only), on `current` (`None`: the key holds no state of this type yet).
    pub fn apply(
        &self,
        current: Option<&Typed>,
        actor: ActorId,
        now: u64,
        max_set_members: usize,
    ) -> Result<Typed, TypedError> {
        if let Some(c) = current {
            if c.kind() != self.kind() {
                return Err(TypedError::WrongType {
                    found: c.kind(),
                    wanted: self.kind(),
                });
            }
        }
        Ok(match (self, current) {
            (TypedOp::Incr { by }, c) => {
                let mut s = match c {
                    Some(Typed::Counter(s)) => s.clone(),
                    _ => PnCounter::default(),
                };
                s.incr(actor, *by)?;
                Typed::Counter(s)
            }
            (TypedOp::SetAdd { members }, c) => {
                let mut s = match c {
                    Some(Typed::Set(s)) => s.clone(),
                    _ => OrSet::default(),
                };
                s.add(actor, members.iter().map(|m| m.as_slice()), max_set_members)?;
                Typed::Set(s)
            }
            (TypedOp::SetRemove { members }, c) => {
                let mut s = match c {
                    Some(Typed::Set(s)) => s.clone(),
                    _ => OrSet::default(),
                };
                s.remove(members.iter().map(|m| m.as_slice()));
                Typed::Set(s)
            }
            (TypedOp::RegPut { value }, c) => {
                let prev = match c {
                    Some(Typed::Register(r)) => Some(r),
                    _ => None,
                };
                Typed::Register(LwwRegister::put(prev, value.clone(), actor, now))
            }
        })
    }
}

impl Typed {
    pub fn kind(&self) -> TypeKind {
        match self {
            Typed::Counter(_) => TypeKind::Counter,
            Typed::Set(_) => TypeKind::Set,
            Typed::Register(_) => TypeKind::Register,
        }
    }

    /// The join of two states of one type; two types cannot be joined (a key holds one type,
    /// and two concurrent writes of different types are reported to the client).
    pub fn join(&self, other: &Typed) -> Result<Typed, TypedError> {
        Ok(match (self, other) {
            (Typed::Counter(a), Typed::Counter(b)) => Typed::Counter(a.join(b)),
            (Typed::Set(a), Typed::Set(b)) => Typed::Set(a.join(b)),
            (Typed::Register(a), Typed::Register(b)) => Typed::Register(a.join(b)),
            (a, b) => {
                return Err(TypedError::WrongType {
                    found: b.kind(),
                    wanted: a.kind(),
                })
            }
        })
    }

    /// The join of every state in `states` (`None` when there are none).
    pub fn join_all<'a>(
        states: impl IntoIterator<Item = &'a Typed>,
    ) -> Result<Option<Typed>, TypedError> {
        let mut acc: Option<Typed> = None;
        for s in states {
            acc = Some(match acc {
                None => s.clone(),
                Some(a) => a.join(s)?,
            });
        }
        Ok(acc)
    }
}
