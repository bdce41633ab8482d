//! Byte encodings of the typed states (layout in the parent module's docs). The decoder
//! never panics, allocates no more than its input's length, and accepts only the canonical
//! form.

use super::{LwwRegister, OrSet, PnCounter, Typed};
use crate::object::encode::{put_varint, Reader};
use crate::object::{ActorId, DecodeError};
use std::collections::{BTreeMap, BTreeSet};

pub const TYPE_COUNTER: u8 = 0x10;
pub const TYPE_SET: u8 = 0x11;
pub const TYPE_REGISTER: u8 = 0x12;

fn put_actor_map(out: &mut Vec<u8>, m: &BTreeMap<ActorId, u64>) {
    put_varint(out, m.len() as u64);
    for (a, n) in m {
        out.extend_from_slice(&a.0.to_be_bytes());
        put_varint(out, *n);
    }
}

impl Typed {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Typed::Counter(c) => {
                out.push(TYPE_COUNTER);
                put_actor_map(&mut out, &c.inc);
                put_actor_map(&mut out, &c.dec);
            }
            Typed::Set(s) => {
                out.push(TYPE_SET);
                put_actor_map(&mut out, &s.clock);
                put_varint(&mut out, s.entries.len() as u64);
                for (k, dots) in &s.entries {
                    put_varint(&mut out, k.len() as u64);
                    out.extend_from_slice(k);
                    put_varint(&mut out, dots.len() as u64);
                    for (a, n) in dots {
                        out.extend_from_slice(&a.0.to_be_bytes());
                        put_varint(&mut out, *n);
                    }
                }
            }
            Typed::Register(r) => {
                out.push(TYPE_REGISTER);
                out.extend_from_slice(&r.ts.to_be_bytes());
                out.extend_from_slice(&r.actor.0.to_be_bytes());
                put_varint(&mut out, r.value.len() as u64);
                out.extend_from_slice(&r.value);
            }
        }
        out
    }

    /// Decodes a whole typed state (as `encode` wrote it; no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Typed, DecodeError> {
        let mut r = Reader::new(bytes, crate::object::Kind::Object);
        let t = Typed::decode_from(&mut r)?;
        r.finish()?;
        Ok(t)
    }

    /// Decodes a typed state read from `r` (which must hold exactly one).
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Typed, DecodeError> {
        let at = r.pos();
        let bad = |why: &'static str| DecodeError::BadTyped { at, why };
        Ok(match r.u8("a type byte")? {
            TYPE_COUNTER => {
                let inc = actor_map(r, "a counter", bad("a counter entry of zero"))?;
                let dec = actor_map(r, "a counter", bad("a counter entry of zero"))?;
                Typed::Counter(PnCounter { inc, dec })
            }
            TYPE_SET => {
                let clock = actor_map(r, "a set clock", bad("a set clock entry of zero"))?;
                let count = r.varint("the member count")?;
                // Each member takes at least 2 bytes (length and dot count).
                if count > (r.remaining() / 2) as u64 {
                    return Err(bad("more members than bytes"));
                }
                let mut entries = BTreeMap::new();
                let mut last: Option<&[u8]> = None;
                for _ in 0..count {
                    let len = r.varint("a member's length")?;
                    if len > r.remaining() as u64 {
                        return Err(bad("a member longer than the bytes left"));
                    }
                    let k = r.bytes(len as usize, "a member's bytes")?;
                    if last.is_some_and(|l| l >= k) {
                        return Err(bad("set members not strictly ascending"));
                    }
                    last = Some(k);
                    let d = r.varint("a member's dot count")?;
                    if d == 0 || d > (r.remaining() / 9) as u64 {
                        return Err(bad("a member with no dots or more dots than bytes"));
                    }
                    let mut dots = BTreeSet::new();
                    let mut prev: Option<(ActorId, u64)> = None;
                    for _ in 0..d {
                        let dot = (r.actor()?, r.varint("a dot's counter")?);
                        if dot.1 == 0 || prev.is_some_and(|p| p >= dot) {
                            return Err(bad("set dots not strictly ascending or zero"));
                        }
                        if clock.get(&dot.0).is_none_or(|&c| c < dot.1) {
                            return Err(bad("a set dot its clock has not seen"));
                        }
                        prev = Some(dot);
                        dots.insert(dot);
                    }
                    entries.insert(k.to_vec(), dots);
                }
                Typed::Set(OrSet { clock, entries })
            }
            TYPE_REGISTER => {
                let ts = u64::from_be_bytes(
                    r.bytes(8, "a timestamp")?
                        .try_into()
                        .expect("8 bytes were read"),
                );
                let actor = r.actor()?;
                let len = r.varint("the value's length")?;
                if len > r.remaining() as u64 {
                    return Err(bad("a value longer than the bytes left"));
                }
                let value = r.bytes(len as usize, "the value's bytes")?.to_vec();
                Typed::Register(LwwRegister { ts, actor, value })
            }
            _ => return Err(bad("unknown type byte")),
        })
    }
}

/// An ascending actor -> nonzero count map.
fn actor_map(
    r: &mut Reader<'_>,
    what: &'static str,
    zero: DecodeError,
) -> Result<BTreeMap<ActorId, u64>, DecodeError> {
    let at = r.pos();
    let count = r.varint("an entry count")?;
    if count > (r.remaining() / 9) as u64 {
        return Err(DecodeError::BadTyped {
            at,
            why: "more entries than bytes",
        });
    }
    let _ = what;
    let mut out = BTreeMap::new();
    let mut last: Option<ActorId> = None;
    for _ in 0..count {
        let a = r.actor()?;
        if last.is_some_and(|l| l >= a) {
            return Err(DecodeError::BadTyped {
                at: r.pos(),
                why: "actor ids not strictly ascending",
            });
        }
        last = Some(a);
        let n = r.varint("a count")?;
        if n == 0 {
            return Err(zero);
        }
        out.insert(a, n);
    }
    Ok(out)
}
