//! Simulation report: join spread, crash detection, false positives and
//! traffic for N = 10, 100, 1000. Run with
//! `cargo run --release --example swim_report` (optionally `-- quick`).
//!
//! Every number is from a seeded deterministic run; times are in protocol
//! periods (probe_interval_ms = 1000 ms, default config).

use std::time::Instant;
use troupe_actors::membership::config::SwimConfig;
use troupe_actors::sim::scenarios::{
    crash_detection, false_positives, join_spread, pause_outcome, slow_member, SlowResult,
};

fn fmt(x: Option<f64>) -> String {
    x.map_or("timeout".to_string(), |v| format!("{v:.2}"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    if std::env::args().any(|a| a == "scale") {
        return scale(quick);
    }
    if std::env::args().any(|a| a == "slow") {
        return slow(quick);
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "headline") {
        let seed = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1);
        let periods = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(500);
        return headline(seed, periods);
    }
    let sizes: &[usize] = &[10, 100, 1000];
    let seeds: &[u64] = if quick { &[1] } else { &[1, 2, 3] };
    let started = Instant::now();
    println!(
        "# SWIM + Lifeguard simulation report (defaults: {:?})",
        SwimConfig::default()
    );
    println!("# delay 1..10 ms uniform; times in periods of 1000 ms; seeds {seeds:?}\n");

    println!("## Join spread (periods until every member sees the joiner Alive)");
    println!("N\tloss\tper-seed\t\tbound 3*log2(N)");
    for &n in sizes {
        for loss in [0.0, 0.05] {
            let r: Vec<String> = seeds
                .iter()
                .map(|&s| fmt(join_spread(n, loss, s, 60)))
                .collect();
            println!(
                "{n}\t{loss}\t{}\t\t{:.1}",
                r.join(" "),
                3.0 * (n as f64).log2()
            );
        }
    }

    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());
    println!("\n## Crash detection (periods after crash)");
    println!("N\tloss\tfirst_suspect\tall_dead\tsuspicion min/max");
    for &n in sizes {
        for loss in [0.0, 0.05] {
            for &s in seeds {
                let r = crash_detection(n, loss, s, 120);
                println!(
                    "{n}\t{loss}\t{}\t\t{}\t\t{:.1}/{:.1}",
                    fmt(r.first_suspect),
                    fmt(r.all_dead),
                    r.bounds.0,
                    r.bounds.1
                );
            }
        }
    }

    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());
    println!("\n## False positives and traffic (no faults, seed 1)");
    println!("N\tloss\tperiods\tdead_declared\tsuspected\tmsgs/member/period\tbytes/member/period\tmax_LHM_end");
    for &n in sizes {
        let periods = if n >= 1000 { 100 } else { 500 };
        for loss in [0.0, 0.05, 0.10] {
            let r = false_positives(n, loss, periods, 1, SwimConfig::default(), true);
            println!(
                "{n}\t{loss}\t{periods}\t{}\t\t{}\t\t{:.2}\t\t\t{:.0}\t\t\t{}",
                r.dead_declared,
                r.suspected,
                r.msgs_per_member_period,
                r.bytes_per_member_period,
                r.max_lhm_at_end
            );
        }
    }

    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());
    println!("\n## Lifeguard vs plain SWIM-ish (LHM off, fixed min suspicion), N=100, 500 periods");
    let plain = SwimConfig {
        awareness_max_multiplier: 0,
        suspicion_max_timeout_mult: 1,
        ..SwimConfig::default()
    };
    println!("config\tloss\tdead_declared\tsuspected");
    for loss in [0.05, 0.10, 0.20] {
        let lg = false_positives(100, loss, 500, 1, SwimConfig::default(), false);
        let pl = false_positives(100, loss, 500, 1, plain.clone(), false);
        println!("lifeguard\t{loss}\t{}\t{}", lg.dead_declared, lg.suspected);
        println!("plain\t{loss}\t{}\t{}", pl.dead_declared, pl.suspected);
    }

    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());
    println!("\n## Pause (SIGSTOP-like), N=100, 0% loss: observers that marked it Dead / all see Alive after");
    let (min, max) = SwimConfig::default().suspicion_bounds_ms(100);
    println!("suspicion min {min} ms, max {max} ms");
    for pause in [2_000, 5_000, 7_000, 15_000, 60_000] {
        let (downs, alive) = pause_outcome(100, pause, 0.0, 1, 30);
        println!("pause {pause} ms\tdowns {downs}\tall_alive_after {alive}");
    }
    println!("\n# wall time {:.1}s", started.elapsed().as_secs_f64());
}

/// Issue 16's figures: traffic against the bound, false deaths and crash detection at
/// N=1000 with 10% loss, and Lifeguard with a slow member. `-- scale [quick]`.
fn scale(quick: bool) {
    let started = Instant::now();
    let cfg = SwimConfig::default();
    let bound = cfg.traffic_bound();
    println!("# Membership at scale (issue 16); defaults {cfg:?}");
    println!(
        "# bound per member per period: {} messages, {} bytes, {} bytes per message (state exchanges excepted)\n",
        bound.messages, bound.bytes, bound.message_bytes
    );
    println!("## Traffic per member per period (seed 1)");
    println!("| N | loss | periods | msgs mean | msgs busiest | bytes mean | bytes busiest | of which state exchange | largest msg | false deaths |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (n, periods) in [(10, 200), (100, 200), (1000, if quick { 20 } else { 50 })] {
        for loss in [0.0, 0.05, 0.10, 0.20] {
            let r = false_positives(n, loss, periods, 1, cfg.clone(), true);
            println!(
                "| {n} | {loss} | {periods} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} |",
                r.msgs_per_member_period,
                r.max_member_msgs_per_period,
                r.bytes_per_member_period,
                r.max_member_bytes_per_period,
                r.state_bytes_per_member_period,
                r.max_msg_bytes,
                r.dead_declared
            );
        }
    }
    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());

    let periods = if quick { 50 } else { 500 };
    let seeds: &[u64] = if quick { &[1] } else { &[1, 2, 3] };
    println!("\n## N=1000, 10% loss: false deaths over {periods} periods, then crash detection");
    println!("| seed | healthy declared dead | suspicions | crash: first suspect | crash: all see dead | suspicion min/max |");
    println!("|---|---|---|---|---|---|");
    for &seed in seeds {
        let r = false_positives(1000, 0.1, periods, seed, cfg.clone(), false);
        let c = crash_detection(1000, 0.1, seed, 120);
        println!(
            "| {seed} | {} | {} | {} | {} | {:.1}/{:.1} |",
            r.dead_declared,
            r.suspected,
            fmt(c.first_suspect),
            fmt(c.all_dead),
            c.bounds.0,
            c.bounds.1
        );
    }
    println!("# (elapsed {:.0}s)", started.elapsed().as_secs_f64());

    slow(quick);
    println!("\n# wall time {:.1}s", started.elapsed().as_secs_f64());
}

/// Lifeguard's case: one member handles every message and timer late. `-- slow [quick]`.
/// Each row sums seeds 1-5 (1-2 with `quick`). "on" is troupe's default: local health,
/// dynamic suspicion and the late-tick check (`late_tolerance_ms`); "memberlist" is
/// Lifeguard as memberlist does it (no late-tick check); "off" is plain SWIM (no local
/// health, fixed minimum suspicion timeout, no late-tick check).
fn slow(quick: bool) {
    let cfg = SwimConfig::default();
    let seeds: Vec<u64> = if quick { vec![1, 2] } else { (1..=5).collect() };
    let memberlist = SwimConfig {
        late_tolerance_ms: 0,
        ..SwimConfig::default()
    };
    let plain = SwimConfig {
        awareness_max_multiplier: 0,
        suspicion_max_timeout_mult: 1,
        late_tolerance_ms: 0,
        ..SwimConfig::default()
    };
    let periods = if quick { 50 } else { 100 };
    println!("\n## One slow member, N=100, {periods} periods, sums over seeds {seeds:?}");
    println!("| late by (ms) | loss | lifeguard | suspicions by slow | deaths by slow | suspicions about slow | deaths about slow | other deaths | max slow LHM at end |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for delay in [(200, 800), (1000, 3000), (2000, 5000)] {
        for loss in [0.0, 0.05] {
            for (name, c) in [("on", &cfg), ("memberlist", &memberlist), ("off", &plain)] {
                let mut t = SlowResult::default();
                for &seed in &seeds {
                    let r = slow_member(100, loss, periods, seed, c.clone(), delay);
                    t.suspicions_by_slow += r.suspicions_by_slow;
                    t.deaths_by_slow += r.deaths_by_slow;
                    t.suspicions_about_slow += r.suspicions_about_slow;
                    t.deaths_about_slow += r.deaths_about_slow;
                    t.other_deaths += r.other_deaths;
                    t.slow_lhm_end = t.slow_lhm_end.max(r.slow_lhm_end);
                }
                println!(
                    "| {}-{} | {loss} | {name} | {} | {} | {} | {} | {} | {} |",
                    delay.0,
                    delay.1,
                    t.suspicions_by_slow,
                    t.deaths_by_slow,
                    t.suspicions_about_slow,
                    t.deaths_about_slow,
                    t.other_deaths,
                    t.slow_lhm_end
                );
            }
        }
    }
}

/// The headline for one seed: N=1000, 10% loss, 500 periods, then a crash.
/// `-- headline SEED` (about 10-20 minutes in release on one core).
fn headline(seed: u64, periods: u64) {
    let started = Instant::now();
    let cfg = SwimConfig::default();
    let r = false_positives(1000, 0.1, periods, seed, cfg.clone(), false);
    println!(
        "seed {seed}: N=1000 loss 0.1 {periods} periods: healthy declared dead {}, suspicions {}, msgs/member/period {:.2} ({:.0}s)",
        r.dead_declared,
        r.suspected,
        r.msgs_per_member_period,
        started.elapsed().as_secs_f64()
    );
    for d in &r.deaths {
        println!("  false death: {d}");
    }
    let c = crash_detection(1000, 0.1, seed, 120);
    println!(
        "seed {seed}: crash: first suspect {} periods, all see dead {} periods, suspicion min/max {:.1}/{:.1} ({:.0}s)",
        fmt(c.first_suspect),
        fmt(c.all_dead),
        c.bounds.0,
        c.bounds.1,
        started.elapsed().as_secs_f64()
    );
}
