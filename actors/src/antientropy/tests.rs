//! The exchange against a model: two maps of key -> hash with random differences; the walk
//! must find exactly the differing keys, and its bytes must grow with the difference.

use super::exchange::{answer, DiffKey, Exchange, Step};
use super::tree::{Trees, DEFAULT_SHAPE};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use troupe_protocol::antientropy::{AeMsg, TreeShape};

fn build(shape: TreeShape, q: u32, m: &BTreeMap<Vec<u8>, u64>) -> Trees {
    let mut t = Trees::new(shape, q).expect("valid shape");
    for (k, h) in m {
        t.set(k, Some(*h));
    }
    t
}

/// Runs a whole exchange of `a` (initiator) with `b` over `partitions`; returns the keys it
/// found differing, the bytes both ways (encoded frames) and the number of requests.
fn run(a: &Trees, b: &Trees, partitions: Vec<u32>) -> (Vec<DiffKey>, usize, usize) {
    let mut ex = Exchange::new(a.shape(), partitions);
    let (mut found, mut bytes, mut asks) = (Vec::new(), 0, 0);
    loop {
        match ex.next_step() {
            Step::Ask(req) => {
                asks += 1;
                let resp = answer(b, &req).expect("tree request");
                bytes += AeMsg::Req { id: 1, req }.encode().len();
                bytes += AeMsg::Resp {
                    id: 1,
                    resp: resp.clone(),
                }
                .encode()
                .len();
                ex.on_answer(a, resp).expect("answers match");
            }
            Step::Repair(keys) => found.extend(keys),
            Step::Done => return (found, bytes, asks),
        }
        assert!(asks < 1_000_000, "the exchange does not end");
    }
}

/// The model's answer: every key whose hash differs or that one side lacks.
fn model_diff(a: &BTreeMap<Vec<u8>, u64>, b: &BTreeMap<Vec<u8>, u64>) -> BTreeSet<Vec<u8>> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn keys(n: usize) -> BTreeMap<Vec<u8>, u64> {
    (0..n as u64)
        .map(|i| {
            (
                format!("key-{i:08}").into_bytes(),
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )
        })
        .collect()
}

/// `a` with every `every`th key changed, removed or added (a third each).
fn diverge(a: &BTreeMap<Vec<u8>, u64>, every: usize) -> BTreeMap<Vec<u8>, u64> {
    let mut b = a.clone();
    for (i, k) in a.keys().enumerate().filter(|(i, _)| i % every == 0) {
        match (i / every) % 3 {
            0 => *b.get_mut(k).expect("present") ^= 1,
            1 => {
                b.remove(k);
            }
            _ => {
                b.insert(format!("new-{i}").into_bytes(), i as u64);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The exchange finds exactly the differing keys, with each side's hash, for any shape.
    #[test]
    fn the_exchange_finds_exactly_the_differing_keys(
        base in prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), any::<u64>(), 0..300),
        edits in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..6), prop::option::of(any::<u64>()), any::<bool>()), 0..40),
        fanout_bits in 1u32..4,
        depth in 0u32..3,
        qbits in 0u32..5,
    ) {
        let shape = TreeShape { fanout: 1 << fanout_bits, depth };
        let q = 1 << qbits;
        let mut a = base.clone();
        let mut b = base;
        for (k, h, on_a) in edits {
            let side = if on_a { &mut a } else { &mut b };
            match h {
                Some(h) => side.insert(k, h),
                None => side.remove(&k),
            };
        }
        let (ta, tb) = (build(shape, q, &a), build(shape, q, &b));
        let (found, _, _) = run(&ta, &tb, (0..q).collect());
        let got: BTreeSet<Vec<u8>> = found.iter().map(|d| d.key.clone()).collect();
        prop_assert_eq!(got.len(), found.len(), "a key reported twice");
        prop_assert_eq!(&got, &model_diff(&a, &b));
        for d in found {
            prop_assert_eq!(d.local, a.get(&d.key).copied());
            prop_assert_eq!(d.remote, b.get(&d.key).copied());
        }
    }
}

/// Only the partitions named are compared: a difference elsewhere is not found.
#[test]
fn an_exchange_covers_only_its_partitions() {
    let a = keys(2000);
    let b = diverge(&a, 10);
    let (ta, tb) = (build(DEFAULT_SHAPE, 16, &a), build(DEFAULT_SHAPE, 16, &b));
    let (found, _, _) = run(&ta, &tb, vec![3]);
    let want: BTreeSet<Vec<u8>> = model_diff(&a, &b)
        .into_iter()
        .filter(|k| ta.place(k).0 == 3)
        .collect();
    assert!(!want.is_empty());
    let got: BTreeSet<Vec<u8>> = found.into_iter().map(|d| d.key).collect();
    assert_eq!(got, want);
}

/// The cost bound of the issue, at the default shape and 256 partitions: between identical
/// replicas of 100,000 keys one request of roots and its answer, at most 12 bytes a
/// partition (a root is a 9-byte MessagePack u64, a partition id 1-3 bytes) plus 200 of
/// framing; with 0.1% and 1% of the keys differing, at most 700 bytes per differing key
/// (the 32 child hashes under each differing node on the path, and the key listing of its
/// segment), a small fraction of the 2.2 MB a full key listing would cost.
#[test]
fn anti_entropy_cost_grows_with_the_difference_not_the_data() {
    let q = 256;
    let a = keys(100_000);
    let ta = build(DEFAULT_SHAPE, q, &a);
    let (found, bytes, asks) = run(&ta, &ta.clone(), (0..q).collect());
    println!("identical: {bytes} bytes in {asks} request(s)");
    assert!(found.is_empty());
    assert_eq!(asks, 1, "only the roots are asked");
    assert!(
        bytes <= 12 * q as usize + 200,
        "{bytes} bytes for identical replicas"
    );

    let full_listing: usize = a.keys().map(|k| k.len() + 10).sum();
    for every in [1000, 100] {
        let b = diverge(&a, every);
        let tb = build(DEFAULT_SHAPE, q, &b);
        let (found, bytes, asks) = run(&ta, &tb, (0..q).collect());
        let differing = model_diff(&a, &b).len();
        println!(
            "1 in {every} differing ({differing} keys): {bytes} bytes in {asks} requests, {} per differing key",
            bytes / differing
        );
        assert_eq!(found.len(), differing);
        assert!(
            bytes <= 700 * differing,
            "{bytes} bytes for {differing} differing keys"
        );
        assert!(
            bytes < full_listing / 3,
            "{bytes} vs a listing of {full_listing}"
        );
    }
}

/// docs/BENCHMARKS.md, "Anti-entropy bytes per round": the bytes of one exchange between two
/// replicas of 100k and 1M keys at 0%, 0.1% and 1% divergence, from the pure core (the
/// frames the actor sends, encoded; no objects). Run:
/// `cargo test -p troupe-actors antientropy::tests::bytes_per_round -- --ignored --nocapture`
#[test]
#[ignore = "a measurement for docs/BENCHMARKS.md (a few seconds at 1M keys)"]
fn bytes_per_round() {
    let q = 256;
    println!("| keys | divergence | differing keys | requests | bytes | bytes per differing key |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [100_000, 1_000_000] {
        let a = keys(n);
        let ta = build(DEFAULT_SHAPE, q, &a);
        for (label, every) in [("0%", None), ("0.1%", Some(1000)), ("1%", Some(100))] {
            let b = every.map_or_else(|| a.clone(), |e| diverge(&a, e));
            let tb = build(DEFAULT_SHAPE, q, &b);
            let (found, bytes, asks) = run(&ta, &tb, (0..q).collect());
            let per = if found.is_empty() {
                "-".to_string()
            } else {
                (bytes / found.len()).to_string()
            };
            println!(
                "| {n} | {label} | {} | {asks} | {bytes} | {per} |",
                found.len()
            );
        }
    }
}
