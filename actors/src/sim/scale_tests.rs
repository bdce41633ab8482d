//! Membership at scale (issue 16): bounded traffic, no false deaths under loss, crash
//! detection within the suspicion bound. Seeded; every assertion prints its seed, and
//! `SWIM_SEED=<n>` replays one seed. Sizes are kept small enough for debug-mode CI (a few
//! seconds each); the 500-period N=1000 runs are `#[ignore]`d and run with
//! `cargo test --release -p troupe-actors sim::scale_tests -- --ignored`.

use super::scenarios::*;
use crate::membership::config::SwimConfig;

/// The seeds to run: `SWIM_SEED` alone when set, else `defaults`.
fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("SWIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => defaults.to_vec(),
    }
}

/// Per-member per-period traffic within `SwimConfig::traffic_bound`, and no message other
/// than a full-state exchange above the per-message budget.
fn assert_traffic_bounded(n: usize, loss: f64, periods: u64, seed: u64) {
    let cfg = SwimConfig::default();
    let bound = cfg.traffic_bound();
    let r = false_positives(n, loss, periods, seed, cfg, true);
    let ctx =
        format!("N={n} loss={loss} seed={seed} (replay: SWIM_SEED={seed}) {r:?} bound {bound:?}");
    assert!(r.msgs_per_member_period <= bound.messages as f64, "{ctx}");
    assert!(r.bytes_per_member_period <= bound.bytes as f64, "{ctx}");
    assert!(r.max_msg_bytes <= bound.message_bytes, "{ctx}");
    // The busiest member too, with slack for being probed or relayed for more than once.
    assert!(
        r.max_member_msgs_per_period <= 2.0 * bound.messages as f64,
        "{ctx}"
    );
}

#[test]
fn traffic_is_bounded_at_n10_and_n100_for_several_loss_rates() {
    for seed in seeds(&[1]) {
        for loss in [0.0, 0.05, 0.1, 0.2] {
            assert_traffic_bounded(10, loss, 60, seed);
            assert_traffic_bounded(100, loss, 30, seed);
        }
    }
}

#[test]
fn traffic_is_bounded_at_n1000_under_loss() {
    for seed in seeds(&[1]) {
        assert_traffic_bounded(1000, 0.1, 8, seed);
    }
}

#[test]
fn no_false_deaths_n100_loss10() {
    for seed in seeds(&[3, 4]) {
        let r = false_positives(100, 0.1, 200, seed, SwimConfig::default(), false);
        assert_eq!(r.dead_declared, 0, "seed {seed} (SWIM_SEED={seed}): {r:?}");
    }
}

#[test]
fn no_false_deaths_n1000_loss10_short() {
    for seed in seeds(&[5]) {
        let r = false_positives(1000, 0.1, 25, seed, SwimConfig::default(), false);
        assert_eq!(r.dead_declared, 0, "seed {seed} (SWIM_SEED={seed}): {r:?}");
    }
}

#[test]
fn crash_n100_loss10_everyone_marks_dead_within_bound() {
    for seed in seeds(&[7]) {
        let r = crash_detection(100, 0.1, seed, 80);
        let all = r.all_dead.unwrap_or(f64::INFINITY);
        assert!(
            all <= r.bounds.1 + 5.0,
            "seed {seed} (SWIM_SEED={seed}): {r:?}"
        );
    }
}

/// The headline: N=1000, 10% loss, 500 periods, 0 false deaths. Minutes in
/// release mode; run with `--ignored`.
#[test]
#[ignore]
fn no_false_deaths_n1000_loss10_500_periods() {
    for seed in seeds(&[1, 2, 3]) {
        let r = false_positives(1000, 0.1, 500, seed, SwimConfig::default(), true);
        println!("seed {seed}: {r:?}");
        assert_eq!(r.dead_declared, 0, "seed {seed} (SWIM_SEED={seed}): {r:?}");
        let b = SwimConfig::default().traffic_bound();
        assert!(
            r.bytes_per_member_period <= b.bytes as f64,
            "seed {seed}: {r:?}"
        );
        assert!(r.max_msg_bytes <= b.message_bytes, "seed {seed}: {r:?}");
    }
}

#[test]
#[ignore]
fn crash_n1000_loss10_everyone_marks_dead_within_bound() {
    for seed in seeds(&[1, 2, 3]) {
        let r = crash_detection(1000, 0.1, seed, 120);
        println!("seed {seed}: {r:?}");
        let all = r.all_dead.unwrap_or(f64::INFINITY);
        assert!(
            all <= r.bounds.1 + 5.0,
            "seed {seed} (SWIM_SEED={seed}): {r:?}"
        );
    }
}
