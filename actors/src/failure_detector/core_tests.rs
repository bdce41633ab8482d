//! Unit tests for `Detector`: hand-fired timers, stale tokens, indirect
//! probes, nacks, Lifeguard suspicion shrinking and LHM movement.

use super::*;

fn det(n: usize) -> Detector {
    let mut d = Detector::new("me".into(), SwimConfig::default(), 7);
    for i in 0..n {
        d.upsert_member(&NodeId(format!("m{i}")), 0, false);
    }
    d
}

fn tick_gen(outs: &[DetectorOutput]) -> u64 {
    outs.iter()
        .find_map(|o| match o {
            DetectorOutput::SetTimer {
                timer: Timer::ProbeTick { gen },
                ..
            } => Some(*gen),
            _ => None,
        })
        .expect("a tick timer")
}

/// Returns (seq, target) of the ping sent by this tick.
fn ping_of(outs: &[DetectorOutput]) -> (u64, NodeId) {
    outs.iter()
        .find_map(|o| match o {
            DetectorOutput::Send {
                to,
                msg: SwimMsg::Ping(p),
            } => Some((p.seq, to.clone())),
            _ => None,
        })
        .expect("a ping")
}

fn suspects(outs: &[DetectorOutput]) -> Vec<NodeId> {
    outs.iter()
        .filter_map(|o| match o {
            DetectorOutput::Suspect(id, _) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn round_robin_probes_everyone_once_per_round() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let outs = d.on_tick(gen, 0);
        let (seq, target) = ping_of(&outs);
        d.on_ack(seq);
        seen.insert(target);
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn acked_probe_is_not_suspected_and_unacked_is() {
    let mut d = det(3);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (seq, _) = ping_of(&outs);
    d.on_ack(seq);
    let outs = d.on_tick(gen, 0);
    assert!(suspects(&outs).is_empty());
    let (_, target) = ping_of(&outs);
    let outs = d.on_tick(gen, 0); // no ack for the previous probe
    assert_eq!(suspects(&outs), vec![target]);
}

#[test]
fn stale_timers_are_ignored() {
    let mut d = det(3);
    let old_gen = tick_gen(&d.start(0));
    let new_gen = tick_gen(&d.start(0)); // restart bumps the generation
    assert_ne!(old_gen, new_gen);
    assert!(d.on_tick(old_gen, 0).is_empty());
    let outs = d.on_tick(new_gen, 0);
    let (seq, _) = ping_of(&outs);
    assert!(d.on_probe_timeout(seq + 100).is_empty(), "unknown seq");
    assert!(d.on_relay_timeout(seq).is_empty(), "not a relay seq");
    // suspicion timer with an old token or incarnation is dropped
    let id: NodeId = "m0".into();
    let (_, outs) = d.suspect(&id, 2, &"me".into(), 10, 0);
    let DetectorOutput::SetTimer {
        timer: Timer::Suspicion { token, .. },
        ..
    } = outs[0].clone()
    else {
        panic!("expected suspicion timer")
    };
    assert!(d.on_suspicion_timer(&id, 2, token + 1).is_empty());
    assert!(d.on_suspicion_timer(&id, 1, token).is_empty());
    // a refutation cancels it, so even the right token is ignored after
    d.alive(&id, 3);
    assert!(d.on_suspicion_timer(&id, 2, token).is_empty());
}

#[test]
fn indirect_probe_path_and_late_ack_via_relay() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (seq, target) = ping_of(&outs);
    let timeout = outs
        .iter()
        .find_map(|o| match o {
            DetectorOutput::SetTimer {
                after_ms,
                timer: Timer::ProbeTimeout { .. },
            } => Some(*after_ms),
            _ => None,
        })
        .expect("probe timeout timer");
    assert_eq!(timeout, 500);
    let ind = d.on_probe_timeout(seq);
    let relays: Vec<NodeId> = ind
        .iter()
        .map(|o| match o {
            DetectorOutput::Send {
                to,
                msg: SwimMsg::IndirectPing(ip),
            } => {
                assert_eq!(ip.target, target);
                assert_eq!(ip.seq, seq);
                to.clone()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(relays.len(), 3);
    assert!(!relays.contains(&target));
    assert!(d.on_probe_timeout(seq).is_empty(), "indirect only once");
    d.on_ack(seq); // forwarded ack from a relay
    let outs = d.on_tick(gen, 0);
    assert!(suspects(&outs).is_empty());
}

#[test]
fn relay_forwards_ack_or_sends_nack() {
    let mut d = det(2);
    let req = IndirectPing {
        seq: 42,
        from: "m0".into(),
        target: "m1".into(),
    };
    let outs = d.on_indirect_ping(&req);
    let (my_seq, to) = ping_of(&outs);
    assert_eq!(to, NodeId::from("m1"));
    let fwd = d.on_ack(my_seq);
    assert!(
        matches!(&fwd[..], [DetectorOutput::Send { to, msg: SwimMsg::Ack(a) }]
        if *to == NodeId::from("m0") && a.seq == 42 && a.from == NodeId::from("m1"))
    );
    assert!(d.on_relay_timeout(my_seq).is_empty(), "already answered");

    let outs = d.on_indirect_ping(&req);
    let (my_seq, _) = ping_of(&outs);
    let nack = d.on_relay_timeout(my_seq);
    assert!(
        matches!(&nack[..], [DetectorOutput::Send { to, msg: SwimMsg::Nack(n) }]
        if *to == NodeId::from("m0") && n.seq == 42)
    );
    assert!(
        d.on_ack(my_seq).is_empty(),
        "late ack after nack is dropped"
    );
}

#[test]
fn suspicion_timeout_formula_and_shrinking() {
    assert_eq!(suspicion_timeout_ms(4000, 24000, 3, 0), 24000);
    assert_eq!(suspicion_timeout_ms(4000, 24000, 3, 3), 4000);
    assert_eq!(suspicion_timeout_ms(4000, 24000, 0, 0), 4000);
    let one = suspicion_timeout_ms(4000, 24000, 3, 1);
    assert_eq!(one, 14000); // 24000 - 20000 * ln2/ln4
    let mut d = det(20);
    let id: NodeId = "m3".into();
    let n = 21; // min = 4 * log10(21) s = 5288 ms, max = 6 * min
    let (min, max) = SwimConfig::default().suspicion_bounds_ms(n);
    let (_, outs) = d.suspect(&id, 0, &"me".into(), n, 1000);
    assert!(matches!(outs[0], DetectorOutput::SetTimer { after_ms, .. } if after_ms == max));
    let mut prev = max;
    for (i, who) in ["a", "b", "c"].iter().enumerate() {
        let (new, outs) = d.suspect(&id, 0, &NodeId::from(*who), n, 2000);
        assert!(new, "confirmation {i} counted");
        let t = d.suspicion_timeout_of(&id).expect("suspected");
        assert!(t < prev, "timeout shrinks: {t} < {prev}");
        prev = t;
        let DetectorOutput::SetTimer { after_ms, .. } = outs[0] else {
            panic!("timer")
        };
        assert_eq!(after_ms, 1000 + t - 2000);
    }
    assert_eq!(prev, min);
    let (dup, _) = d.suspect(&id, 0, &"a".into(), n, 2000);
    assert!(!dup, "duplicate confirmer ignored");
    let (extra, _) = d.suspect(&id, 0, &"z".into(), n, 2000);
    assert!(!extra, "beyond K ignored");
}

#[test]
fn expired_suspicion_confirms_dead_with_current_token() {
    let mut d = det(5);
    let id: NodeId = "m1".into();
    let (_, outs) = d.suspect(&id, 4, &"me".into(), 6, 0);
    let (_, outs2) = d.suspect(&id, 4, &"x".into(), 6, 10);
    let tok = |o: &[DetectorOutput]| match &o[0] {
        DetectorOutput::SetTimer {
            timer: Timer::Suspicion { token, .. },
            ..
        } => *token,
        _ => panic!("timer"),
    };
    assert!(
        d.on_suspicion_timer(&id, 4, tok(&outs)).is_empty(),
        "superseded"
    );
    assert_eq!(
        d.on_suspicion_timer(&id, 4, tok(&outs2)),
        vec![DetectorOutput::ConfirmDead(id.clone(), 4)]
    );
}

#[test]
fn lhm_rises_on_failures_and_falls_on_success() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    // failed probe with no relays answering nacks: +3 (missed nacks)
    let (seq, _) = ping_of(&d.on_tick(gen, 0));
    assert_eq!(d.on_probe_timeout(seq).len(), 3);
    let outs = d.on_tick(gen, 0);
    assert_eq!(d.lhm(), 3);
    // probe timeout and period are scaled by LHM+1
    assert!(outs.iter().any(|o| matches!(
        o,
        DetectorOutput::SetTimer {
            after_ms: 2000,
            timer: Timer::ProbeTimeout { .. }
        }
    )));
    assert!(outs.iter().any(|o| matches!(
        o,
        DetectorOutput::SetTimer {
            after_ms: 4000,
            timer: Timer::ProbeTick { .. }
        }
    )));
    // failed probe where all relays nacked: our own health is fine, +0
    let (seq, _) = ping_of(&outs);
    d.on_probe_timeout(seq);
    for _ in 0..3 {
        d.on_nack(seq);
    }
    let outs = d.on_tick(gen, 0);
    assert_eq!(d.lhm(), 3);
    // refuting a suspicion about ourselves: +1; capped at 8
    for _ in 0..10 {
        d.note_refuted();
    }
    assert_eq!(d.lhm(), 8);
    // successes walk it back down
    let (mut seq, _) = ping_of(&outs);
    for _ in 0..8 {
        d.on_ack(seq);
        seq = ping_of(&d.on_tick(gen, 0)).0;
    }
    assert_eq!(d.lhm(), 0);
}

#[test]
fn removed_member_is_not_probed_and_new_member_is() {
    let mut d = det(3);
    d.remove_member(&"m1".into());
    d.upsert_member(&"new".into(), 0, false);
    let gen = tick_gen(&d.start(0));
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (seq, t) = ping_of(&d.on_tick(gen, 0));
        d.on_ack(seq);
        seen.insert(t);
    }
    assert!(!seen.contains(&NodeId::from("m1")));
    assert!(seen.contains(&NodeId::from("new")));
    assert_eq!(seen.len(), 3);
}

fn inconclusive(outs: &[DetectorOutput]) -> Vec<(NodeId, u64)> {
    outs.iter()
        .filter_map(|o| match o {
            DetectorOutput::Inconclusive { target, late_ms } => Some((target.clone(), *late_ms)),
            _ => None,
        })
        .collect()
}

/// The delay of the next tick as the detector asked for it.
fn tick_after(outs: &[DetectorOutput]) -> u64 {
    outs.iter()
        .find_map(|o| match o {
            DetectorOutput::SetTimer {
                after_ms,
                timer: Timer::ProbeTick { .. },
            } => Some(*after_ms),
            _ => None,
        })
        .expect("a tick timer")
}

#[test]
fn a_late_tick_makes_a_missed_ack_inconclusive_and_reprobes_the_same_target() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (_, target) = ping_of(&outs);
    // The next tick was due 1000 ms later and runs 300 ms after that: the ack may be
    // sitting in our own inbox.
    let due = tick_after(&outs);
    let outs = d.on_tick(gen, due + 300);
    assert!(suspects(&outs).is_empty(), "{outs:?}");
    assert_eq!(inconclusive(&outs), vec![(target.clone(), 300)]);
    assert_eq!(d.lhm(), 1, "our own lateness counts toward local health");
    let (seq, again) = ping_of(&outs);
    assert_eq!(again, target, "the same target is probed again");
    // It answers this time: settled, local health recovers, the round-robin goes on.
    d.on_ack(seq);
    let now = due + 300 + tick_after(&outs);
    let outs = d.on_tick(gen, now);
    assert!(suspects(&outs).is_empty() && inconclusive(&outs).is_empty());
    assert_eq!(d.lhm(), 0);
    assert_ne!(ping_of(&outs).1, target);
}

#[test]
fn a_tick_within_tolerance_still_suspects() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (_, target) = ping_of(&outs);
    let outs = d.on_tick(gen, tick_after(&outs) + 100); // exactly at the tolerance
    assert_eq!(suspects(&outs), vec![target]);
}

#[test]
fn a_node_late_for_good_still_suspects_after_the_retries() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let mut outs = d.on_tick(gen, 0);
    let (_, target) = ping_of(&outs);
    let mut now = 0;
    for i in 0..LATE_PROBE_RETRIES {
        now += tick_after(&outs) + 500;
        outs = d.on_tick(gen, now);
        assert_eq!(inconclusive(&outs).len(), 1, "retry {i}");
        assert_eq!(ping_of(&outs).1, target);
    }
    now += tick_after(&outs) + 500;
    let outs = d.on_tick(gen, now);
    assert_eq!(suspects(&outs), vec![target.clone()]);
    assert_ne!(ping_of(&outs).1, target, "the round-robin moves on");
}

#[test]
fn the_late_check_can_be_turned_off() {
    let cfg = SwimConfig {
        late_tolerance_ms: 0,
        ..SwimConfig::default()
    };
    let mut d = Detector::new("me".into(), cfg, 7);
    for i in 0..5 {
        d.upsert_member(&NodeId(format!("m{i}")), 0, false);
    }
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (_, target) = ping_of(&outs);
    let outs = d.on_tick(gen, tick_after(&outs) + 5_000);
    assert_eq!(suspects(&outs), vec![target]);
}

#[test]
fn the_late_answer_to_an_inconclusive_probe_counts_for_its_retry() {
    let mut d = det(5);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (first_seq, target) = ping_of(&outs);
    let mut now = tick_after(&outs) + 300;
    let outs = d.on_tick(gen, now); // late: inconclusive, the same target again
    assert_eq!(inconclusive(&outs).len(), 1);
    assert_eq!(ping_of(&outs).1, target);
    // The first probe's ack was in our inbox all along; we handle it only now.
    d.on_ack(first_seq);
    for _ in 0..LATE_PROBE_RETRIES + 1 {
        now += 1_500;
        let outs = d.on_tick(gen, now);
        assert!(
            suspects(&outs).is_empty(),
            "answered, never suspected: {outs:?}"
        );
        assert!(inconclusive(&outs).is_empty(), "{outs:?}");
        let (seq, _) = ping_of(&outs);
        d.on_ack(seq);
    }
}

#[test]
fn a_late_tick_still_suspects_when_every_relay_nacked() {
    let mut d = det(6);
    let gen = tick_gen(&d.start(0));
    let outs = d.on_tick(gen, 0);
    let (seq, target) = ping_of(&outs);
    let relays = d.on_probe_timeout(seq).len() as u32;
    assert!(relays > 0);
    for _ in 0..relays {
        d.on_nack(seq); // the relays could not reach it either, and we heard them in time
    }
    let outs = d.on_tick(gen, tick_after(&outs) + 300);
    assert_eq!(suspects(&outs), vec![target]);
    assert!(inconclusive(&outs).is_empty());
}
