//! `PartitionTable::next` and `Layout`: balance and movement of the layout history, measured
//! from 3 to 1,000 members (print the figures with
//! `cargo test --release -p troupe-actors rebalance_tests -- --nocapture`), a property test
//! over random histories, and the wire and file encodings.

use super::layout::LayoutFileError;
use super::*;
use proptest::prelude::*;
use troupe_protocol::layout::WireLayout;
use troupe_protocol::swim::NodeId;

fn cfg(partitions: u32, n: usize) -> PartitionConfig {
    PartitionConfig { partitions, n }
}

fn ids(names: &[String]) -> Vec<NodeId> {
    names.iter().map(|s| NodeId(s.clone())).collect()
}

/// Every member holds floor or ceil of the ideal, and the table is valid.
fn assert_balanced(t: &PartitionTable) {
    let s = t.members().len();
    let total = t.partitions() as usize * t.effective_n();
    let (lo, hi) = (total / s, total.div_ceil(s));
    for (m, c) in t.shares() {
        assert!(
            (lo..=hi).contains(&c),
            "{m} holds {c}, outside [{lo}, {hi}] ({s} members)"
        );
    }
    let back = PartitionTable::from_held(t.members().to_vec(), t.config(), &t.held())
        .expect("a computed table is a valid layout");
    assert_eq!(
        back.digest(),
        t.digest(),
        "from_held(held()) is the same table"
    );
}

/// The design's stability bar: 1.2x the ideal, rounded up to a whole replica.
fn bar(ideal: usize) -> usize {
    (ideal * 6).div_ceil(5)
}

/// Replicas `newer` has that `older` does not, and what the change had to move at least:
/// on a join the newcomer's share, on a leave the leaver's.
fn moves(older: &PartitionTable, newer: &PartitionTable) -> usize {
    older.replica_moves(newer)
}

#[test]
fn a_join_moves_exactly_the_newcomers_share_and_a_leave_the_leavers() {
    // One history: grow from 3 to 64 members one join at a time, then shrink back by
    // leaves from the middle of the member list, checking every step.
    let c = cfg(256, 3);
    let mut names: Vec<String> = (0..3).map(|i| format!("node-{i}")).collect();
    let mut t = PartitionTable::new(ids(&names), c).unwrap();
    for j in 3..64 {
        names.push(format!("node-{j}"));
        let next = t.next(ids(&names), c).unwrap();
        assert_balanced(&next);
        let newcomer = next.shares()[&NodeId(format!("node-{j}"))];
        assert_eq!(moves(&t, &next), newcomer, "join of member {}", j + 1);
        t = next;
    }
    while names.len() > 2 {
        let gone = names.remove(names.len() / 2);
        let share = t.shares()[&NodeId(gone.clone())];
        let next = t.next(ids(&names), c).unwrap();
        assert_balanced(&next);
        // Down to N members or fewer, nobody takes the leaver's replicas: each partition
        // just has one replica fewer.
        let expected = if names.len() >= 3 { share } else { 0 };
        assert_eq!(
            moves(&t, &next),
            expected,
            "leave of {gone} at {} members",
            names.len() + 1
        );
        t = next;
    }
}

/// The figures: for each size, 8 joins and 8 leaves from a table that is itself the result
/// of a history (a fresh table of S-8 members, then 8 joins), worst moves over the ideal.
#[test]
fn movement_and_balance_from_3_to_1000_members() {
    let c = cfg(256, 3);
    println!("layout history, Q=256 N=3: worst moves / ideal (newcomer's or leaver's share)");
    println!("members | share min-max | join worst | join worst/ideal | leave worst/share");
    for &s in &[3usize, 4, 5, 7, 8, 10, 16, 32, 64, 100, 256, 500, 1000] {
        let base: Vec<String> = (0..s).map(|i| format!("node-{i}")).collect();
        let start = s.saturating_sub(8).max(1);
        let mut t = PartitionTable::new(ids(&base[..start]), c).unwrap();
        for k in start..s {
            t = t.next(ids(&base[..=k]), c).unwrap();
        }
        assert_balanced(&t);
        let shares = t.shares();
        let (lo, hi) = (
            shares.values().min().copied().unwrap(),
            shares.values().max().copied().unwrap(),
        );
        let ideal = 256.0 * 3usize.min(s + 1) as f64 / (s + 1) as f64;
        let (mut join_worst, mut join_ratio, mut leave_ratio) = (0usize, 0f64, 0f64);
        for j in 0..8 {
            let mut grown = base.clone();
            grown.push(format!("joiner-{j}"));
            let next = t.next(ids(&grown), c).unwrap();
            assert_balanced(&next);
            let m = moves(&t, &next);
            let newcomer = next.shares()[&NodeId(format!("joiner-{j}"))];
            assert_eq!(m, newcomer, "join at {s} members");
            // The bar: 1.2x the ideal, or one whole replica when the ideal is below one.
            assert!(
                m as f64 <= (1.2 * ideal).max(ideal.ceil()),
                "join at {s} members moved {m}, ideal {ideal:.2}"
            );
            join_worst = join_worst.max(m);
            join_ratio = join_ratio.max(m as f64 / ideal);
            if s > 1 {
                let mut shrunk = base.clone();
                let gone = shrunk.remove(j * s / 8 % s);
                let share = t.shares()[&NodeId(gone)];
                let next = t.next(ids(&shrunk), c).unwrap();
                assert_balanced(&next);
                let m = moves(&t, &next);
                let expected = if s > 3 { share } else { 0 };
                assert_eq!(m, expected, "leave at {s} members");
                leave_ratio = leave_ratio.max(m as f64 / share.max(1) as f64);
            }
        }
        println!("{s:7} | {lo:3}-{hi:<3} | {join_worst:10} | {join_ratio:16.2} | {leave_ratio:.2}");
    }
}

#[test]
fn n_and_member_count_below_n_change_minimally() {
    let names: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();
    // N goes 3 -> 2: each partition drops one primary and nothing else moves.
    let t3 = PartitionTable::new(ids(&names), cfg(64, 3)).unwrap();
    let t2 = t3.next(ids(&names), cfg(64, 2)).unwrap();
    assert_balanced(&t2);
    assert_eq!(moves(&t3, &t2), 0);
    // And back to 3: exactly one new primary per partition.
    let back = t2.next(ids(&names), cfg(64, 3)).unwrap();
    assert_balanced(&back);
    assert_eq!(moves(&t2, &back), 64);
    // Growing from one member: the second and third take every partition.
    let one = PartitionTable::new(ids(&names[..1]), cfg(64, 3)).unwrap();
    let two = one.next(ids(&names[..2]), cfg(64, 3)).unwrap();
    assert_eq!(moves(&one, &two), 64);
    assert!(two.under_replicated());
    // A different partition count keeps nothing: the fresh table.
    let other = t3.next(ids(&names), cfg(128, 3)).unwrap();
    assert_eq!(
        other,
        PartitionTable::new(ids(&names), cfg(128, 3)).unwrap()
    );
}

#[test]
fn next_is_deterministic_and_the_same_change_gives_the_same_table() {
    let names: Vec<String> = (0..9).map(|i| format!("node-{i}")).collect();
    let t = PartitionTable::new(ids(&names[..8]), cfg(256, 3)).unwrap();
    let mut shuffled = ids(&names);
    shuffled.reverse();
    shuffled.push(NodeId("node-0".into()));
    let a = t.next(ids(&names), cfg(256, 3)).unwrap();
    let b = t.next(shuffled, cfg(256, 3)).unwrap();
    assert_eq!(a.digest(), b.digest());
    // No change, no move: next of the same members is the same table.
    assert_eq!(a.next(ids(&names), cfg(256, 3)).unwrap(), a);
}

#[derive(Debug, Clone)]
enum Change {
    Join(u8),
    Leave(usize),
    SetN(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => any::<u8>().prop_map(Change::Join),
        3 => any::<usize>().prop_map(Change::Leave),
        1 => (1usize..5).prop_map(Change::SetN),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any history of joins, leaves and N changes: every table is valid and balanced, a
    /// single join moves exactly the newcomer's share, a single leave at most 1.2x the
    /// leaver's, and a change of N at most 1.2x one replica per partition per step up, and
    /// less than it drops down.
    #[test]
    fn any_history_stays_balanced_and_moves_the_minimum(
        bits in 0u32..8,
        start in 1usize..6,
        changes in proptest::collection::vec(change(), 1..25),
    ) {
        let q = 1u32 << bits;
        let mut n = 3usize;
        let mut names: Vec<String> = (0..start).map(|i| format!("m{i}")).collect();
        let mut t = PartitionTable::new(ids(&names), cfg(q, n)).unwrap();
        for ch in changes {
            let before = t.clone();
            match ch {
                Change::Join(j) => {
                    let name = format!("j{j}");
                    if names.contains(&name) { continue; }
                    names.push(name.clone());
                    t = t.next(ids(&names), cfg(q, n)).unwrap();
                    prop_assert_eq!(moves(&before, &t), t.shares()[&NodeId(name)]);
                }
                Change::Leave(i) => {
                    if names.len() == 1 { continue; }
                    let gone = names.remove(i % names.len());
                    let share = before.shares()[&NodeId(gone)];
                    t = t.next(ids(&names), cfg(q, n)).unwrap();
                    // The leaver's replicas must be re-homed; when the survivors with room
                    // are already in those partitions, a swap costs one more move each.
                    let expected = if names.len() >= n { share } else { 0 };
                    let m = moves(&before, &t);
                    prop_assert!(
                        m >= expected && m <= bar(expected),
                        "leave moved {} for a share of {}", m, expected
                    );
                }
                Change::SetN(k) => {
                    n = k;
                    t = t.next(ids(&names), cfg(q, n)).unwrap();
                    // Growing N adds one replica per partition per step (within the bar:
                    // with very few partitions the members given room can already be in
                    // them); shrinking it drops replicas and can need a few moves to stay
                    // balanced (the greedy drop is not an exact matching), never more than
                    // it dropped.
                    let grew = t.effective_n().saturating_sub(before.effective_n());
                    let shrank = before.effective_n().saturating_sub(t.effective_n());
                    let m = moves(&before, &t);
                    if shrank == 0 {
                        let least = q as usize * grew;
                        prop_assert!(m >= least && m <= bar(least), "{} moves for {}", m, least);
                    } else {
                        prop_assert!(m <= q as usize * shrank, "{} moves dropping {}", m, shrank);
                    }
                }
            }
            assert_balanced(&t);
        }
    }
}

#[test]
fn layouts_order_by_version_then_digest() {
    let names: Vec<String> = (0..4).map(|i| format!("node-{i}")).collect();
    let v1 = Layout::initial(ids(&names[..3]), cfg(16, 3)).unwrap();
    let v2a = v1.next(ids(&names), cfg(16, 3)).unwrap();
    let v2b = v1.next(ids(&names[..2]), cfg(16, 3)).unwrap();
    assert_eq!(v2a.version, 2);
    assert!(v2a.is_newer_than(&v1) && !v1.is_newer_than(&v2a));
    assert_ne!(v2a.table.digest(), v2b.table.digest());
    assert!(v2a.is_newer_than(&v2b) != v2b.is_newer_than(&v2a));
    assert!(!v2a.is_newer_than(&v2a.clone()));
}

#[test]
fn layouts_round_trip_through_the_wire_and_the_file() {
    let names: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();
    let l = Layout::initial(ids(&names[..4]), cfg(32, 3))
        .unwrap()
        .next(ids(&names), cfg(32, 3))
        .unwrap();
    assert_eq!(Layout::from_wire(l.to_wire()).unwrap(), l);
    let file = l.encode_file();
    let back = Layout::decode_file(&file).unwrap();
    assert_eq!((back.version, back.table.digest()), (2, l.table.digest()));

    let mut damaged = file.clone();
    damaged[10] ^= 1;
    assert!(matches!(
        Layout::decode_file(&damaged),
        Err(LayoutFileError::Checksum)
    ));
    let mut future = file.clone();
    future[4] = 9;
    assert!(matches!(
        Layout::decode_file(&future),
        Err(LayoutFileError::Format(9))
    ));
    assert!(matches!(
        Layout::decode_file(b"TLAX"),
        Err(LayoutFileError::Magic)
    ));
}

#[test]
fn invalid_wire_layouts_are_refused_with_the_reason() {
    let good = || WireLayout {
        version: 3,
        partitions: 2,
        n: 2,
        members: vec!["a".into(), "b".into(), "c".into()],
        held: vec![0, 1, 1, 2],
    };
    assert!(Layout::from_wire(good()).is_ok());
    let refuse = |w: WireLayout, what: &str| {
        let e = Layout::from_wire(w).expect_err(what).to_string();
        assert!(e.contains(what), "{e} should say {what}");
    };
    refuse(
        WireLayout {
            held: vec![0, 0, 1, 2],
            ..good()
        },
        "twice",
    );
    refuse(
        WireLayout {
            held: vec![0, 7, 1, 2],
            ..good()
        },
        "index 7",
    );
    refuse(
        WireLayout {
            held: vec![0, 1, 1],
            ..good()
        },
        "3 primaries",
    );
    refuse(
        WireLayout {
            members: vec!["b".into(), "a".into(), "c".into()],
            ..good()
        },
        "sorted",
    );
    refuse(
        WireLayout {
            version: 0,
            ..good()
        },
        "version 0",
    );
    refuse(
        WireLayout {
            version: u64::MAX,
            ..good()
        },
        "valid: 1 to",
    );
    refuse(
        WireLayout {
            partitions: 3,
            ..good()
        },
        "power of two",
    );
    refuse(
        WireLayout {
            members: vec![],
            held: vec![],
            ..good()
        },
        "at least one",
    );
}
