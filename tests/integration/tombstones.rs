//! Tombstone GC with three real nodes (grace 2 s): delete markers are dropped only once
//! every primary holds them, never while a replica that missed the delete is down, and a
//! deleted value never comes back, at any r, before or after each node restarts.

use crate::cluster::{agreed_ring, dead_bound, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use crate::replication::admin_json;
use std::time::Duration;
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum};

const KEYS: usize = 300;
const ALL_RS: [Quorum; 3] = [Quorum::One, Quorum::Quorum, Quorum::All];

fn env() -> Vec<(&'static str, String)> {
    vec![
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

#[test]
fn markers_outlive_a_down_replica_and_then_go_without_resurrecting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, &env());
    let n2 = start(dir.path(), "n2", Some(&n1.peer), &env());
    let mut n3 = start(dir.path(), "n3", Some(&n1.peer), &env());
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

    // n3 is back with the old values: rounds run, but n3 does not hold the markers, so
    // every round keeps them.
    n3.restart();
    wait_for(
        "a round keeps markers n3 lacks",
        Duration::from_secs(30),
        || stat(&n1, "kept") + stat(&n2, "kept") + stat(&n3, "kept") > 0,
    );
    assert_eq!(stat(&n1, "dropped") + stat(&n2, "dropped"), 0);
    assert!(found(&n3, &keys[0]), "n3 still holds the old value");

    // A read at r=all reads as deleted and repairs n3 with the markers (r=one could
    // still read n3's old value here: that is what the repair is for); then GC drops
    // them everywhere.
    all_deleted(&[&n1], &keys, &[Quorum::All]);
    let nodes = [&n1, &n2, &n3];
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
