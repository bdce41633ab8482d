//! Simulation tests with fixed seeds and hard bars (debug-mode friendly).

use super::scenarios::*;
use super::*;

#[test]
fn crash_n100_loss5_everyone_marks_dead_within_bound() {
    let r = crash_detection(100, 0.05, 11, 80);
    let all = r.all_dead.expect("everyone marked the crashed node dead");
    // bound: max suspicion timeout + 5 periods (first probe + dissemination)
    assert!(all <= r.bounds.1 + 5.0, "{r:?}");
    let first = r.first_suspect.expect("suspected");
    assert!(first <= 4.0, "{r:?}");
}

#[test]
fn no_false_positives_n100_loss5_500_periods() {
    let r = false_positives(100, 0.05, 500, 21, SwimConfig::default(), false);
    assert_eq!(r.dead_declared, 0, "{r:?}");
}

#[test]
fn join_reaches_all_1000_within_3_log2_n_periods() {
    let bound = 3.0 * 1000f64.log2(); // 29.9 periods
    let p = join_spread(1000, 0.0, 31, 40).expect("join spread to everyone");
    assert!(p <= bound, "{p} > {bound}");
}

#[test]
fn pause_shorter_than_suspicion_timeout_is_never_declared_dead() {
    let (min, _) = SwimConfig::default().suspicion_bounds_ms(100);
    let (downs, alive) = pause_outcome(100, min * 3 / 4, 0.0, 41, 20);
    assert_eq!(downs, 0);
    assert!(alive);
}

#[test]
fn long_pause_is_declared_dead_then_refutes_back_to_alive() {
    let (downs, alive) = pause_outcome(30, 60_000, 0.0, 43, 30);
    assert!(downs > 0, "a 60 s freeze must be detected");
    assert!(alive, "after resuming it refutes and is Alive everywhere");
}

#[test]
fn restarted_node_rejoins_with_new_run_id() {
    let mut sim = Sim::bootstrapped(SimConfig::default(), 20);
    sim.run_until(3_000);
    sim.crash(7);
    sim.run_for(40_000);
    assert!((0..20)
        .filter(|i| *i != 7)
        .all(|i| !sim.sees(i, 7, Status::Alive)));
    sim.restart(7, &[0]);
    sim.run_for(15_000);
    let run = sim.node(7).me().run_id;
    for i in 0..20 {
        let m = sim.node(i).member(&sim.id_of(7)).cloned();
        assert!(
            m.as_ref()
                .is_some_and(|m| m.status == Status::Alive && m.run_id == run),
            "node {i} sees {m:?}"
        );
    }
}

#[test]
fn graceful_leave_is_seen_as_left_not_dead() {
    let mut sim = Sim::bootstrapped(SimConfig::default(), 20);
    sim.run_until(3_000);
    sim.leave(5);
    sim.run_for(3_000);
    sim.crash(5); // process exits after its grace period
    sim.run_for(15_000);
    for i in (0..20).filter(|i| *i != 5) {
        let st = sim.node(i).member(&sim.id_of(5)).map(|m| m.status);
        assert!(st.is_none() || st == Some(Status::Left), "node {i}: {st:?}");
    }
    assert!(!sim
        .log
        .iter()
        .any(|o| matches!(&o.event, MemberEvent::MemberDown(m) if m.id == sim.id_of(5))));
}

#[test]
fn short_partition_heals_without_deaths() {
    let mut sim = Sim::bootstrapped(SimConfig::default(), 30);
    sim.run_until(3_000);
    sim.log.clear();
    sim.partition(&[(0..10).collect(), (10..30).collect()]);
    sim.run_for(3_000);
    sim.heal();
    sim.run_for(30_000);
    assert!(!sim
        .log
        .iter()
        .any(|o| matches!(o.event, MemberEvent::MemberDown(_))));
    assert!((0..30).all(|i| (0..30).all(|j| sim.sees(i, j, Status::Alive))));
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let cfg = SimConfig {
            seed,
            loss: 0.1,
            ..SimConfig::default()
        };
        let mut sim = Sim::bootstrapped(cfg, 20);
        sim.run_until(30_000);
        (sim.traffic.messages, sim.log.len())
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}
