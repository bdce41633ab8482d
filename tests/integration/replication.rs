//! Replication with three real nodes on loopback, defaults N=3 R=W=2: writes through one
//! node read back through the others; concurrent blind writes through different nodes come
//! back as siblings and a write with the read's context resolves them; `after` gives read
//! your writes through another node; a replica that missed a write (its peer link cut with
//! `admin fault`) holds it after a quorum read (read repair, seen with `admin object`);
//! with one node SIGKILLed quorum operations succeed; with two down they are `unavailable`
//! with the details while `r=one` reads still answer.

use crate::cluster::{agreed_ring, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum};

fn extra() -> Vec<(&'static str, String)> {
    vec![("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string())]
}

pub(crate) fn admin_json(node: &NodeProc, args: &[&str]) -> Value {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    full.push("--json");
    let (code, out, err) = node.cli(&full);
    assert_eq!(code, 0, "admin {args:?}: {err}");
    serde_json::from_str(&out).expect("admin --json is JSON")
}

/// Three nodes that agree on a three-member ring.
fn three_nodes(dir: &std::path::Path) -> Vec<NodeProc> {
    let n1 = start(dir, "n1", None, &extra());
    let seed = n1.peer.clone();
    let n2 = start(dir, "n2", Some(&seed), &extra());
    let n3 = start(dir, "n3", Some(&seed), &extra());
    let nodes = vec![n1, n2, n3];
    all_alive(&nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]);
    agreed_ring(&nodes.iter().collect::<Vec<_>>(), 3);
    nodes
}

/// Waits until every node sees every id alive (membership only; see `three_nodes`).
fn all_alive(nodes: &[&NodeProc], ids: &[&str]) {
    wait_for(
        "every node sees every member alive",
        Duration::from_secs(20),
        || {
            nodes.iter().all(|n| {
                ids.iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        },
    );
}

fn assert_same_ring_of_three(nodes: &[NodeProc]) {
    let rings: Vec<Value> = nodes.iter().map(|n| admin_json(n, &["ring"])).collect();
    for r in &rings {
        assert_eq!(r["members"].as_array().map(Vec::len), Some(3), "{r}");
        assert_eq!(r["effective_n"], 3, "{r}");
        assert_eq!(r["digest"], rings[0]["digest"], "same placement everywhere");
    }
}

fn server_error(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Server(e)) => (e.code, e.msg),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn three_replicas_quorums_siblings_repair_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    let rt = rt_mt();
    let connect = |n: &NodeProc| {
        let addr = n.client.clone();
        rt.block_on(async move { Client::connect(addr.as_str(), "repl").await.unwrap() })
    };
    let (c1, c2, c3) = (
        Arc::new(connect(&nodes[0])),
        connect(&nodes[1]),
        connect(&nodes[2]),
    );

    // 1. 1,000 puts through n1, read back through n2 and n3.
    rt.block_on(async {
        let puts: Vec<_> = (0..1000)
            .map(|i| {
                let c = c1.clone();
                tokio::spawn(async move {
                    let k = format!("key{i:04}");
                    c.put(k.as_bytes(), k.as_bytes(), None).await
                })
            })
            .collect();
        for p in puts {
            p.await.unwrap().expect("quorum put");
        }
        for c in [&c2, &c3] {
            for i in 0..1000 {
                let k = format!("key{i:04}");
                let got = c.get(k.as_bytes()).await.unwrap();
                assert_eq!(got.values, vec![k.as_bytes().to_vec()], "{k}");
            }
        }
    });

    assert_same_ring_of_three(&nodes);

    // 2. Blind writes through two nodes are siblings; the read's context resolves them.
    rt.block_on(async {
        c1.put(b"sib", b"from-n1", None).await.unwrap();
        c2.put(b"sib", b"from-n2", None).await.unwrap();
        let got = c3.get(b"sib").await.unwrap();
        let mut values = got.values.clone();
        values.sort();
        assert_eq!(values, vec![b"from-n1".to_vec(), b"from-n2".to_vec()]);
        c3.put(b"sib", b"resolved", Some(got.context))
            .await
            .unwrap();
        assert_eq!(
            c1.get(b"sib").await.unwrap().values,
            vec![b"resolved".to_vec()]
        );
    });

    // 3. Read your writes through another node.
    rt.block_on(async {
        let ctx = c1.put(b"ryw", b"mine", None).await.unwrap();
        let got = c2.get_after(b"ryw", None, Some(ctx)).await.unwrap();
        assert_eq!(got.values, vec![b"mine".to_vec()]);
    });

    // 4. n3 misses a write while its link to n1 is cut, then a quorum read repairs it.
    let (code, _, err) = nodes[2].cli(&["admin", "fault", "drop", "n1", "--yes"]);
    assert_eq!(code, 0, "{err}");
    rt.block_on(c1.put(b"rr", b"repaired", None))
        .expect("w=2 from n1 and n2");
    let object = admin_json(&nodes[2], &["object", "rr"]);
    assert_eq!(object["found"], false, "n3 must have missed it: {object}");
    let (code, _, err) = nodes[2].cli(&["admin", "fault", "heal", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let got = rt.block_on(c2.get(b"rr")).unwrap();
    assert_eq!(got.values, vec![b"repaired".to_vec()]);
    wait_for("read repair reaches n3", Duration::from_secs(10), || {
        admin_json(&nodes[2], &["object", "rr"])["siblings"][0]["value"] == "repaired"
    });

    // 5. One node down: quorum puts and gets still succeed.
    nodes[2].kill();
    rt.block_on(async {
        c1.put(b"one-down", b"ok", None)
            .await
            .expect("quorum put, n3 down");
        assert_eq!(
            c2.get(b"one-down").await.unwrap().values,
            vec![b"ok".to_vec()]
        );
    });

    // 6. Two down: once n1 sees them dead, quorum ops are unavailable with each replica's
    //    error and nothing written; r=one reads still answer.
    nodes[1].kill();
    wait_for(
        "n1 marks n2 and n3 dead",
        crate::cluster::dead_bound() * 2,
        || {
            status_of(&nodes[0], "n2").as_deref() == Some("dead")
                && status_of(&nodes[0], "n3").as_deref() == Some("dead")
        },
    );
    rt.block_on(async {
        let (code, msg) = server_error(c1.put(b"two-down", b"no", None).await);
        assert_eq!(code, ErrorCode::Unavailable, "{msg}");
        assert!(
            msg.contains("needed 2") && msg.contains("n2") && msg.contains("n3"),
            "{msg}"
        );
        assert!(msg.contains("nothing was written"), "{msg}");
        let (code, msg) = server_error(c1.get(b"one-down").await);
        assert_eq!(code, ErrorCode::Unavailable, "{msg}");
        assert!(
            msg.contains("needed 2 of 3") && msg.contains("n2:"),
            "{msg}"
        );
        let got = c1.get_with(b"one-down", Some(Quorum::One)).await.unwrap();
        assert_eq!(got.values, vec![b"ok".to_vec()]);
    });
}

/// With `cluster.n = 1` each key has one primary, so a write through the other node must
/// be forwarded to it: the key ends up on its primary only, reads through either node find
/// it, and the forwarding node counts the forwards.
#[test]
fn a_write_through_a_non_primary_is_forwarded_to_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = extra();
    env.push(("TROUPE__CLUSTER__N", "1".to_string()));
    let a = start(dir.path(), "a", None, &env);
    let b = start(dir.path(), "b", Some(&a.peer), &env);
    wait_for(
        "a and b agree on a settled ring of two",
        Duration::from_secs(20),
        || {
            let (ra, rb) = (admin_json(&a, &["ring"]), admin_json(&b, &["ring"]));
            // Settled: while b's partitions move to it, writes also go to their old owner.
            let settled = |r: &Value| r["pending"].as_array().is_some_and(Vec::is_empty);
            ra["members"].as_array().map(Vec::len) == Some(2)
                && ra["digest"] == rb["digest"]
                && settled(&ra)
                && settled(&rb)
        },
    );
    let rt = rt_mt();
    let ca = rt
        .block_on(Client::connect(a.client.as_str(), "fwd"))
        .unwrap();
    let cb = rt
        .block_on(Client::connect(b.client.as_str(), "fwd"))
        .unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("fwd{i}")).collect();
    rt.block_on(async {
        for k in &keys {
            ca.put(k.as_bytes(), k.as_bytes(), None).await.unwrap();
        }
    });
    let mut on_b = 0;
    for k in &keys {
        let primary = admin_json(&a, &["preflist", k])["primaries"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (holder, other) = if primary == "a" { (&a, &b) } else { (&b, &a) };
        on_b += usize::from(primary == "b");
        assert_eq!(
            admin_json(holder, &["object", k])["found"],
            true,
            "{k} on {primary}"
        );
        assert_eq!(
            admin_json(other, &["object", k])["found"],
            false,
            "{k} only on {primary}"
        );
        let got = rt.block_on(cb.get(k.as_bytes())).unwrap();
        assert_eq!(got.values, vec![k.as_bytes().to_vec()]);
    }
    assert!(on_b > 0, "no key placed on b: nothing was forwarded");
    let (_, body) = crate::metrics::http_get(&a.metrics, "/metrics");
    let forwarded = body
        .lines()
        .find_map(|l| l.strip_prefix("troupe_coordinator_forwarded_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("forward counter");
    assert_eq!(forwarded as usize, on_b, "a forwarded exactly b's keys");
}

/// A forwarded write that the first primary cannot take (here: the forwarding node's link
/// to it is cut, so nothing was written there) goes to the next primary that is up.
#[test]
fn a_forward_the_first_primary_cannot_take_goes_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = extra();
    env.push(("TROUPE__CLUSTER__N", "2".to_string()));
    let a = start(dir.path(), "a", None, &env);
    let b = start(dir.path(), "b", Some(&a.peer), &env);
    let c = start(dir.path(), "c", Some(&a.peer), &env);
    all_alive(&[&a, &b, &c], &["a", "b", "c"]);
    // A key whose primaries are b then c, so `a` must forward it, to b first.
    let key = (0..10_000)
        .map(|i| format!("retry{i}"))
        .find(|k| {
            let p = admin_json(&a, &["preflist", k]);
            p["primaries"][0]["id"] == "b" && p["primaries"][1]["id"] == "c"
        })
        .expect("some key has primaries b, c");
    let (code, _, err) = a.cli(&["admin", "fault", "drop", "b", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let rt = rt_mt();
    let ca = rt
        .block_on(Client::connect(a.client.as_str(), "retry"))
        .unwrap();
    rt.block_on(ca.put_with(key.as_bytes(), b"v", None, Some(Quorum::One)))
        .expect("the second primary coordinates");
    assert_eq!(admin_json(&c, &["object", &key])["found"], true);
}
