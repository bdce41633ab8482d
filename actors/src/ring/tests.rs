//! Unit and property tests of the partition table's contract (figures: `measure_tests.rs`).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use troupe_protocol::swim::NodeId;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn table(members: &[String], partitions: u32, n: usize) -> PartitionTable {
    PartitionTable::new(
        members.iter().map(|m| m.as_str()),
        PartitionConfig { partitions, n },
    )
    .expect("valid config and members")
}

/// The contract every table keeps, whatever its inputs.
fn check_invariants(t: &PartitionTable) {
    let s = t.members().len();
    let n = t.effective_n();
    assert_eq!(n, t.n().min(s));
    assert_eq!(t.under_replicated(), t.n() > s);
    let all: BTreeSet<&NodeId> = t.members().iter().collect();
    for p in 0..t.partitions() {
        let prim = t.primaries(p);
        assert_eq!(prim.len(), n, "partition {p}: primaries");
        let distinct: BTreeSet<&NodeId> = prim.iter().collect();
        assert_eq!(
            distinct.len(),
            n,
            "partition {p}: primaries not distinct: {prim:?}"
        );
        assert_eq!(t.fallbacks(p).len(), s - n);
        let list: Vec<&NodeId> = t.preference_list(p).collect();
        let set: BTreeSet<&NodeId> = list.iter().copied().collect();
        assert_eq!(list.len(), s, "partition {p}: preference list length");
        assert_eq!(
            set, all,
            "partition {p}: preference list is not every member once"
        );
    }
    let total: usize = t.shares().values().sum();
    assert_eq!(total, t.partitions() as usize * n);
    let q_n = t.partitions() as usize * n;
    let (lo, hi) = (q_n / s, q_n.div_ceil(s));
    for (m, c) in t.shares() {
        assert!(lo <= c && c <= hi, "{m} holds {c}, outside [{lo}, {hi}]");
    }
}

#[test]
fn config_is_validated_with_clear_errors() {
    for bad in [0u32, 3, 100, 255, 1 << 17] {
        let err = PartitionConfig {
            partitions: bad,
            n: 3,
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err,
            RingError::PartitionsNotPowerOfTwo {
                partitions: bad,
                max: MAX_PARTITIONS
            }
        );
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
    }
    for (good, bits) in [(1u32, 0u32), (2, 1), (256, 8), (MAX_PARTITIONS, 16)] {
        assert_eq!(
            PartitionConfig {
                partitions: good,
                n: 1
            }
            .validate(),
            Ok(bits)
        );
    }
    assert_eq!(
        PartitionConfig {
            partitions: 256,
            n: 0
        }
        .validate(),
        Err(RingError::ZeroReplicas)
    );
    assert_eq!(
        PartitionConfig::default(),
        PartitionConfig {
            partitions: 256,
            n: 3
        }
    );
    let none: [&str; 0] = [];
    assert_eq!(
        PartitionTable::new(none, PartitionConfig::default()).unwrap_err(),
        RingError::NoMembers
    );
    assert_eq!(
        PartitionTable::new(
            ["a"],
            PartitionConfig {
                partitions: 6,
                n: 3
            }
        )
        .unwrap_err(),
        RingError::PartitionsNotPowerOfTwo {
            partitions: 6,
            max: MAX_PARTITIONS
        }
    );
}

#[test]
fn partition_is_the_top_bits_of_the_keys_blake3() {
    // blake3("hello") = ea8f163d b3868292 ...: the contract, pinned.
    assert_eq!(
        blake3::hash(b"hello").to_hex().as_str()[..16],
        *"ea8f163db3868292"
    );
    assert_eq!(partition_for(b"hello", 0), 0);
    assert_eq!(partition_for(b"hello", 1), 1);
    assert_eq!(partition_for(b"hello", 8), 0xea);
    assert_eq!(partition_for(b"hello", 16), 0xea8f);
    let t = table(&names(3), 256, 3);
    assert_eq!(t.partition_of(b"hello"), 0xea);
    // Doubling Q splits partition p into 2p and 2p+1.
    for i in 0..1000u32 {
        let key = i.to_le_bytes();
        for bits in 1..16 {
            assert_eq!(
                partition_for(&key, bits + 1) >> 1,
                partition_for(&key, bits)
            );
        }
    }
}

#[test]
fn keys_spread_uniformly_over_partitions() {
    // Sequential keys (the worst case for byte-based placement) land evenly: 64,000 keys over
    // 64 partitions, each within 10% of 1,000 (binomial sd ~31, so this is > 3 sd).
    let mut counts = [0usize; 64];
    for i in 0..64_000u32 {
        counts[partition_for(format!("user:{i}").as_bytes(), 6) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (900..=1100).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn one_member_holds_everything_and_is_under_replicated() {
    let t = table(&names(1), 256, 3);
    assert_eq!(t.effective_n(), 1);
    assert!(t.under_replicated());
    for p in 0..256 {
        assert_eq!(t.primaries(p), &[NodeId::from("node-0")]);
        assert_eq!(t.fallbacks(p).len(), 0);
    }
    assert_eq!(t.shares().get(&NodeId::from("node-0")), Some(&256));
    check_invariants(&t);

    let two = table(&names(2), 256, 3);
    assert_eq!(two.effective_n(), 2);
    assert!(two.under_replicated());
    check_invariants(&two);

    let three = table(&names(3), 256, 3);
    assert_eq!(three.effective_n(), 3);
    assert!(!three.under_replicated());
    check_invariants(&three);
}

#[test]
fn out_of_range_partitions_are_empty() {
    let t = table(&names(5), 16, 3);
    assert!(t.primaries(16).is_empty());
    assert_eq!(t.fallbacks(16).len(), 0);
    assert_eq!(t.preference_list(u32::MAX).count(), 0);
    assert!(!t.is_primary(16, &NodeId::from("node-0")));
}

#[test]
fn same_members_in_any_order_give_the_same_table() {
    let members = names(12);
    let a = table(&members, 64, 3);
    let mut shuffled: Vec<String> = members.iter().rev().cloned().collect();
    shuffled.extend(members.iter().take(4).cloned()); // duplicates are ignored
    let b = table(&shuffled, 64, 3);
    assert_eq!(a.digest(), b.digest());
    for p in 0..64 {
        assert_eq!(a.primaries(p), b.primaries(p));
        assert!(a.preference_list(p).eq(b.preference_list(p)));
    }
    assert_eq!(a.replica_moves(&b), 0);
}

#[test]
fn digest_changes_with_members_partitions_and_n() {
    let base = table(&names(5), 64, 3);
    assert_eq!(base.digest_hex().len(), 64);
    assert_eq!(base.digest_hex(), table(&names(5), 64, 3).digest_hex());
    assert_ne!(base.digest(), table(&names(6), 64, 3).digest());
    assert_ne!(base.digest(), table(&names(5), 128, 3).digest());
    assert_ne!(base.digest(), table(&names(5), 64, 2).digest());
    // Same effective table (2 members, n 3 or 4), different configured n: flagged.
    assert_ne!(
        table(&names(2), 64, 3).digest(),
        table(&names(2), 64, 4).digest()
    );
}

#[test]
fn placement_rule_is_pinned() {
    // The placement is part of the cluster's contract: nodes of different versions must
    // compute the same table. If this changes, the change needs a cluster-format version.
    let t = table(
        &["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
        8,
        2,
    );
    let lists: Vec<String> = (0..8)
        .map(|p| {
            t.preference_list(p)
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .collect();
    assert_eq!(lists, PINNED_LISTS, "placement changed");
    assert_eq!(t.digest_hex(), PINNED_DIGEST);
}
const PINNED_LISTS: [&str; 8] = [
    "daecb", "ecdba", "dcbae", "dbaec", "dbaec", "aedcb", "ecbda", "abdce",
];
const PINNED_DIGEST: &str = "e1f44eaee51723df3d3ad0d1a64f7638bf13ece04c4283e20cc21c669ca3480d";

#[test]
fn replica_moves_counts_new_replicas() {
    let a = table(&names(4), 32, 3);
    let b = table(&names(5), 32, 3);
    let moved = a.replica_moves(&b);
    let gained = b.shares()[&NodeId::from("node-4")];
    assert!(moved >= gained, "{moved} < {gained}");
    assert_eq!(a.replica_moves(&table(&names(4), 64, 3)), 64 * 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any member set, Q and N: the invariants hold, and a shuffled copy of the input gives
    /// the same table.
    #[test]
    fn invariants_hold_for_any_members(
        raw in proptest::collection::vec("[a-z0-9]{1,8}", 1..40),
        bits in 0u32..7,
        n in 1usize..6,
        rotate in 0usize..40,
    ) {
        let t = table(&raw, 1 << bits, n);
        check_invariants(&t);
        let mut other = raw.clone();
        let len = other.len();
        other.rotate_left(rotate % len);
        other.reverse();
        prop_assert_eq!(t.digest(), table(&other, 1 << bits, n).digest());
    }
}
