//! Balance and movement of the partition table, measured (the figures in the module docs,
//! ARCHITECTURE.md and docs/BENCHMARKS.md come from here). Print them with
//! `cargo test -p troupe-actors ring:: -- --nocapture`.
//!
//! Members are named `node-0 .. node-{S-1}`; joiners `joiner-{j}`; leavers are spread over
//! the members. No randomness beyond the hash, so every run prints the same figures.

use super::*;

fn members(s: usize) -> Vec<String> {
    (0..s).map(|i| format!("node-{i}")).collect()
}

fn table(m: &[String], partitions: u32, n: usize) -> PartitionTable {
    PartitionTable::new(
        m.iter().map(|x| x.as_str()),
        PartitionConfig { partitions, n },
    )
    .expect("valid config and members")
}

/// One row of the figures.
struct Figures {
    s: usize,
    /// Ideal replicas per member, `Q * min(N, S) / S`.
    ideal_share: f64,
    max_share: usize,
    min_share: usize,
    /// Ideal moves for one join: the newcomer's share, `Q * min(N, S+1) / (S+1)`.
    ideal_join: f64,
    /// Replica moves (new (partition, primary) pairs) per join: mean and worst.
    join_mean: f64,
    join_max: usize,
    /// Moves per leave over the leaver's share (its replicas must be re-homed): mean, worst.
    leave_ratio_mean: f64,
    leave_ratio_max: f64,
    /// (moves, ideal) of every leave.
    leaves: Vec<(usize, usize)>,
    /// Q * N_eff: all partition replicas.
    replicas: usize,
}

fn measure(q: u32, n: usize, s: usize, trials: usize) -> Figures {
    let base_members = members(s);
    let base = table(&base_members, q, n);
    let shares = base.shares();
    let max_share = *shares.values().max().expect("members");
    let min_share = *shares.values().min().expect("members");
    let q_f = f64::from(q);
    let ideal_share = q_f * n.min(s) as f64 / s as f64;
    let ideal_join = q_f * n.min(s + 1) as f64 / (s + 1) as f64;

    let mut joins = Vec::new();
    for j in 0..trials {
        let mut m = base_members.clone();
        m.push(format!("joiner-{j}"));
        joins.push(base.replica_moves(&table(&m, q, n)));
    }
    let mut leave_ratios = Vec::new();
    let mut leaves = Vec::new();
    if s > 1 {
        for j in 0..trials {
            let gone = (j * 7919 + 3) % s;
            let m: Vec<String> = base_members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, x)| x.clone())
                .collect();
            let after = table(&m, q, n);
            // A leave must re-home at least the leaver's replicas; with fewer members than
            // N it also shrinks effective N, which moves nothing anywhere.
            let own = shares[&base_members[gone].as_str().into()];
            let ideal = if s <= n { 1 } else { own };
            let moves = base.replica_moves(&after);
            leaves.push((moves, ideal));
            leave_ratios.push(moves as f64 / ideal as f64);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Figures {
        s,
        ideal_share,
        max_share,
        min_share,
        ideal_join,
        join_mean: joins.iter().sum::<usize>() as f64 / joins.len() as f64,
        join_max: *joins.iter().max().expect("trials > 0"),
        leave_ratio_mean: mean(&leave_ratios),
        leave_ratio_max: leave_ratios.iter().copied().fold(0.0, f64::max),
        leaves,
        replicas: q as usize * n.min(s),
    }
}

impl Figures {
    /// The worst join or leave's moves beyond its ideal, in % of all replicas.
    fn extra_percent(&self) -> f64 {
        let join = self.join_max as f64 - self.ideal_join;
        let leave = self.leaves.iter().map(|&(m, i)| m as f64 - i as f64);
        let worst = leave.fold(join, f64::max).max(0.0);
        100.0 * worst / self.replicas as f64
    }
}

fn print_header(q: u32, n: usize) {
    println!("\npartition table, Q={q} N={n}: shares per member and replica moves per join/leave");
    println!(
        "{:>5} {:>8} {:>4} {:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "S",
        "ideal",
        "max",
        "min",
        "join id.",
        "join avg",
        "join max",
        "x ideal",
        "leave x",
        "lv max x",
        "extra%"
    );
}

fn print_row(f: &Figures) {
    println!(
        "{:>5} {:>8.2} {:>4} {:>4} {:>9.2} {:>9.2} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>7.2}",
        f.s,
        f.ideal_share,
        f.max_share,
        f.min_share,
        f.ideal_join,
        f.join_mean,
        f.join_max,
        f.join_max as f64 / f.ideal_join,
        f.leave_ratio_mean,
        f.leave_ratio_max,
        f.extra_percent(),
    );
}

/// The balance bar: max share <= max(ceil(ideal) * 1.05, ideal + 1), min share >=
/// min(floor(ideal) * 0.95, ideal - 1).
fn assert_balanced(q: u32, n: usize, f: &Figures) {
    let hi = (f.ideal_share.ceil() * 1.05).max(f.ideal_share + 1.0);
    let lo = (f.ideal_share.floor() * 0.95).min(f.ideal_share - 1.0);
    assert!(
        f.max_share as f64 <= hi && f.min_share as f64 >= lo,
        "Q={q} N={n} S={}: shares {}..{} outside [{lo:.2}, {hi:.2}] (ideal {:.2})",
        f.s,
        f.min_share,
        f.max_share,
        f.ideal_share
    );
}

/// The design's movement bar: a join or a leave moves at most 1.2 times its ideal (the
/// newcomer's or the leaver's share), rounded up to a whole move: moves are integers, and at
/// 1,000 members the ideal is 0.77 of a replica.
fn meets_spec_bar(moves: usize, ideal: f64) -> bool {
    moves as f64 <= (1.2 * ideal).ceil()
}

/// The bar the placement keeps at every size: 1.2 times the ideal plus 1/12 of all replicas.
/// Weaker than the design's bar past seven members (see the module docs: chains of
/// displacement in the capped pass); asserted so that a regression shows.
fn meets_weak_bar(moves: usize, ideal: f64, replicas: usize) -> bool {
    moves as f64 <= 1.2 * ideal + replicas as f64 / 12.0
}

fn assert_movement(q: u32, n: usize, f: &Figures, spec: bool) {
    let joins = [(f.join_max, f.ideal_join)];
    let leaves = f.leaves.iter().map(|&(m, i)| (m, i as f64));
    for (moves, ideal) in joins.into_iter().chain(leaves) {
        assert!(
            meets_weak_bar(moves, ideal, f.replicas),
            "Q={q} N={n} S={}: {moves} moves, ideal {ideal:.2}: beyond 1.2x + 1/12 of {}",
            f.s,
            f.replicas
        );
        assert!(
            !spec || meets_spec_bar(moves, ideal),
            "Q={q} N={n} S={}: {moves} moves, ideal {ideal:.2}: beyond the 1.2x bar",
            f.s
        );
    }
}

#[test]
fn balance_and_movement_q256_n3() {
    let (q, n) = (256, 3);
    print_header(q, n);
    // 16 joins and 16 leaves from 4 to 16 members (cheap there), so that the 1.2x bar
    // asserted up to 7 members is not a lucky draw: with 4 joins 10 members stayed within
    // it, with 16 their worst join is 1.26x, and with 32 (measured once) 8 members' is 1.22x.
    for (s, trials) in [
        (1, 3),
        (2, 3),
        (3, 4),
        (4, 16),
        (5, 16),
        (7, 16),
        (8, 16),
        (10, 16),
        (16, 16),
        (32, 3),
        (64, 3),
        (100, 2),
        (256, 2),
        (1000, 1),
    ] {
        let f = measure(q, n, s, trials);
        print_row(&f);
        assert_balanced(q, n, &f);
        // The design's 1.2x bar holds up to seven members; past that, the weak bar.
        assert_movement(q, n, &f, s <= 7);
    }
}

#[test]
fn balance_and_movement_other_q() {
    for (q, n, sizes) in [
        (64u32, 3usize, &[3usize, 5, 10, 32, 64, 100][..]),
        (1024, 3, &[5, 10, 32, 100, 256][..]),
        (256, 2, &[3, 10, 32][..]),
        (256, 5, &[4, 6, 10, 32][..]),
    ] {
        print_header(q, n);
        for &s in sizes {
            let f = measure(q, n, s, 2);
            print_row(&f);
            assert_balanced(q, n, &f);
            assert_movement(q, n, &f, false);
        }
    }
}
