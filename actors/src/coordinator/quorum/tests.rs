//! Quorum rules with a toy lattice (sets joined by union), hand-fed answers and hand-fired
//! timeouts.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Set(BTreeSet<u32>);

impl Lattice for Set {
    type Context = Set;
    fn covers(&self, c: &Set) -> bool {
        self.descends(c)
    }
    fn join(&self, o: &Self) -> Self {
        Set(self.0.union(&o.0).copied().collect())
    }
    fn descends(&self, o: &Self) -> bool {
        self.0.is_superset(&o.0)
    }
    fn is_tombstone(&self) -> bool {
        self.0.contains(&TOMB)
    }
}

fn set(xs: &[u32]) -> Option<Set> {
    Some(Set(xs.iter().copied().collect()))
}

fn three() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

#[test]
fn required_accepts_one_quorum_all_and_numbers_up_to_n() {
    assert_eq!(required(Quorum::One, 3, "r"), Ok(1));
    assert_eq!(required(Quorum::Quorum, 3, "r"), Ok(2));
    assert_eq!(required(Quorum::Quorum, 1, "r"), Ok(1));
    assert_eq!(required(Quorum::All, 3, "w"), Ok(3));
    assert_eq!(required(Quorum::N(3), 3, "w"), Ok(3));
    let e = required(Quorum::N(4), 3, "w").unwrap_err();
    assert!(e.contains("w = 4") && e.contains("1 to 3"), "{e}");
    assert!(required(Quorum::N(0), 3, "r").is_err());
}

#[test]
fn get_answers_at_r_with_the_join_and_repairs_the_stale_replica_after_all_answer() {
    let mut t = GetTracker::new(three(), 2, None);
    assert_eq!(t.add_answer("a", Ok(set(&[1, 2]))), Progress::Pending);
    assert_eq!(
        t.add_answer("b", Ok(set(&[1]))),
        Progress::Reply(GetOutcome::Found(set(&[1, 2])))
    );
    assert!(!t.all_answered());
    assert_eq!(
        t.add_answer("c", Ok(None)),
        Progress::Pending,
        "one reply only"
    );
    assert!(t.all_answered());
    let (joined, stale) = t.repair().unwrap();
    assert_eq!(Some(joined), set(&[1, 2]));
    assert_eq!(stale, vec!["b".to_string(), "c".to_string()]);
}

#[test]
fn not_found_everywhere_is_an_answer_not_an_error() {
    let mut t = GetTracker::<Set>::new(three(), 2, None);
    t.add_answer("a", Ok(None));
    assert_eq!(
        t.add_answer("b", Ok(None)),
        Progress::Reply(GetOutcome::Found(None))
    );
    t.add_answer("c", Ok(None));
    assert_eq!(t.repair(), None);
}

#[test]
fn get_is_unavailable_as_soon_as_r_cannot_be_reached_and_names_each_error() {
    let mut t = GetTracker::<Set>::new(three(), 2, None);
    assert_eq!(t.add_answer("a", Err("disk".into())), Progress::Pending);
    match t.add_answer("c", Err("refused".into())) {
        Progress::Reply(GetOutcome::Unavailable(f)) => {
            assert_eq!((f.needed, f.got), (2, 0));
            let msg = f.describe(3);
            assert!(
                msg.contains("a: disk") && msg.contains("b: timed out"),
                "{msg}"
            );
            assert!(
                msg.contains("c: refused") && msg.starts_with("needed 2 of 3"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn get_timeout_with_too_few_answers_is_unavailable_and_with_r_answers_cannot_happen() {
    let mut t = GetTracker::new(three(), 2, None);
    t.add_answer("a", Ok(set(&[1])));
    match t.timed_out() {
        Progress::Reply(GetOutcome::Unavailable(f)) => assert_eq!(f.got, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.timed_out(), Progress::Pending, "answered once");
}

#[test]
fn after_waits_for_a_replica_that_has_the_write_then_answers() {
    let mut t = GetTracker::new(three(), 1, set(&[7]));
    assert_eq!(t.add_answer("a", Ok(set(&[1]))), Progress::Pending);
    assert_eq!(t.add_answer("b", Ok(None)), Progress::Pending);
    assert_eq!(
        t.add_answer("c", Ok(set(&[7]))),
        Progress::Reply(GetOutcome::Found(set(&[1, 7])))
    );
}

#[test]
fn after_that_no_replica_covers_fails_saying_so() {
    let mut t = GetTracker::new(three(), 2, set(&[7]));
    t.add_answer("a", Ok(set(&[1])));
    t.add_answer("b", Ok(set(&[1])));
    assert!(matches!(
        t.timed_out(),
        Progress::Reply(GetOutcome::NotCaughtUp(_))
    ));
}

/// `single` (a one-node get answered from memory, never registered) decides exactly as a
/// tracker of one replica fed the same answer: every r, `after` and answer combination.
#[test]
fn a_single_replicas_answer_decides_as_its_tracker_would() {
    let afters = [None, set(&[]), set(&[1]), set(&[7])];
    let answers: [Result<Option<Set>, String>; 4] = [
        Ok(set(&[1])),
        Ok(set(&[1, 2, 7])),
        Ok(None),
        Err("disk".into()),
    ];
    for r in 1..=2 {
        for after in &afters {
            for answer in &answers {
                let mut t = GetTracker::new(vec!["a".into()], r, after.clone());
                let Progress::Reply(want) = t.add_answer("a", answer.clone()) else {
                    panic!("one replica answered: the tracker replies");
                };
                assert!(t.all_answered() && t.repair().is_none());
                let got = GetTracker::single("a", r, after.clone(), answer.clone());
                assert_eq!(got, want, "r={r} after={after:?} answer={answer:?}");
            }
        }
    }
    assert!(matches!(
        GetTracker::single("a", 1, set(&[7]), Ok(set(&[1]))),
        GetOutcome::NotCaughtUp(_)
    ));
}

#[test]
fn answers_from_strangers_and_duplicates_are_ignored() {
    let mut t = GetTracker::new(three(), 2, None);
    t.add_answer("a", Ok(set(&[1])));
    assert_eq!(t.add_answer("a", Ok(set(&[1]))), Progress::Pending);
    assert_eq!(t.add_answer("zz", Ok(set(&[1]))), Progress::Pending);
}

#[test]
fn put_with_w1_is_done_by_the_coordinators_own_write() {
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 1);
    assert_eq!(t.start(), Progress::Reply(PutOutcome::Acknowledged));
}

#[test]
fn put_counts_acks_and_fails_indeterminate_when_w_is_out_of_reach() {
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 3);
    assert_eq!(t.start(), Progress::Pending);
    assert_eq!(t.add_answer("b", Ok(())), Progress::Pending);
    match t.add_answer("c", Err("disk full".into())) {
        Progress::Reply(PutOutcome::Indeterminate(f)) => {
            assert_eq!((f.needed, f.got), (3, 2));
            assert_eq!(f.errors.get("c").map(String::as_str), Some("disk full"));
        }
        other => panic!("{other:?}"),
    }
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 2);
    t.start();
    assert_eq!(
        t.add_answer("c", Ok(())),
        Progress::Reply(PutOutcome::Acknowledged)
    );
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 2);
    t.start();
    assert!(matches!(
        t.timed_out(),
        Progress::Reply(PutOutcome::Indeterminate(_))
    ));
}

proptest! {
    /// Whatever the order of answers and the timeout, a get replies exactly once, and says
    /// Found exactly when at least r replicas answered before the reply.
    #[test]
    fn get_replies_once_and_found_means_r_answers(
        r in 1usize..=3,
        answers in proptest::collection::vec((0usize..4, any::<bool>(), 0u32..16), 0..8),
        timeout_at in 0usize..9,
    ) {
        let names = ["a", "b", "c", "x"];
        let mut t = GetTracker::new(three(), r, None);
        let mut replies = Vec::new();
        let mut ok_nodes = BTreeSet::new();
        // The model join: the union of every accepted successful answer so far.
        let mut union = BTreeSet::new();
        for (i, (node, ok, v)) in answers.iter().enumerate() {
            if i == timeout_at {
                if let Progress::Reply(o) = t.timed_out() { replies.push((o, ok_nodes.len(), union.clone())); }
            }
            // An answer is the set of the bits of v: answers above, below and beside others.
            let bits: Vec<u32> = (0..4).filter(|b| v & (1 << b) != 0).collect();
            let ans = if *ok { Ok(set(&bits)) } else { Err("e".to_string()) };
            let first = *node < 3 && !t.answers.contains_key(names[*node]);
            if *ok && first { union.extend(bits.iter().copied()); }
            if let Progress::Reply(o) = t.add_answer(names[*node], ans) { replies.push((o, ok_nodes.len() + usize::from(*ok && first), union.clone())); }
            if *ok && first { ok_nodes.insert(*node); }
        }
        if let Progress::Reply(o) = t.timed_out() { replies.push((o, ok_nodes.len(), union.clone())); }
        prop_assert_eq!(replies.len(), 1, "exactly one reply: {:?}", replies);
        if let Some((joined, _)) = t.repair() {
            prop_assert_eq!(joined.0, union.clone(), "repair sends the join of every answer");
        }
        let (outcome, oks, union_then) = &replies[0];
        match outcome {
            GetOutcome::Found(j) => {
                prop_assert!(*oks >= r);
                prop_assert_eq!(j.as_ref().map(|j| j.0.clone()), Some(union_then.clone()), "the reply is the join of the answers");
            }
            GetOutcome::Unavailable(f) => prop_assert!(f.got < r),
            GetOutcome::NotCaughtUp(_) => prop_assert!(false, "no after context"),
        }
    }
}

/// In the toy lattice, a set holding `TOMB` is a delete marker.
const TOMB: u32 = u32::MAX;

#[test]
fn read_repair_does_not_recreate_a_purged_delete_marker() {
    // a still holds the marker, b purged it (tombstone GC), c holds an older value.
    let mut t = GetTracker::new(three(), 3, None);
    t.add_answer("a", Ok(set(&[1, TOMB])));
    t.add_answer("b", Ok(None));
    t.add_answer("c", Ok(set(&[1])));
    let (joined, stale) = t.repair().unwrap();
    assert_eq!(Some(joined), set(&[1, TOMB]));
    // The older value is repaired (it must not outlive the delete); "not found" is the
    // same answer as the marker and gets nothing, or every purge would be undone.
    assert_eq!(stale, vec!["c".to_string()]);
}

/// Sloppy quorum: a down primary's write goes to a fallback as a hint, and the fallback's
/// acknowledgement counts toward w.
#[test]
fn a_hint_on_a_fallback_counts_toward_w() {
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 3);
    assert!(t.reroute("c", "d", "down (membership)"));
    assert_eq!(t.start(), Progress::Pending);
    assert_eq!(
        t.add_answer("c", Ok(())),
        Progress::Pending,
        "c was not asked"
    );
    assert_eq!(t.add_answer("b", Ok(())), Progress::Pending);
    assert_eq!(
        t.add_answer("d", Ok(())),
        Progress::Reply(PutOutcome::Acknowledged)
    );
    assert!(t.all_answered());
    assert!(t.unacknowledged().is_empty(), "c's write is with d");
}

/// A node counts once: a fallback already asked (for another primary, or a primary
/// itself) cannot take a second hint of the same write.
#[test]
fn a_fallback_cannot_count_twice() {
    let mut t = PutTracker::new(vec!["b".into(), "c".into(), "d".into()], 4);
    assert!(t.reroute("c", "e", "down"));
    assert!(!t.reroute("d", "e", "down"), "e already holds c's hint");
    assert!(!t.reroute("d", "b", "down"), "b is a primary asked already");
    t.start();
    t.add_answer("b", Ok(()));
    t.add_answer("e", Ok(()));
    match t.add_answer("d", Err("down (membership)".into())) {
        Progress::Reply(PutOutcome::Indeterminate(f)) => assert_eq!((f.needed, f.got), (4, 3)),
        other => panic!("{other:?}"),
    }
}

/// A failed or missing hint answer names the primary it stood for; that primary and any
/// other that did not acknowledge are left for a local hint.
#[test]
fn failed_hints_are_described_and_left_unacknowledged() {
    let mut t = PutTracker::new(vec!["b".into(), "c".into()], 3);
    t.start();
    // c could not be reached after the start: its write goes to d instead.
    assert!(t.reroute("c", "d", "unavailable: cannot queue"));
    // w = 3 is out of reach once b failed: the put is answered, c's hint still pending.
    match t.add_answer("b", Err("disk full".into())) {
        Progress::Reply(PutOutcome::Indeterminate(f)) => {
            assert_eq!(f.got, 1);
            let c = f.errors.get("c").expect("c is named");
            assert!(
                c.contains("unavailable") && c.contains("hint on d: timed out"),
                "{c}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.unacknowledged(), vec!["b".to_string(), "c".to_string()]);
}

#[test]
fn in_transition_a_put_needs_w_of_the_current_and_w_of_the_stable_primaries() {
    // Coordinator a; current primaries a, b, d (d joined); stable primaries a, b, c.
    let mut t = PutTracker::new(vec!["b".into(), "d".into()], 2).also_needs(
        vec!["b".into(), "c".into()],
        2,
        true,
    );
    assert_eq!(t.target_nodes(), ["b", "d", "c"]);
    assert_eq!(t.start(), Progress::Pending);
    // d acknowledges: 2 of the current ones, but only a of the stable ones.
    assert_eq!(t.add_answer("d", Ok(())), Progress::Pending);
    // c is only in the stable group: it does not count toward the current w.
    assert!(matches!(
        t.add_answer("c", Ok(())),
        Progress::Reply(PutOutcome::Acknowledged)
    ));

    let mut t = PutTracker::new(vec!["b".into(), "d".into()], 2).also_needs(
        vec!["b".into(), "c".into()],
        2,
        true,
    );
    t.start();
    assert_eq!(t.add_answer("c", Ok(())), Progress::Pending, "stable only");
    assert_eq!(t.add_answer("d", Err("x".into())), Progress::Pending);
    // b fails: the current group cannot reach 2 (a alone).
    match t.add_answer("b", Err("y".into())) {
        Progress::Reply(PutOutcome::Indeterminate(f)) => assert_eq!(f.got, 1),
        other => panic!("{other:?}"),
    }

    // The stable group out of reach fails the put even with the current w met.
    let mut t = PutTracker::new(vec!["b".into(), "d".into()], 2).also_needs(
        vec!["c".into(), "e".into(), "f".into()],
        2,
        false,
    );
    t.start();
    t.add_answer("b", Ok(()));
    t.add_answer("c", Err("x".into()));
    assert_eq!(t.add_answer("e", Ok(())), Progress::Pending);
    assert!(matches!(
        t.add_answer("f", Err("y".into())),
        Progress::Reply(PutOutcome::Indeterminate(_))
    ));
}

/// Review finding: with objects the tracker's "descends" is the lattice order, not the
/// clocks'. A replica whose object has every dot of the other's but kept values the other
/// saw overwritten (a write with an incomplete context) gets the join, both in the reply
/// and as a repair.
#[test]
fn objects_are_joined_and_repaired_by_the_lattice_order_not_the_clocks() {
    use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
    let (a, b, c) = (ActorId(1), ActorId(2), ActorId(3));
    let put = |o: &Object, ctx: &VersionVector, v: &str, actor| {
        o.update(ctx, Value::data(v), actor).unwrap()
    };
    let none = VersionVector::new();
    let a2 = put(&put(&Object::new(), &none, "v1", a), &none, "v2", a);
    let old = put(&a2, &a2.context(), "vb", b); // {A:2 [], B:1 [vb]}
    let b_only: VersionVector = [(b, 1)].into_iter().collect();
    let new = put(&put(&a2, &none, "v3", a), &b_only, "vc", c); // {A:3 [v3, v2, v1], B:1 [], C:1 [vc]}
    assert!(
        Object::descends(&new, &old),
        "the clocks say new has seen old"
    );
    let join = new.join(&old);
    assert_ne!(join, new, "yet the join drops v2 and v1");

    let mut t = GetTracker::new(three(), 2, None);
    assert_eq!(t.add_answer("a", Ok(Some(new.clone()))), Progress::Pending);
    assert_eq!(
        t.add_answer("b", Ok(Some(old))),
        Progress::Reply(GetOutcome::Found(Some(join.clone())))
    );
    t.add_answer("c", Ok(Some(join.clone())));
    let (sent, to) = t.repair().expect("a and b are stale");
    assert_eq!(sent, join);
    assert_eq!(to, vec!["a".to_string(), "b".to_string()]);
}
