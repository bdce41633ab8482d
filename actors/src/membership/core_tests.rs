//! Unit tests for `MemberList`: merge order, precedence, rejoin, refutation,
//! dissemination limits, digest and reaping.

use super::*;
use proptest::prelude::*;

fn info(id: &str, inc: u64, status: Status, run: u64) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        client_addr: format!("{id}:c"),
        peer_addr: format!("{id}:p"),
        admin_addr: format!("{id}:a"),
        incarnation: inc,
        status,
        run_id: run,
    }
}

fn up(id: &str, inc: u64, status: Status, run: u64) -> Update {
    Update {
        member: info(id, inc, status, run),
        origin: "z".into(),
    }
}

fn list() -> MemberList {
    MemberList::new(info("me", 0, Status::Alive, 1), SwimConfig::default())
}

#[test]
fn higher_incarnation_wins_lower_is_ignored() {
    let mut l = list();
    l.apply(&up("b", 5, Status::Alive, 1), 0, true);
    assert_eq!(
        l.apply(&up("b", 4, Status::Dead, 1), 0, true),
        Merge::Ignored
    );
    assert_eq!(l.get(&"b".into()).map(|m| m.status), Some(Status::Alive));
    let r = l.apply(&up("b", 6, Status::Suspect, 1), 0, true);
    assert!(matches!(r, Merge::Changed { .. }));
    let r = l.apply(&up("b", 7, Status::Alive, 1), 0, true);
    assert!(matches!(
        r,
        Merge::Changed {
            prev: Some(Status::Suspect),
            ..
        }
    ));
    assert_eq!(l.get(&"b".into()).map(|m| m.incarnation), Some(7));
}

#[test]
fn precedence_at_equal_incarnation() {
    let order = [Status::Alive, Status::Suspect, Status::Dead, Status::Left];
    for (i, lo) in order.iter().enumerate() {
        for hi in &order[i + 1..] {
            let mut l = list();
            l.apply(&up("b", 0, Status::Alive, 1), 0, true);
            l.apply(&up("b", 3, *lo, 1), 0, true);
            let r = l.apply(&up("b", 3, *hi, 1), 0, true);
            assert!(matches!(r, Merge::Changed { .. }), "{hi:?} over {lo:?}");
            let back = l.apply(&up("b", 3, *lo, 1), 0, true);
            assert!(
                matches!(back, Merge::Ignored | Merge::SameSuspect),
                "{lo:?} must not beat {hi:?}"
            );
            assert_eq!(l.get(&"b".into()).map(|m| m.status), Some(*hi));
        }
    }
}

#[test]
fn rejoin_with_new_run_id() {
    let mut l = list();
    l.apply(&up("b", 4, Status::Alive, 10), 0, true);
    l.apply(&up("b", 4, Status::Dead, 10), 0, true);
    l.drain_events();
    // restarted process, same incarnation it refuted up to, new run id
    let r = l.apply(&up("b", 4, Status::Alive, 11), 5, true);
    assert!(matches!(r, Merge::Changed { rejoined: true, .. }));
    assert_eq!(l.get(&"b".into()).map(|m| m.run_id), Some(11));
    assert!(matches!(
        l.drain_events().as_slice(),
        [MemberEvent::MemberUp(_)]
    ));
    // old run's records at lower incarnation no longer apply
    assert_eq!(
        l.apply(&up("b", 3, Status::Dead, 10), 6, true),
        Merge::Ignored
    );
}

#[test]
fn refutation_raises_our_incarnation_and_gossips_alive() {
    let mut l = list();
    let r = l.apply(&up("me", 0, Status::Suspect, 1), 0, true);
    assert_eq!(
        r,
        Merge::Refuted {
            incarnation: 1,
            suspected: true
        }
    );
    assert_eq!(l.me().incarnation, 1);
    assert_eq!(l.me().status, Status::Alive);
    let g = l.select_gossip(None);
    assert!(g.iter().any(|u| u.member.id.as_str() == "me"
        && u.member.status == Status::Alive
        && u.member.incarnation == 1));
    // stale suspicion at an older incarnation is ignored
    assert_eq!(
        l.apply(&up("me", 0, Status::Dead, 1), 0, true),
        Merge::Ignored
    );
    // a record from a previous run of us is overridden too
    let r = l.apply(&up("me", 9, Status::Alive, 0), 0, true);
    assert!(matches!(
        r,
        Merge::Refuted {
            incarnation: 10,
            ..
        }
    ));
}

#[test]
fn unknown_dead_is_ignored_and_events_follow_transitions() {
    let mut l = list();
    assert_eq!(
        l.apply(&up("x", 0, Status::Dead, 1), 0, true),
        Merge::Ignored
    );
    l.apply(&up("b", 0, Status::Alive, 1), 0, true);
    l.suspect(&"b".into(), 0, 1);
    l.confirm_dead(&"b".into(), 0, 2);
    let ev = l.drain_events();
    assert!(matches!(
        ev.as_slice(),
        [
            MemberEvent::MemberUp(_),
            MemberEvent::MemberSuspect(_),
            MemberEvent::MemberDown(_)
        ]
    ));
    // local verdict for a stale incarnation is ignored
    l.apply(&up("c", 3, Status::Alive, 1), 0, true);
    assert_eq!(l.suspect(&"c".into(), 2, 3), Merge::Ignored);
}

#[test]
fn retransmit_limit_and_least_sent_first() {
    let cfg = SwimConfig {
        retransmit_mult: 4,
        gossip_max_updates: 1,
        ..SwimConfig::default()
    };
    let mut l = MemberList::new(info("me", 0, Status::Alive, 1), cfg);
    l.apply(&up("a", 0, Status::Alive, 1), 0, true);
    l.apply(&up("b", 0, Status::Alive, 1), 0, true);
    // N=3 live -> limit = 4 * ceil(log10 4) = 4 per update, 8 sends total
    assert_eq!(l.retransmit_limit(), 4);
    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.extend(l.select_gossip(None));
    }
    assert_eq!(sent.len(), 8);
    // newest first, then alternate (least-sent first)
    let ids: Vec<&str> = sent.iter().map(|u| u.member.id.as_str()).collect();
    assert_eq!(ids[..4], ["b", "a", "b", "a"]);
    assert_eq!(l.pending_broadcasts(), 0);
}

#[test]
fn budget_limits_updates_per_message() {
    let cfg = SwimConfig {
        gossip_budget_bytes: 300,
        ..SwimConfig::default()
    };
    let mut l = MemberList::new(info("me", 0, Status::Alive, 1), cfg);
    for i in 0..10 {
        l.apply(&up(&format!("n{i}"), 0, Status::Alive, 1), 0, true);
    }
    let g = l.select_gossip(None);
    let size: usize = g.iter().map(estimate_update_size).sum();
    assert!(
        !g.is_empty() && size <= 300,
        "{} updates, {size} bytes",
        g.len()
    );
}

#[test]
fn retransmit_limit_follows_lambda_log10_n() {
    let mut l = list();
    for (n, want) in [(10usize, 8u32), (100, 12), (1000, 16)] {
        while l.live_count() < n {
            let id = format!("n{}", l.live_count());
            l.preload(info(&id, 0, Status::Alive, 1), 0);
        }
        assert_eq!(l.retransmit_limit(), want, "N={n}");
    }
}

#[test]
fn suspect_dead_and_refutes_travel_compact_ahead_of_full_alive_records() {
    let cfg = SwimConfig {
        gossip_budget_bytes: 600,
        ..SwimConfig::default()
    };
    let mut l = MemberList::new(info("me", 0, Status::Alive, 1), cfg);
    // Many new members (full records) are queued first and are least sent ...
    for i in 0..20 {
        l.apply(&up(&format!("n{i}"), 0, Status::Alive, 1), 0, true);
    }
    // ... then news about known members, and a refutation of our own.
    l.apply(&up("n3", 0, Status::Suspect, 1), 0, true);
    l.apply(&up("n4", 1, Status::Dead, 1), 0, true);
    l.apply(&up("me", 0, Status::Suspect, 1), 0, true);
    let g = l.select_gossip(Some(&"x".into()));
    let total: usize = MESSAGE_HEADER_BYTES + 2 + g.iter().map(estimate_update_size).sum::<usize>();
    assert!(total <= 600, "{total}");
    let head: Vec<(&str, Status, bool)> = g[..3]
        .iter()
        .map(|u| (u.member.id.as_str(), u.member.status, is_compact(u)))
        .collect();
    assert_eq!(
        head,
        [
            ("me", Status::Alive, true),
            ("n4", Status::Dead, true),
            ("n3", Status::Suspect, true)
        ]
    );
    assert!(
        g[3..].iter().all(|u| !is_compact(u)),
        "then full alive records"
    );
    // The estimate is an upper bound of the real encoding.
    for u in &g {
        let real = rmp_serde::to_vec_named(u).expect("encode").len();
        assert!(
            real <= estimate_update_size(u),
            "{real} > estimate for {u:?}"
        );
    }
}

#[test]
fn compact_record_applies_only_to_a_known_run() {
    let mut l = list();
    l.apply(&up("b", 0, Status::Alive, 1), 0, true);
    let c = compact(up("b", 0, Status::Suspect, 1));
    assert!(matches!(l.apply(&c, 0, true), Merge::Changed { .. }));
    // addresses come from the table
    assert_eq!(
        l.get(&"b".into()).map(|m| m.peer_addr.as_str()),
        Some("b:p")
    );
    // unknown member, or another run: ignored
    assert_eq!(
        l.apply(&compact(up("q", 0, Status::Suspect, 1)), 0, true),
        Merge::Ignored
    );
    assert_eq!(
        l.apply(&compact(up("b", 5, Status::Alive, 2)), 0, true),
        Merge::Ignored
    );
    assert_eq!(l.get(&"b".into()).map(|m| m.run_id), Some(1));
}

#[test]
fn newer_update_supersedes_queued_one() {
    let mut l = list();
    l.apply(&up("b", 0, Status::Alive, 1), 0, true);
    l.apply(&up("b", 1, Status::Dead, 1), 0, true);
    assert_eq!(l.pending_broadcasts(), 1);
    let g = l.select_gossip(None);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].member.status, Status::Dead);
}

#[test]
fn digest_tracks_table_and_reap_forgets_dead() {
    let mut a = list();
    let mut b = list();
    assert_eq!(a.digest(), b.digest());
    a.apply(&up("x", 0, Status::Alive, 1), 0, true);
    assert_ne!(a.digest(), b.digest());
    b.apply(&up("x", 0, Status::Alive, 1), 0, true);
    assert_eq!(a.digest(), b.digest());
    a.confirm_dead(&"x".into(), 0, 100);
    assert!(a.reap(100 + 29_999).is_empty());
    assert_eq!(a.reap(100 + 30_000), vec![NodeId::from("x")]);
    assert!(a.get(&"x".into()).is_none());
}

#[test]
fn push_pull_downgrades_dead_and_regossips_only_known_or_sender() {
    let mut l = list();
    l.apply(&up("k", 0, Status::Alive, 1), 0, false);
    let remote = vec![
        info("s", 0, Status::Alive, 1),
        info("k", 0, Status::Dead, 1),
        info("t", 0, Status::Alive, 1),
    ];
    l.merge_state(&"s".into(), &remote, 0);
    assert_eq!(l.get(&"k".into()).map(|m| m.status), Some(Status::Suspect));
    let g: Vec<String> = l
        .select_gossip(None)
        .into_iter()
        .map(|u| u.member.id.0)
        .collect();
    assert!(g.contains(&"s".to_string()) && g.contains(&"k".to_string()));
    assert!(!g.contains(&"t".to_string()));
}

#[test]
fn leaving_node_does_not_refute() {
    let mut l = list();
    l.leave();
    assert_eq!(l.me().status, Status::Left);
    assert_eq!(
        l.apply(&up("me", 5, Status::Dead, 1), 0, true),
        Merge::Ignored
    );
}

#[test]
fn remove_marks_a_dead_member_left_and_refuses_a_live_one() {
    let mut l = list();
    l.apply(&up("k", 3, Status::Alive, 1), 0, false);
    let e = l.remove(&"k".into(), 0).unwrap_err();
    assert!(e.contains("alive") && e.contains("admin leave"), "{e}");
    assert!(l.remove(&"nobody".into(), 0).is_err());
    l.apply(&up("k", 3, Status::Dead, 1), 0, false);
    l.drain_events();
    let u = l
        .remove(&"k".into(), 0)
        .unwrap()
        .expect("an update to gossip");
    assert_eq!((u.member.status, u.member.incarnation), (Status::Left, 3));
    assert_eq!(l.get(&"k".into()).map(|m| m.status), Some(Status::Left));
    assert!(l
        .drain_events()
        .iter()
        .any(|e| matches!(e, MemberEvent::MemberLeft(m) if m.id.0 == "k")));
    assert_eq!(
        l.remove(&"k".into(), 0),
        Ok(None),
        "removing twice is a no-op"
    );
    // It comes back: a newer incarnation alive outranks the removal (a new join).
    l.apply(&up("k", 4, Status::Alive, 2), 0, false);
    assert_eq!(l.get(&"k".into()).map(|m| m.status), Some(Status::Alive));
}

fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Alive),
        Just(Status::Suspect),
        Just(Status::Dead),
        Just(Status::Left)
    ]
}

proptest! {
    /// Merge order does not matter: any permutation of the same records
    /// (known member) converges to the same table and digest.
    #[test]
    fn merge_is_order_independent(
        recs in proptest::collection::vec((0u64..4, 0u64..3, arb_status()), 1..12),
        seed in any::<u64>(),
    ) {
        let ups: Vec<Update> = recs.iter().map(|(i, r, s)| up("b", *i, *s, *r)).collect();
        let mut a = list();
        let mut b = list();
        a.apply(&up("b", 0, Status::Alive, 0), 0, true);
        b.apply(&up("b", 0, Status::Alive, 0), 0, true);
        for u in &ups { a.apply(u, 0, true); }
        let mut shuffled = ups.clone();
        let n = shuffled.len();
        for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n); }
        for u in &shuffled { b.apply(u, 0, true); }
        prop_assert_eq!(a.get(&"b".into()), b.get(&"b".into()));
        prop_assert_eq!(a.digest(), b.digest());
    }
}

#[test]
fn refutations_are_retransmitted_more_than_other_updates() {
    let cfg = SwimConfig {
        retransmit_mult: 2,
        refute_retransmit_mult: 3,
        gossip_max_updates: 8,
        ..SwimConfig::default()
    };
    let mut l = MemberList::new(info("me", 0, Status::Alive, 1), cfg);
    l.apply(&up("a", 0, Status::Alive, 1), 0, false);
    l.apply(&up("b", 0, Status::Alive, 1), 0, false);
    // a suspicion of b, and a's refutation of one (N=3: log10 4 -> 1)
    l.apply(&up("b", 0, Status::Suspect, 1), 0, true);
    l.apply(&up("a", 1, Status::Alive, 1), 0, true);
    let mut sent: Vec<(String, Status)> = Vec::new();
    for _ in 0..10 {
        for u in l.select_gossip(None) {
            sent.push((u.member.id.0.clone(), u.member.status));
        }
    }
    let count = |id: &str, st| sent.iter().filter(|(i, s)| i == id && *s == st).count();
    assert_eq!(count("b", Status::Suspect), 2, "{sent:?}");
    assert_eq!(count("a", Status::Alive), 3, "{sent:?}");
}
