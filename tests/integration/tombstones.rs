//! Tombstone GC with three real nodes (grace 2 s): delete markers are dropped only once
//! every primary holds them, never while a replica that missed the delete is down, and a
//! deleted value never comes back, at any r, before or after each node restarts. The
//! replica that missed the deletes gets them from hinted handoff, or, with hints disabled
//! (a replica away longer than the hint bound), from anti-entropy.

use crate::cluster::{agreed_ring, dead_bound, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use crate::replication::admin_json;
use std::time::Duration;
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum};

const KEYS: usize = 500;
const ALL_RS: [Quorum; 3] = [Quorum::One, Quorum::Quorum, Quorum::All];

fn env(hints: bool) -> Vec<(&'static str, String)> {
    vec![
        ("TROUPE__HANDOFF__ENABLED", hints.to_string()),
        ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string()),
        ("TROUPE__CLUSTER__TOMBSTONE_GRACE", "2s".to_string()),
        (
            "TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL",
            "200ms".to_string(),
        ),
    ]
}

fn stat(node: &NodeProc, name: &str) -> u64 {
    admin_json(node, &["stats"])["tombstones"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("admin stats has tombstones.{name}"))
}

fn found(node: &NodeProc, key: &str) -> bool {
    admin_json(node, &["object", key])["found"] == true
}

/// Every key reads as not found through every node at each of `rs`.
fn all_deleted(nodes: &[&NodeProc], keys: &[String], rs: &[Quorum]) {
    let rt = rt_mt();
    for n in nodes {
        let c = rt
            .block_on(Client::connect(n.client.as_str(), "tomb"))
            .unwrap();
        for &r in rs {
            for k in keys {
                // A peer link that is still reconnecting after a restart may fail a read
                // as unavailable (nothing is read then); retry for a while.
                let mut got = rt.block_on(c.get_with(k.as_bytes(), Some(r)));
                for _ in 0..100 {
                    match &got {
                        Err(ClientError::Server(e)) if e.code == ErrorCode::Unavailable => {
                            std::thread::sleep(Duration::from_millis(100));
                            got = rt.block_on(c.get_with(k.as_bytes(), Some(r)));
                        }
                        _ => break,
                    }
                }
                let got =
                    got.unwrap_or_else(|e| panic!("get {k} at {r:?} through {}: {e:?}", n.node_id));
                assert!(
                    got.values.is_empty(),
                    "{k} came back through {} at {r:?}: {:?}",
                    n.node_id,
                    got.values
                );
            }
        }
    }
}

/// How the replica that missed the deletes catches up.
#[derive(Clone, Copy, PartialEq)]
enum CatchUp {
    Hints,
    AntiEntropy,
}

fn markers_outlive_a_down_replica_and_then_go(how: CatchUp) {
    let dir = tempfile::tempdir().unwrap();
    let env = env(how == CatchUp::Hints);
    let n1 = start(dir.path(), "n1", None, &env);
    let n2 = start(dir.path(), "n2", Some(&n1.peer), &env);
    let mut n3 = start(dir.path(), "n3", Some(&n1.peer), &env);
    agreed_ring(&[&n1, &n2, &n3], 3);
    let rt = rt_mt();
    let c1 = rt
        .block_on(Client::connect(n1.client.as_str(), "tomb"))
        .unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("t{i:04}")).collect();
    let contexts: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            rt.block_on(c1.put_with(k.as_bytes(), b"old", None, Some(Quorum::All)))
                .expect("put")
        })
        .collect();

    // n3 misses every delete.
    n3.kill();
    wait_for("n1 and n2 see n3 dead", dead_bound() * 2, || {
        [&n1, &n2]
            .iter()
            .all(|n| status_of(n, "n3").as_deref() == Some("dead"))
    });
    for (k, ctx) in keys.iter().zip(&contexts) {
        rt.block_on(c1.delete_with(k.as_bytes(), Some(ctx.clone()), Some(Quorum::Quorum)))
            .expect("delete");
    }
    // Past the grace, rounds are blocked by the dead member: nothing is dropped.
    wait_for("a GC round waits for n3", Duration::from_secs(30), || {
        stat(&n1, "rounds_blocked") + stat(&n2, "rounds_blocked") > 0
    });
    assert_eq!(stat(&n1, "dropped") + stat(&n2, "dropped"), 0);
    assert!(found(&n1, &keys[0]) && found(&n2, &keys[0]));

    n3.restart();
    let nodes = [&n1, &n2, &n3];
    match how {
        CatchUp::Hints => {
            // The deletes' hints reach n3 (until then, GC keeps the markers: a hint for
            // each key is pending).
            wait_for("every hint delivered", Duration::from_secs(60), || {
                nodes
                    .iter()
                    .all(|n| hints_json(n)["count"].as_u64() == Some(0))
            });
        }
        CatchUp::AntiEntropy => {
            // No hints: n3 still holds the old values, so every round keeps the markers.
            wait_for(
                "a round keeps markers n3 lacks",
                Duration::from_secs(30),
                || nodes.iter().map(|n| stat(n, "kept")).sum::<u64>() > 0,
            );
            assert_eq!(stat(&n1, "dropped") + stat(&n2, "dropped"), 0);
            assert!(found(&n3, &keys[0]), "n3 still holds the old value");
            // Anti-entropy brings n3 the deletes, not the old values to the others.
            repair(&n1);
        }
    }
    wait_for(
        "every replica dropped every marker",
        Duration::from_secs(60),
        || nodes.iter().map(|n| stat(n, "dropped")).sum::<u64>() >= (KEYS * 3) as u64,
    );
    for k in keys.iter().step_by(29) {
        for n in nodes {
            assert!(!found(n, k), "{k} still stored on {}", n.node_id);
        }
    }
    all_deleted(&nodes, &keys, &ALL_RS);
    drop(c1);

    // Each node restarts in turn: still nothing comes back.
    let mut procs = [n1, n2, n3];
    for i in 0..3 {
        procs[i].kill();
        procs[i].restart();
        let refs: Vec<&NodeProc> = procs.iter().collect();
        agreed_ring(&refs, 3);
        wait_for("all alive again", dead_bound() * 2, || {
            refs.iter().all(|n| {
                ["n1", "n2", "n3"]
                    .iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        });
        all_deleted(&refs, &keys, &ALL_RS);
    }
}

#[test]
fn markers_outlive_a_down_replica_then_go_once_hints_reach_it() {
    markers_outlive_a_down_replica_and_then_go(CatchUp::Hints);
}

#[test]
fn markers_reach_a_replica_without_hints_by_anti_entropy_and_then_go() {
    markers_outlive_a_down_replica_and_then_go(CatchUp::AntiEntropy);
}

fn hints_json(node: &NodeProc) -> serde_json::Value {
    admin_json(node, &["hints"])
}

/// Runs `admin repair` on `node` until a round ends with every exchange done and no error.
fn repair(node: &NodeProc) {
    wait_for(
        "a clean anti-entropy round",
        Duration::from_secs(40),
        || {
            let (code, out, _) = node.cli(&["admin", "repair", "--json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            code == 0
                && v["running"] == false
                && v["errors"].as_array().is_some_and(Vec::is_empty)
                && v["exchanges_done"] == v["exchanges"]
        },
    );
}
