//! Tests of the object core: `dvvset.erl`'s own test vectors, the classic scenarios, the
//! encodings (golden bytes, checked against `PROTOCOL.md` too, and hostile input), and
//! property tests against a causal-history model (`model` below).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const A: ActorId = ActorId(0xA);
const B: ActorId = ActorId(0xB);
const C: ActorId = ActorId(0xC);

fn d(s: &str) -> Value {
    Value::data(s)
}

fn none() -> VersionVector {
    VersionVector::new()
}

/// An object from literal `(actor, counter, values newest first)` entries, as dvvset writes
/// them; `"-"` is a delete marker.
fn obj(entries: &[(ActorId, u64, &[&str])]) -> Object {
    Object {
        entries: entries
            .iter()
            .map(|&(actor, counter, values)| Entry {
                actor,
                counter,
                values: values
                    .iter()
                    .map(|&v| if v == "-" { Value::Deleted } else { d(v) })
                    .collect(),
            })
            .collect(),
    }
}

fn vv(pairs: &[(ActorId, u64)]) -> VersionVector {
    pairs.iter().copied().collect()
}

fn put(o: &Object, ctx: &VersionVector, v: &str, actor: ActorId) -> Object {
    o.update(ctx, d(v), actor)
        .expect("counter far from u64::MAX")
}

// ---- dvvset.erl's eunit vectors, translated (`update/2` is an update of an empty object).

#[test]
fn dvvset_update_test() {
    let a0 = put(&Object::new(), &none(), "v1", A);
    let a1 = put(&a0, &a0.context(), "v2", A);
    let a2 = put(&a1, &a1.context(), "v3", B);
    let a3 = put(&a1, &a0.context(), "v4", B);
    let a4 = put(&a1, &a0.context(), "v5", A);
    assert_eq!(a0, obj(&[(A, 1, &["v1"])]));
    assert_eq!(a1, obj(&[(A, 2, &["v2"])]));
    assert_eq!(a2, obj(&[(A, 2, &[]), (B, 1, &["v3"])]));
    assert_eq!(a3, obj(&[(A, 2, &["v2"]), (B, 1, &["v4"])]));
    assert_eq!(a4, obj(&[(A, 3, &["v5", "v2"])]));
}

#[test]
fn dvvset_sync_test() {
    let x = obj(&[(ActorId(0xF), 1, &[])]);
    let a = put(&Object::new(), &none(), "v1", A);
    let y = put(&Object::new(), &none(), "v2", B);
    let a1 = put(&Object::new(), &a.context(), "v2", A);
    let a3 = put(&Object::new(), &a1.context(), "v3", B);
    let a4 = put(&Object::new(), &a1.context(), "v3", C);
    let w = obj(&[(A, 1, &[])]);
    let z = obj(&[(A, 2, &["v2", "v1"])]);
    assert_eq!(w.join(&z), obj(&[(A, 2, &["v2"])]));
    assert_eq!(w.join(&z), z.join(&w));
    assert_eq!(a.join(&a1), a1.join(&a));
    assert_eq!(a4.join(&a3), a3.join(&a4));
    assert_eq!(
        a4.join(&a3),
        obj(&[(A, 2, &[]), (B, 1, &["v3"]), (C, 1, &["v3"])])
    );
    assert_eq!(x.join(&a), obj(&[(A, 1, &["v1"]), (ActorId(0xF), 1, &[])]));
    assert_eq!(x.join(&a), a.join(&x));
    assert_eq!(a.join(&y), obj(&[(A, 1, &["v1"]), (B, 1, &["v2"])]));
    assert_eq!(y.join(&a), a.join(&y));
}

#[test]
fn dvvset_sync_update_test() {
    let a0 = put(&Object::new(), &none(), "v1", A); // Mary writes v1 without a context
    let vv1 = a0.context(); // Peter reads v1
    let a1 = put(&a0, &none(), "v2", A); // Mary writes v2 without a context
    let a2 = put(&a1, &vv1, "v3", A); // Peter writes v3 with the context of v1
    assert_eq!(vv1, vv(&[(A, 1)]));
    assert_eq!(a1, obj(&[(A, 2, &["v2", "v1"])]));
    assert_eq!(a2, obj(&[(A, 3, &["v3", "v2"])])); // v1 is gone, v2 stays
}

// ---- Classic scenarios.

#[test]
fn two_context_free_puts_through_different_coordinators_are_two_siblings() {
    // Concurrently, before either replicated.
    let at_a = put(&Object::new(), &none(), "x", A);
    let at_b = put(&Object::new(), &none(), "y", B);
    let joined = at_a.join(&at_b);
    assert_eq!(joined.live_values(), [b"x".as_slice(), b"y".as_slice()]);
    // And when B already holds x: still two, x is not overwritten.
    let at_b = put(&at_a, &none(), "y", B);
    assert_eq!(at_b.sibling_count(), 2);
    assert_eq!(at_b.join(&at_a), at_b);
}

#[test]
fn a_put_with_the_reads_context_resolves_siblings_everywhere() {
    let at_a = put(&Object::new(), &none(), "x", A);
    let at_b = put(&Object::new(), &none(), "y", B);
    let read = at_a.join(&at_b);
    let resolved = put(&at_a, &read.context(), "xy", A);
    assert_eq!(resolved.live_values(), [b"xy".as_slice()]);
    // B learns of it by replication or read repair: its own y is superseded too.
    let b_after = at_b.join(&resolved);
    assert_eq!(b_after, resolved);
    assert!(resolved.descends(&at_a) && resolved.descends(&at_b));
}

#[test]
fn same_actor_writing_twice_without_context_keeps_both() {
    let one = put(&Object::new(), &none(), "1", A);
    let two = put(&one, &none(), "2", A);
    assert_eq!(two.live_values(), [b"2".as_slice(), b"1".as_slice()]);
}

#[test]
fn a_stale_context_supersedes_only_what_it_saw() {
    let one = put(&Object::new(), &none(), "1", A);
    let seen = one.context();
    let two = put(&one, &seen, "2", A); // resolves 1
    let three = put(&two, &seen, "3", A); // client still holds the context of 1
    assert_eq!(three.live_values(), [b"3".as_slice(), b"2".as_slice()]);
}

#[test]
fn a_delete_is_a_marker_that_joins_like_a_value() {
    let x = put(&Object::new(), &none(), "x", A);
    let stale_b = x.clone(); // replica B got x, then missed the delete
    let deleted = x.update(&x.context(), Value::Deleted, A).unwrap();
    assert!(deleted.live_values().is_empty());
    assert!(deleted.is_tombstone_only());
    assert_eq!(deleted.values(), [&Value::Deleted]);
    // The stale replica does not resurrect x: the marker's context covers it.
    assert_eq!(stale_b.join(&deleted), deleted);
    assert_eq!(deleted.join(&stale_b), deleted);
    // A put concurrent with the delete survives it; the marker stays a sibling.
    let y = put(&stale_b, &stale_b.context(), "y", B);
    let both = deleted.join(&y);
    assert_eq!(both.live_values(), [b"y".as_slice()]);
    assert_eq!(both.sibling_count(), 2);
    assert!(!both.is_tombstone_only());
    // A delete that saw both leaves only a marker.
    let gone = both.update(&both.context(), Value::Deleted, B).unwrap();
    assert_eq!(gone.values(), [&Value::Deleted]);
    // A write after the delete brings the key back, with no marker left.
    let back = put(&gone, &gone.context(), "z", A);
    assert_eq!(back.values(), [&d("z")]);
}

#[test]
fn update_leaves_the_local_object_unchanged_and_tolerates_unknown_actors_in_the_context() {
    let local = put(&Object::new(), &none(), "x", A);
    let before = local.clone();
    // A context naming a write this replica has not received yet (C's dot 4).
    let ctx = vv(&[(A, 1), (C, 4)]);
    let out = put(&local, &ctx, "y", A);
    assert_eq!(local, before);
    assert_eq!(out, obj(&[(A, 2, &["y"]), (C, 4, &[])]));
    // When C's write arrives it is already superseded.
    let c_write = obj(&[(C, 4, &["c"])]);
    assert_eq!(out.join(&c_write).live_values(), [b"y".as_slice()]);
}

#[test]
fn descends_and_covers_tell_read_repair_and_read_your_writes_what_is_behind() {
    let x = put(&Object::new(), &none(), "x", A);
    let y = put(&x, &x.context(), "y", A);
    assert!(y.descends(&x) && !x.descends(&y));
    assert!(x.descends(&x));
    assert!(y.covers(&x.context()) && !x.covers(&y.context()));
    assert!(Object::new().covers(&none()));
    let z = put(&Object::new(), &none(), "z", B);
    assert!(!y.descends(&z) && !z.descends(&y));
    assert!(y.join(&z).covers(&z.context()));
}

#[test]
fn an_exhausted_counter_is_refused_not_reused() {
    let local = obj(&[(A, u64::MAX, &["x"])]);
    assert_eq!(
        local.update(&none(), d("y"), A),
        Err(UpdateError::CounterExhausted { actor: A })
    );
    // Another actor can still write.
    assert_eq!(put(&local, &none(), "y", B).sibling_count(), 2);
}

#[test]
fn sibling_limits_warn_at_25_and_refuse_past_100() {
    let mut o = Object::new();
    for i in 1..=101 {
        o = put(&o, &none(), &i.to_string(), A);
        let got = o.check_siblings();
        match i {
            1..=24 => assert_eq!(got, Ok(SiblingCheck::Fine), "{i}"),
            25..=100 => assert_eq!(got, Ok(SiblingCheck::Warn { count: i }), "{i}"),
            _ => assert_eq!(
                got,
                Err(TooManySiblings {
                    count: 101,
                    max: 100
                })
            ),
        }
    }
    let err = o.check_siblings().unwrap_err();
    assert_eq!(
        err.for_key("user:7"),
        "key user:7 has 101 siblings (limit 100); resolve them by reading and writing back with the context"
    );
    // Resolving brings it back to one.
    let resolved = put(&o, &o.context(), "one", A);
    assert_eq!(resolved.check_siblings(), Ok(SiblingCheck::Fine));
}

// ---- Encodings.

/// A: counter 2 holding "hi"; B: counter 1 holding a delete marker concurrent with it.
fn golden_object() -> Object {
    let (a, b) = (ActorId(0xA), ActorId(0xB));
    let a1 = put(&Object::new(), &none(), "x", a);
    let a2 = put(&a1, &a1.context(), "hi", a);
    let b1 = a1.update(&a1.context(), Value::Deleted, b).unwrap();
    a2.join(&b1)
}

const GOLDEN_OBJECT: &[u8] = &[
    0x01, 0x02, // format 1, two entries
    0, 0, 0, 0, 0, 0, 0, 0x0a, 0x02, 0x01, 0x00, 0x02, b'h', b'i', // A: counter 2, "hi"
    0, 0, 0, 0, 0, 0, 0, 0x0b, 0x01, 0x01, 0x01, // B: counter 1, a delete marker
];

const GOLDEN_CONTEXT: &[u8] = &[
    0xc1, 0x02, // format 1, two entries
    0, 0, 0, 0, 0, 0, 0, 0x0a, 0x02, // A: 2
    0, 0, 0, 0, 0, 0, 0, 0x0b, 0x01, // B: 1
];

#[test]
fn golden_bytes_of_a_small_object_and_its_context() {
    let o = golden_object();
    assert_eq!(o, obj(&[(A, 2, &["hi"]), (B, 1, &["-"])]));
    assert_eq!(o.encode(), GOLDEN_OBJECT);
    assert_eq!(Object::decode(GOLDEN_OBJECT).unwrap(), o);
    assert_eq!(o.context().encode(), GOLDEN_CONTEXT);
    assert_eq!(
        o.encoded_context(),
        GOLDEN_CONTEXT,
        "encoded straight from the clock"
    );
    assert_eq!(VersionVector::decode(GOLDEN_CONTEXT).unwrap(), o.context());
}

/// The `hex object:NAME` / `hex context:NAME` blocks of PROTOCOL.md.
fn protocol_md_blocks(tag: &str) -> BTreeMap<String, Vec<u8>> {
    let doc = include_str!("../../PROTOCOL.md");
    let prefix = format!("```hex {tag}:");
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix(prefix.as_str()) else {
            continue;
        };
        let mut bytes = Vec::new();
        for l in lines.by_ref().take_while(|l| l.trim() != "```") {
            for tok in l.split_whitespace() {
                bytes.push(u8::from_str_radix(tok, 16).expect("hex byte in PROTOCOL.md"));
            }
        }
        out.insert(name.trim().to_string(), bytes);
    }
    out
}

#[test]
fn protocol_md_shows_the_golden_object_and_context() {
    assert_eq!(protocol_md_blocks("object")["small"], GOLDEN_OBJECT);
    assert_eq!(protocol_md_blocks("context")["small"], GOLDEN_CONTEXT);
}

#[test]
fn garbage_contexts_are_refused_with_the_reason() {
    use DecodeError::*;
    let k = Kind::Context;
    let cases: &[(&[u8], DecodeError)] = &[
        (b"", Empty { kind: k }),
        (
            &[0x00],
            UnknownFormat {
                kind: k,
                byte: 0,
                known: 0xc1,
            },
        ),
        (
            &[0x01, 0x00],
            WrongKind {
                kind: k,
                found: Kind::Object,
            },
        ),
        (
            &[0xc1],
            Truncated {
                kind: k,
                at: 1,
                expected: "the entry count",
            },
        ),
        (&[0xc1, 0x00, 0x00], TrailingBytes { kind: k, count: 1 }),
        (&[0xc1, 0x80, 0x00], BadVarint { kind: k, at: 1 }), // not the shortest form
        (
            &[0xc1, 0x81, 0x08],
            TooManyEntries {
                kind: k,
                count: 1025,
                max: 1024,
            },
        ),
        (
            &[0xc1, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            ZeroCounter {
                kind: k,
                actor: ActorId(1),
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            &VersionVector::decode(bytes).unwrap_err(),
            want,
            "{bytes:02x?}"
        );
    }
    let dup = [
        0xc1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2,
    ];
    assert_eq!(
        VersionVector::decode(&dup),
        Err(UnsortedActors { kind: k, at: 11 })
    );
    let long = vec![0xc1; MAX_CONTEXT_BYTES + 1];
    assert!(matches!(VersionVector::decode(&long), Err(TooLong { .. })));
    // Eleven-byte varint, and a tenth byte carrying bits past 64.
    let mut over = vec![0xc1, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    over.extend([0xff; 9]);
    over.push(0x02);
    assert_eq!(
        VersionVector::decode(&over),
        Err(BadVarint { kind: k, at: 10 })
    );
    let mut max = vec![0xc1, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    max.extend([0xff; 9]);
    max.push(0x01);
    assert_eq!(
        VersionVector::decode(&max).unwrap(),
        vv(&[(ActorId(1), u64::MAX)])
    );
    // Every strict prefix of a valid context is refused.
    for n in 0..GOLDEN_CONTEXT.len() {
        assert!(
            VersionVector::decode(&GOLDEN_CONTEXT[..n]).is_err(),
            "prefix {n}"
        );
    }
}

#[test]
fn garbage_objects_are_refused_with_the_reason() {
    use DecodeError::*;
    let k = Kind::Object;
    let entry = |actor: u8, rest: &[u8]| {
        let mut v = vec![0, 0, 0, 0, 0, 0, 0, actor];
        v.extend_from_slice(rest);
        v
    };
    let with = |entries: &[Vec<u8>]| {
        let mut v = vec![0x01, entries.len() as u8];
        for e in entries {
            v.extend_from_slice(e);
        }
        v
    };
    assert_eq!(
        Object::decode(&[0x07]),
        Err(UnknownFormat {
            kind: k,
            byte: 7,
            known: 1
        })
    );
    assert_eq!(
        Object::decode(&[0xc1, 0]),
        Err(WrongKind {
            kind: k,
            found: Kind::Context
        })
    );
    assert_eq!(
        Object::decode(&with(&[entry(1, &[0, 0])])),
        Err(ZeroCounter {
            kind: k,
            actor: ActorId(1)
        })
    );
    assert_eq!(
        Object::decode(&with(&[entry(1, &[1, 2, 1, 1])])),
        Err(MoreValuesThanCounter {
            actor: ActorId(1),
            values: 2,
            counter: 1
        })
    );
    assert_eq!(
        Object::decode(&with(&[entry(1, &[1, 1, 7])])),
        Err(BadValueTag { tag: 7, at: 12 })
    );
    assert_eq!(
        Object::decode(&with(&[entry(2, &[1, 0]), entry(1, &[1, 0])])),
        Err(UnsortedActors { kind: k, at: 12 })
    );
    // A count the bytes cannot hold is refused before anything is reserved.
    assert!(matches!(
        Object::decode(&[0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(TooManyEntries { .. })
    ));
    // A value length past the end.
    assert!(matches!(
        Object::decode(&with(&[entry(1, &[1, 1, 0, 0xff, 0xff, 0x03])])),
        Err(Truncated { .. })
    ));
    for n in 0..GOLDEN_OBJECT.len() {
        assert!(Object::decode(&GOLDEN_OBJECT[..n]).is_err(), "prefix {n}");
    }
    let mut trailing = GOLDEN_OBJECT.to_vec();
    trailing.push(0);
    assert_eq!(
        Object::decode(&trailing),
        Err(TrailingBytes { kind: k, count: 1 })
    );
}

#[test]
fn contexts_and_objects_travel_in_messagepack_as_bin() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Frame {
        context: VersionVector,
        object: Object,
    }
    let o = golden_object();
    let f = Frame {
        context: o.context(),
        object: o,
    };
    let bytes = rmp_serde::to_vec_named(&f).unwrap();
    // "context" then bin8 (0xc4) of the context's length.
    let at = bytes.windows(7).position(|w| w == b"context").unwrap() + 7;
    assert_eq!(&bytes[at..at + 2], &[0xc4, GOLDEN_CONTEXT.len() as u8]);
    assert_eq!(rmp_serde::from_slice::<Frame>(&bytes).unwrap(), f);
    // A garbage context in a frame is a decode error, not a panic.
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        #[serde(with = "serde_bytes")]
        context: &'a [u8],
    }
    #[derive(Debug, serde::Deserialize)]
    struct OnlyContext {
        #[allow(dead_code)]
        context: VersionVector,
    }
    let bad = rmp_serde::to_vec_named(&Raw {
        context: &[0xc1, 5],
    })
    .unwrap();
    let err = rmp_serde::from_slice::<OnlyContext>(&bad).unwrap_err();
    assert!(err.to_string().contains("context truncated"), "{err}");
}

// ---- Property tests.

proptest! {
    /// Untrusted bytes never panic the decoders, and whatever they accept is canonical.
    #[test]
    fn decoders_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), first in prop::sample::select(vec![0x01u8, 0xc1])) {
        let mut input = vec![first];
        input.extend_from_slice(&bytes);
        if let Ok(v) = VersionVector::decode(&input) {
            prop_assert_eq!(v.encode(), input.clone());
        }
        if let Ok(o) = Object::decode(&input) {
            prop_assert_eq!(o.encode(), input.clone());
        }
        let _ = VersionVector::decode(&bytes);
        let _ = Object::decode(&bytes);
    }

    #[test]
    fn version_vectors_form_a_semilattice(a in arb_vv(), b in arb_vv(), c in arb_vv()) {
        prop_assert_eq!(a.merge(&b), b.merge(&a));
        prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
        prop_assert_eq!(a.merge(&a), a.clone());
        prop_assert!(a.merge(&b).descends(&a) && a.merge(&b).descends(&b));
        prop_assert_eq!(a.descends(&b), a.merge(&b) == a);
        let pointwise = b.iter().all(|(actor, n)| a.get(actor) >= n);
        prop_assert_eq!(a.descends(&b), pointwise);
        prop_assert_eq!(VersionVector::decode(&a.encode()).unwrap(), a);
    }
}

/// An object from random writes: each by actor `a` (as `arb_vv` names them), with a random
/// context (forged ones included: counters past the object's, zeros, other actors).
fn arb_object() -> impl Strategy<Value = Object> {
    prop::collection::vec((0u64..6, arb_vv(), any::<bool>()), 0..10).prop_map(|writes| {
        let mut o = Object::new();
        for (i, (a, ctx, delete)) in writes.into_iter().enumerate() {
            let value = match delete {
                true => Value::Deleted,
                false => Value::data(format!("v{i}")),
            };
            o = o.update(&ctx, value, ActorId(a << 60 | a)).unwrap_or(o);
        }
        o
    })
}

proptest! {
    /// `update_owned` and `join_owned` are `update` and `join` without copying the values
    /// that survive, for any reachable object and any context (the model test checks them
    /// on every step of its histories too).
    #[test]
    fn owned_update_and_join_equal_the_borrowing_ones(
        o in arb_object(),
        other in arb_object(),
        ctx in arb_vv(),
        a in 0u64..6,
    ) {
        let actor = ActorId(a << 60 | a);
        prop_assert_eq!(
            o.clone().update_owned(&ctx, Value::data("new"), actor),
            o.update(&ctx, Value::data("new"), actor)
        );
        prop_assert_eq!(o.clone().join_owned(other.clone()), o.join(&other));
        prop_assert_eq!(other.clone().join_owned(o.clone()), other.join(&o));
        prop_assert_eq!(o.joins_to(&other), o.join(&other) == other);
        prop_assert_eq!(other.joins_to(&o), other.join(&o) == o);
        // Also where the answer is mostly yes: a write over `o` with a random context.
        let next = o.update(&ctx, Value::data("next"), actor).unwrap();
        prop_assert_eq!(o.joins_to(&next), o.join(&next) == next);
        prop_assert!(o.joins_to(&o));
    }
}

/// Review finding: descending the stored object is not enough to store an incoming one
/// as it is. A write with an incomplete context keeps values a replica already saw
/// overwritten; the join drops them, so `joins_to` must say no.
#[test]
fn a_descending_object_is_not_always_the_join() {
    let (a, b, c) = (ActorId(1), ActorId(2), ActorId(3));
    let none = VersionVector::new();
    let a2 = put(&put(&Object::new(), &none, "v1", a), &none, "v2", a);
    let at_a = put(&a2, &none, "v3", a); // {A:3 [v3, v2, v1]}
    let replica = put(&a2, &a2.context(), "vb", b); // {A:2 [], B:1 [vb]}
    let b_only: VersionVector = [(b, 1)].into_iter().collect();
    let incoming = put(&at_a, &b_only, "vc", c); // {A:3 [v3, v2, v1], B:1 [], C:1 [vc]}
    assert!(incoming.descends(&replica));
    assert_ne!(
        replica.join(&incoming),
        incoming,
        "the join drops v2 and v1"
    );
    assert!(!replica.joins_to(&incoming));
    // With the full context it is the join.
    let full = put(&at_a, &replica.context().merge(&at_a.context()), "vc", c);
    assert_eq!(replica.join(&full), full);
    assert!(replica.joins_to(&full));
}

fn arb_vv() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec((0u64..6, 0u64..300), 0..6).prop_map(|v| {
        v.into_iter()
            .map(|(a, n)| (ActorId(a << 60 | a), n))
            .collect()
    })
}

mod model;

/// The clock hash is blake3 of the encoded context, whether the context is encoded on the
/// stack (up to 13 actors) or on the heap (more), and with counters of every varint length.
#[test]
fn the_clock_hash_is_the_hash_of_the_encoded_context() {
    let mut o = Object::new();
    for a in 0..20u64 {
        // Large actor ids and, for some, many writes: counters of one and two varint bytes.
        let actor = ActorId(a.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..(1 + (a % 3) * 100) {
            o = put(&o, &o.context(), "v", actor);
        }
        let want = blake3::hash(&o.context().encode());
        let want = u64::from_be_bytes(want.as_bytes()[..8].try_into().unwrap());
        assert_eq!(o.clock_hash(), want, "{} actors", a + 1);
    }
}
