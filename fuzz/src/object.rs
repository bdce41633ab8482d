//! Target `object`: the decoders of stored and replicated objects ([`Object::decode`]), of typed states ([`Typed::decode`]) and
//! of client causal contexts ([`VersionVector::decode`]), directly and inside MessagePack
//! (their serde form, a `bin`), and the operations a node then runs on what it decoded
//! (`join` with a replica's object, `update` with a client's context).
//!
//! The first byte picks the mode (`% 5`): 0 object, 1 context, 2 an object, a context and a
//! second object combined, 3 their MessagePack forms, 4 a typed state (`crate::crdt`:
//! counter, set, register; also reached inside objects as typed values) and an operation on
//! it. Checked for any input: no panic, and the
//! decoders' documented promise that they accept only the canonical form (whatever decodes
//! re-encodes to exactly the input bytes); join is idempotent and has the empty object as
//! identity; a join or an update of decoded values encodes to something that decodes back.

use crate::Bytes;
use troupe_protocol::crdt::{Typed, TypedOp};
use troupe_protocol::object::{ActorId, Object, Value, VersionVector};

pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    match b.u8() % 5 {
        0 => {
            object(b.rest());
        }
        1 => {
            context(b.rest());
        }
        2 => combined(&mut b),
        4 => typed_ops(&mut b),
        _ => {
            let rest = b.rest();
            if let Ok(o) = rmp_serde::from_slice::<Object>(rest) {
                check_object(&o);
            }
            if let Ok(c) = rmp_serde::from_slice::<VersionVector>(rest) {
                check_context(&c);
            }
        }
    }
}

/// Decodes `bytes` as an object and checks it.
pub fn object(bytes: &[u8]) -> Option<Object> {
    let o = Object::decode(bytes).ok()?;
    assert_eq!(o.encode(), bytes, "a non-canonical object was accepted");
    check_object(&o);
    Some(o)
}

/// Decodes `bytes` as a context and checks it.
pub fn context(bytes: &[u8]) -> Option<VersionVector> {
    let c = VersionVector::decode(bytes).ok()?;
    assert_eq!(c.encode(), bytes, "a non-canonical context was accepted");
    check_context(&c);
    Some(c)
}

/// Decodes `bytes` as a typed state (counter, set, register) and checks it.
pub fn typed(bytes: &[u8]) -> Option<Typed> {
    let t = Typed::decode(bytes).ok()?;
    assert_eq!(
        t.encode(),
        bytes,
        "a non-canonical typed state was accepted"
    );
    assert_eq!(t.join(&t).as_ref(), Ok(&t), "typed join is not idempotent");
    Some(t)
}

/// A typed state, then an operation on it (what a coordinator does with a typed write).
fn typed_ops(b: &mut Bytes<'_>) {
    let op_byte = b.u8();
    let arg = b.u64();
    let n = usize::from(b.u8());
    let member = b.take(n).to_vec();
    let Some(t) = typed(b.rest()) else {
        return;
    };
    let op = match op_byte % 4 {
        0 => TypedOp::Incr { by: arg as i64 },
        1 => TypedOp::SetAdd {
            members: vec![member.into()],
        },
        2 => TypedOp::SetRemove {
            members: vec![member.into()],
        },
        _ => TypedOp::RegPut { value: member },
    };
    let actor = ActorId(u64::from(op_byte >> 2));
    if let Ok(next) = op.apply(Some(&t), actor, arg, 64) {
        assert_eq!(Typed::decode(&next.encode()).as_ref(), Ok(&next));
    }
}

fn check_object(o: &Object) {
    assert_eq!(&o.join(o), o, "join is not idempotent");
    assert_eq!(&o.join(&Object::new()), o);
    assert_eq!(&Object::new().join(o), o);
    assert!(o.descends(o));
    let ctx = o.context();
    assert!(o.covers(&ctx));
    // An object may hold more actors than a client context may carry; within the bound
    // its context round-trips.
    if let Ok(back) = VersionVector::decode(&ctx.encode()) {
        assert_eq!(back, ctx);
    }
    assert!(o.sibling_count() >= o.live_values().len());
    let _ = o.check_siblings();
    let _ = o.is_tombstone_only();
}

fn check_context(c: &VersionVector) {
    assert!(c.descends(c));
    assert_eq!(&c.merge(c), c);
    assert_eq!(&c.merge(&VersionVector::new()), c);
    assert_eq!(c.iter().count(), c.len());
}

/// An object `a`, a context and an object `b`, each length-prefixed: the write path
/// (`a.update(ctx, ..)`) and the replica path (`a.join(b)`).
fn combined(b: &mut Bytes<'_>) {
    let actor = ActorId(u64::from(b.u8() % 4));
    let n = usize::from(b.u8());
    let Some(a) = object(b.take(n)) else {
        return;
    };
    let n = usize::from(b.u8());
    let ctx = context(b.take(n)).unwrap_or_default();
    let other = object(b.rest());
    let value = if actor.0 == 3 {
        Value::Deleted
    } else {
        Value::data(b"v")
    };
    if let Ok(u) = a.update(&ctx, value, actor) {
        assert_eq!(Object::decode(&u.encode()).as_ref(), Ok(&u));
        assert!(u.context().descends(&ctx), "an update forgot its context");
        assert!(
            u.context().descends(&a.context()),
            "an update forgot the object"
        );
    }
    if let Some(other) = other {
        let j = a.join(&other);
        assert_eq!(Object::decode(&j.encode()).as_ref(), Ok(&j));
        assert!(j.descends(&a) && j.descends(&other), "a join forgot a side");
    }
}
