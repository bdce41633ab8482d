//! The types against plain models: replicas apply random operations and exchange states in
//! random order, with duplicates; the join of everything must equal the model's answer. And
//! the join laws, and the encodings.

use super::*;
use crate::object::{ActorId, Object, Value, VersionVector};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// One step of a history over 3 replicas (actors 1..=3).
#[derive(Debug, Clone)]
enum Step {
    /// Replica `r` applies an op (its argument is `x`).
    Op { r: usize, x: u8, kind: u8 },
    /// Replica `to` joins replica `from`'s state.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, any::<u8>(), 0u8..2).prop_map(|(r, x, kind)| Step::Op { r, x, kind }),
        2 => (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

fn join_all(states: &[Typed]) -> Typed {
    Typed::join_all(states).unwrap().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Counter: the join of all replicas is the sum of every increment, whatever the
    /// order and duplication of the exchanges.
    #[test]
    fn counter_converges_to_the_sum(steps in proptest::collection::vec(step(), 0..60)) {
        let mut reps = vec![Typed::Counter(PnCounter::default()); 3];
        let mut sum: i64 = 0;
        for s in steps {
            match s {
                Step::Op { r, x, kind } => {
                    let by = if kind == 0 { x as i64 } else { -(x as i64) };
                    let op = TypedOp::Incr { by };
                    reps[r] = op.apply(Some(&reps[r]), ActorId(r as u64 + 1), 0, 10).unwrap();
                    sum += by;
                }
                Step::Sync { from, to } => reps[to] = reps[to].join(&reps[from]).unwrap(),
            }
        }
        let Typed::Counter(all) = join_all(&reps) else { unreachable!() };
        prop_assert_eq!(all.value(), sum);
    }

    /// Set: an element is in the joined set iff some add of it was not observed by a remove
    /// of it (add wins), tracked by a model of unique add tags and what each replica saw.
    #[test]
    fn set_converges_to_add_wins(steps in proptest::collection::vec(step(), 0..60)) {
        let mut reps = vec![Typed::Set(OrSet::default()); 3];
        // Model: per replica, the add tags it has seen (element, tag), and removed tags.
        let mut seen: Vec<BTreeSet<(u8, usize)>> = vec![BTreeSet::new(); 3];
        let mut removed: BTreeSet<(u8, usize)> = BTreeSet::new();
        let mut next_tag = 0usize;
        for s in steps {
            match s {
                Step::Op { r, x, kind } => {
                    let e = x % 6;
                    let m = vec![serde_bytes::ByteBuf::from(vec![e])];
                    if kind == 0 {
                        let op = TypedOp::SetAdd { members: m };
                        reps[r] = op.apply(Some(&reps[r]), ActorId(r as u64 + 1), 0, 100).unwrap();
                        // The new add supersedes the tags of e this replica saw.
                        let old: Vec<_> = seen[r].iter().filter(|t| t.0 == e).copied().collect();
                        removed.extend(old);
                        seen[r].insert((e, next_tag));
                        next_tag += 1;
                    } else {
                        let op = TypedOp::SetRemove { members: m };
                        reps[r] = op.apply(Some(&reps[r]), ActorId(r as u64 + 1), 0, 100).unwrap();
                        removed.extend(seen[r].iter().filter(|t| t.0 == e).copied());
                    }
                }
                Step::Sync { from, to } => {
                    reps[to] = reps[to].join(&reps[from]).unwrap();
                    let s: Vec<_> = seen[from].iter().copied().collect();
                    seen[to].extend(s);
                }
            }
        }
        let all_tags: BTreeSet<(u8, usize)> = seen.iter().flatten().copied().collect();
        let expected: BTreeSet<u8> = all_tags.iter().filter(|t| !removed.contains(t)).map(|t| t.0).collect();
        let Typed::Set(all) = join_all(&reps) else { unreachable!() };
        let got: BTreeSet<u8> = all.members().map(|m| m[0]).collect();
        prop_assert_eq!(got, expected);
    }

    /// Register: the joined value is the write with the greatest (timestamp, actor).
    #[test]
    fn register_converges_to_the_last_writer(
        steps in proptest::collection::vec(step(), 0..60),
        clocks in proptest::collection::vec(0u64..50, 3),
    ) {
        let mut reps: Vec<Option<Typed>> = vec![None; 3];
        let mut writes: Vec<(u64, ActorId, Vec<u8>)> = Vec::new();
        let mut now = clocks.clone();
        for s in steps {
            match s {
                Step::Op { r, x, .. } => {
                    now[r] += 1;
                    let op = TypedOp::RegPut { value: vec![x] };
                    let t = op.apply(reps[r].as_ref(), ActorId(r as u64 + 1), now[r], 0).unwrap();
                    let Typed::Register(reg) = &t else { unreachable!() };
                    writes.push((reg.ts, reg.actor, reg.value.clone()));
                    reps[r] = Some(t);
                }
                Step::Sync { from, to } => {
                    if let Some(f) = reps[from].clone() {
                        reps[to] = Some(match &reps[to] { Some(t) => t.join(&f).unwrap(), None => f });
                    }
                }
            }
        }
        let states: Vec<Typed> = reps.into_iter().flatten().collect();
        match writes.iter().max_by_key(|w| (w.0, w.1)) {
            None => prop_assert!(states.is_empty()),
            Some(w) => {
                let Typed::Register(all) = join_all(&states) else { unreachable!() };
                prop_assert_eq!(all.value, w.2.clone());
            }
        }
    }

    /// Join is commutative, associative and idempotent, and encodings round-trip, for
    /// states reached by any history.
    #[test]
    fn join_laws_and_encoding(
        a in history(), b in history(), c in history(), kind in 0u8..3,
    ) {
        let (a, b, c) = (a.state(kind), b.state(kind), c.state(kind));
        prop_assert_eq!(a.join(&b).unwrap(), b.join(&a).unwrap());
        prop_assert_eq!(a.join(&b).unwrap().join(&c).unwrap(), a.join(&b.join(&c).unwrap()).unwrap());
        prop_assert_eq!(a.join(&a).unwrap(), a.clone());
        for s in [&a, &b, &c] {
            let o = Object::new().update(&VersionVector::new(), Value::Typed(s.clone()), ActorId(9)).unwrap();
            prop_assert_eq!(Object::decode(&o.encode()).unwrap(), o);
        }
    }
}

/// A history of ops by three actors on one replica-local state per actor, then joined: a
/// generator of reachable states.
#[derive(Debug, Clone)]
struct History(Vec<(u8, u8, u8)>);

fn history() -> impl Strategy<Value = History> {
    proptest::collection::vec((0u8..3, any::<u8>(), 0u8..2), 0..12).prop_map(History)
}

impl History {
    fn state(&self, kind: u8) -> Typed {
        let mut s: Option<Typed> = None;
        for &(actor, x, sub) in &self.0 {
            let op = match (kind, sub) {
                (0, _) => TypedOp::Incr { by: x as i64 - 100 },
                (1, 0) => TypedOp::SetAdd {
                    members: vec![serde_bytes::ByteBuf::from(vec![x % 5])],
                },
                (1, _) => TypedOp::SetRemove {
                    members: vec![serde_bytes::ByteBuf::from(vec![x % 5])],
                },
                _ => TypedOp::RegPut { value: vec![x] },
            };
            s = Some(
                op.apply(s.as_ref(), ActorId(actor as u64 + 1), x as u64, 100)
                    .unwrap(),
            );
        }
        s.unwrap_or(match kind {
            0 => Typed::Counter(PnCounter::default()),
            1 => Typed::Set(OrSet::default()),
            _ => Typed::Register(LwwRegister {
                ts: 0,
                actor: ActorId(1),
                value: vec![],
            }),
        })
    }
}

#[test]
fn limits_and_type_mismatches_are_errors_that_change_nothing() {
    let a = ActorId(1);
    let mut c = PnCounter::default();
    c.incr(a, i64::MAX).unwrap();
    let before = c.clone();
    assert!(matches!(
        c.incr(a, 1),
        Err(TypedError::CounterOverflow { .. })
    ));
    assert_eq!(c, before);
    c.incr(a, -5).unwrap();
    assert_eq!(c.value(), i64::MAX - 5);

    let mut s = OrSet::default();
    s.add(a, [b"x".as_slice(), b"y"], 2).unwrap();
    let e = s.add(a, [b"z".as_slice()], 2).unwrap_err();
    assert_eq!(e, TypedError::SetTooLarge { would: 3, max: 2 });
    assert_eq!(s.len(), 2);
    s.add(a, [b"x".as_slice()], 2).unwrap(); // re-adding a member is within the limit

    let counter = Typed::Counter(PnCounter::default());
    let e = TypedOp::SetAdd { members: vec![] }
        .apply(Some(&counter), a, 0, 10)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the key holds a counter, not a set: use incr and counter"
    );
}

#[test]
fn a_concurrent_add_survives_a_remove_and_an_observed_one_does_not() {
    let (a, b) = (ActorId(1), ActorId(2));
    let mut base = OrSet::default();
    base.add(a, [b"x".as_slice()], 10).unwrap();
    // b removes x (observed); a concurrently re-adds x.
    let mut removed = base.clone();
    removed.remove([b"x".as_slice()]);
    let mut readded = base.clone();
    readded.add(a, [b"x".as_slice()], 10).unwrap();
    let j = removed.join(&readded);
    assert_eq!(
        j.members().collect::<Vec<_>>(),
        [b"x".as_slice()],
        "add wins"
    );
    // Without the concurrent add, the remove wins everywhere.
    assert!(removed.join(&base).is_empty());
    let _ = b;
}

#[test]
fn a_register_write_supersedes_what_its_coordinator_saw_even_with_a_slow_clock() {
    let seen = LwwRegister {
        ts: 1000,
        actor: ActorId(9),
        value: b"old".to_vec(),
    };
    let w = LwwRegister::put(Some(&seen), b"new".to_vec(), ActorId(1), 5);
    assert_eq!(w.ts, 1001);
    assert_eq!(seen.join(&w).value, b"new");
    assert_eq!(hlc_now(3, 0), 3 << 16);
    assert_eq!(
        hlc_now(3, (3 << 16) + 7),
        (3 << 16) + 8,
        "the clock did not move"
    );
}

#[test]
fn damaged_typed_states_are_refused_by_name() {
    let mut s = OrSet::default();
    s.add(ActorId(1), [b"a".as_slice(), b"b"], 10).unwrap();
    let o = Object::new()
        .update(
            &VersionVector::new(),
            Value::Typed(Typed::Set(s)),
            ActorId(1),
        )
        .unwrap();
    let good = o.encode();
    assert!(Object::decode(&good).is_ok());
    // Every truncation and every single flipped byte is an error or another valid object,
    // never a panic.
    for cut in 0..good.len() {
        assert!(Object::decode(&good[..cut]).is_err());
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        let _ = Object::decode(&bad);
    }
    let _ = BTreeMap::<u8, u8>::new();
}
