//! Simulation report: join spread, crash detection, false positives and
//! traffic for N = 10, 100, 1000. Run with
//! `cargo run --release --example swim_report` (optionally `-- quick`).
//!
//! Every number is from a seeded deterministic run; times are in protocol
//! periods (probe_interval_ms = 1000 ms, default config).

use std::time::Instant;
use troupe_actors::membership::config::SwimConfig;
use troupe_actors::sim::scenarios::{crash_detection, false_positives, join_spread, pause_outcome};

fn fmt(x: Option<f64>) -> String {
    x.map_or("timeout".to_string(), |v| format!("{v:.2}"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
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
