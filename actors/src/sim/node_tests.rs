//! Unit tests for the `Node` facade: join handshake, ping/ack piggyback,
//! refutation through the facade, detector verdicts and leave.

use super::*;
use crate::membership::driver::MembershipTimer;
use troupe_protocol::swim::{Ack, Ping, Status, Update};

fn info(id: &str) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        client_addr: format!("{id}:c"),
        peer_addr: format!("{id}:p"),
        admin_addr: format!("{id}:a"),
        incarnation: 0,
        status: Status::Alive,
        run_id: 1,
    }
}

fn sends(fx: &[Effect]) -> Vec<(NodeId, SwimMsg)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg, .. } => Some((to.clone(), msg.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn join_handshake_makes_both_sides_know_each_other() {
    let mut a = Node::new(info("a"), SwimConfig::default(), 1);
    let mut b = Node::new(info("b"), SwimConfig::default(), 2);
    b.join(&[]);
    let fx = a.join(&["b".into()]);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::SetTimer {
            timer: NodeTimer::Detector(Timer::ProbeTick { .. }),
            ..
        }
    )));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::SetTimer {
            timer: NodeTimer::Membership(MembershipTimer::PushPull { .. }),
            ..
        }
    )));
    let out = sends(&fx);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0].1, SwimMsg::StateExchange(s) if s.reply));
    let reply = sends(&b.handle_message(&"a".into(), out[0].1.clone(), 10));
    assert!(matches!(&reply[0].1, SwimMsg::StateExchange(s) if !s.reply));
    a.handle_message(&"b".into(), reply[0].1.clone(), 20);
    assert!(a.member(&"b".into()).is_some());
    assert!(b.member(&"a".into()).is_some());
    assert!(
        matches!(b.drain_events().as_slice(), [MemberEvent::MemberUp(m)] if m.id.as_str() == "a")
    );
    assert!(
        matches!(a.drain_events().as_slice(), [MemberEvent::MemberUp(m)] if m.id.as_str() == "b")
    );
    // b gossips a's arrival on its pings to others (not to a itself)
    b.preload([info("c")]);
    let mut saw = false;
    for t in 1..=4 {
        for e in b.handle_timer(NodeTimer::Detector(Timer::ProbeTick { gen: 1 }), t * 1000) {
            if let Effect::Send {
                to,
                addr,
                msg: SwimMsg::Ping(p),
            } = e
            {
                if to.as_str() == "c" {
                    assert_eq!(addr.as_deref(), Some("c:p"));
                    saw |= p.updates.iter().any(|u| u.member.id.as_str() == "a");
                }
            }
        }
    }
    assert!(saw, "a's join was piggybacked to c");
}

#[test]
fn ping_is_answered_with_digest_and_suspicion_is_refuted() {
    let mut a = Node::new(info("a"), SwimConfig::default(), 1);
    a.preload([info("b")]);
    let mut sus = info("a");
    sus.status = Status::Suspect;
    let ping = SwimMsg::Ping(Ping {
        seq: 9,
        from: "b".into(),
        updates: vec![Update {
            member: sus,
            origin: "b".into(),
        }],
    });
    let out = sends(&a.handle_message(&"b".into(), ping, 5));
    let SwimMsg::Ack(ack) = &out[0].1 else {
        panic!("ack expected")
    };
    assert_eq!(ack.seq, 9);
    assert_ne!(ack.digest, [0; 32]);
    assert_eq!(a.me().incarnation, 1);
    assert_eq!(a.lhm(), 1, "refuting a suspicion raises LHM");
    assert!(ack.updates.iter().any(|u| u.member.id.as_str() == "a"
        && u.member.status == Status::Alive
        && u.member.incarnation == 1));
}

#[test]
fn failed_probe_suspects_then_suspicion_timer_declares_dead() {
    let mut a = Node::new(info("a"), SwimConfig::default(), 1);
    a.preload([info("b")]);
    a.join(&[]);
    let gen = 1;
    a.handle_timer(NodeTimer::Detector(Timer::ProbeTick { gen }), 0); // pings b, no ack will come
    let fx = a.handle_timer(NodeTimer::Detector(Timer::ProbeTick { gen }), 1000);
    assert_eq!(
        a.member(&"b".into()).map(|m| m.status),
        Some(Status::Suspect)
    );
    let timer = fx
        .iter()
        .find_map(|e| match e {
            Effect::SetTimer {
                timer: t @ NodeTimer::Detector(Timer::Suspicion { .. }),
                ..
            } => Some(t.clone()),
            _ => None,
        })
        .expect("suspicion timer");
    a.handle_timer(timer, 10_000);
    assert_eq!(a.member(&"b".into()).map(|m| m.status), Some(Status::Dead));
    let ev = a.drain_events();
    assert!(matches!(
        ev.as_slice(),
        [MemberEvent::MemberSuspect(_), MemberEvent::MemberDown(_)]
    ));
    // a stale ack for the old probe changes nothing
    let stale = SwimMsg::Ack(Ack {
        seq: 1,
        from: "b".into(),
        digest: [1; 32],
        updates: vec![],
    });
    a.handle_message(&"b".into(), stale, 10_001);
    assert_eq!(a.member(&"b".into()).map(|m| m.status), Some(Status::Dead));
}

#[test]
fn leave_announces_left_and_stops_probing() {
    let mut a = Node::new(info("a"), SwimConfig::default(), 1);
    a.preload([info("b"), info("c")]);
    a.join(&[]);
    let out = sends(&a.leave(0));
    assert!(!out.is_empty());
    for (_, m) in &out {
        let SwimMsg::Ping(p) = m else { panic!("ping") };
        assert!(p
            .updates
            .iter()
            .any(|u| u.member.id.as_str() == "a" && u.member.status == Status::Left));
    }
    assert!(a
        .handle_timer(NodeTimer::Detector(Timer::ProbeTick { gen: 1 }), 1000)
        .is_empty());
}
