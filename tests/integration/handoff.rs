//! Hinted handoff with real nodes. Three nodes (N=3, W=2): a SIGKILLed node misses 2,000
//! writes, comes back, and gets every one from the hints the others kept (one of them was
//! itself SIGKILLed and restarted meanwhile), so that it alone then serves them all with
//! `r=one`. With a primary down under a write load above a small `handoff.max_hint_bytes`,
//! the hint files stay within the bound and the dropped hints are counted. Four nodes: a
//! fallback's hint counts toward `w=all` while a primary is down.
//!
//! Every wait is on an observable event (membership status, `admin hints` counts), never
//! on a fixed sleep.

use crate::cluster::{agreed_ring, dead_bound, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::{Client, Quorum};

fn hints_json(node: &NodeProc) -> Value {
    let (code, out, err) = node.cli(&["admin", "hints", "--json"]);
    assert_eq!(code, 0, "admin hints: {err}");
    serde_json::from_str(&out).expect("admin hints --json is JSON")
}

fn three_nodes(dir: &std::path::Path, extra: &[(&'static str, String)]) -> Vec<NodeProc> {
    let n1 = start(dir, "n1", None, extra);
    let seed = n1.peer.clone();
    let n2 = start(dir, "n2", Some(&seed), extra);
    let n3 = start(dir, "n3", Some(&seed), extra);
    let nodes = vec![n1, n2, n3];
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "every node sees every member alive",
        Duration::from_secs(20),
        || {
            refs.iter().all(|n| {
                ["n1", "n2", "n3"]
                    .iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        },
    );
    agreed_ring(&refs, 3);
    nodes
}

/// SIGKILLs `nodes[2]` and waits until the other two see it dead (so that writes made
/// from now on are hinted at once rather than after a timeout).
fn kill_third(nodes: &mut [NodeProc]) {
    nodes[2].kill();
    wait_for("n1 and n2 see n3 dead", dead_bound() * 2, || {
        nodes[..2]
            .iter()
            .all(|n| status_of(n, "n3").as_deref() == Some("dead"))
    });
}

/// Writes `count` keys `{prefix}{i}` with the default w (quorum), alternately through the
/// two clients, `concurrency` at a time; every write must be acknowledged.
fn write_keys(
    rt: &tokio::runtime::Runtime,
    clients: &[Arc<Client>],
    prefix: &str,
    count: usize,
    value_len: usize,
) {
    rt.block_on(async {
        for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
            let puts: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let c = clients[i % clients.len()].clone();
                    let k = format!("{prefix}{i:05}");
                    let mut v = k.clone().into_bytes();
                    v.resize(value_len.max(v.len()), b'.');
                    tokio::spawn(async move { c.put(k.as_bytes(), &v, None).await })
                })
                .collect();
            for p in puts {
                p.await
                    .unwrap()
                    .expect("w=quorum put with one of three down");
            }
        }
    });
}

#[test]
fn a_restarted_node_gets_its_missed_writes_from_hints() {
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string())];
    let mut nodes = three_nodes(dir.path(), &extra);
    let rt = rt_mt();
    let connect = |n: &NodeProc| {
        let addr = n.client.clone();
        Arc::new(rt.block_on(async move { Client::connect(addr.as_str(), "hints").await.unwrap() }))
    };
    let clients = [connect(&nodes[0]), connect(&nodes[1])];

    kill_third(&mut nodes);
    const KEYS: usize = 2000;
    write_keys(&rt, &clients, "k", KEYS, 16);

    // Every write's coordinator keeps one hint for n3 (three nodes: no fallback is left).
    wait_for(
        "n1 and n2 stored a hint per write",
        Duration::from_secs(20),
        || {
            let stored: u64 = nodes[..2]
                .iter()
                .map(|n| hints_json(n)["stored"].as_u64().unwrap_or(0))
                .sum();
            stored >= KEYS as u64
        },
    );
    let before = hints_json(&nodes[0]);
    assert_eq!(before["primaries"][0]["primary"], "n3", "{before}");
    assert_eq!(before["primaries"][0]["alive"], false, "{before}");

    // A hint holder killed and restarted keeps its hints (they are on disk, fsynced
    // before each was acknowledged); n3 is still down, so nothing is delivered meanwhile.
    let held = before["count"].as_u64().expect("count");
    assert!(held > 0, "{before}");
    nodes[0].kill();
    nodes[0].restart();
    let after = hints_json(&nodes[0]);
    assert_eq!(
        after["count"].as_u64(),
        Some(held),
        "n1's hints after a SIGKILL: {after}"
    );

    nodes[2].restart();
    let took = wait_for(
        "every hint is handed off to n3",
        Duration::from_secs(40),
        || {
            nodes[..2]
                .iter()
                .all(|n| hints_json(n)["count"].as_u64() == Some(0))
        },
    );
    eprintln!("hand-off of {KEYS} hints took {took:?} after the restart");
    let delivered: u64 = nodes[..2]
        .iter()
        .map(|n| hints_json(n)["delivered"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(delivered, KEYS as u64);
    let (_, metrics, _) = nodes[0].cli(&["admin", "stats", "--json"]);
    assert!(
        metrics.contains("\"hints\""),
        "admin stats carries hints: {metrics}"
    );

    // n3 alone: every key is there, read with r=one.
    nodes[0].kill();
    nodes[1].kill();
    let c3 = connect(&nodes[2]);
    let missing: Vec<String> = rt.block_on(async {
        let mut missing = Vec::new();
        for i in 0..KEYS {
            let k = format!("k{i:05}");
            let got = c3.get_with(k.as_bytes(), Some(Quorum::One)).await.unwrap();
            if got.values.is_empty() {
                missing.push(k);
            }
        }
        missing
    });
    assert!(
        missing.is_empty(),
        "n3 lacks {} of {KEYS} keys, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn hints_for_a_down_primary_stay_within_max_hint_bytes() {
    let dir = tempfile::tempdir().unwrap();
    const MAX: u64 = 64 * 1024;
    let extra = vec![
        ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string()),
        ("TROUPE__HANDOFF__MAX_HINT_BYTES", MAX.to_string()),
    ];
    let mut nodes = three_nodes(dir.path(), &extra);
    let rt = rt_mt();
    let addr = nodes[0].client.clone();
    let c1 = Arc::new(
        rt.block_on(async move { Client::connect(addr.as_str(), "hints").await.unwrap() }),
    );

    kill_third(&mut nodes);
    // About 1,000 hints of ~300 bytes: four to five times the bound.
    const KEYS: usize = 1000;
    write_keys(&rt, &[c1], "b", KEYS, 200);

    let mut last = Value::Null;
    wait_for(
        "n1 accounted for a hint per write",
        Duration::from_secs(20),
        || {
            last = hints_json(&nodes[0]);
            last["stored"].as_u64().unwrap_or(0) + last["dropped_full"].as_u64().unwrap_or(0)
                >= KEYS as u64
        },
    );
    let dropped = last["dropped_full"].as_u64().unwrap_or(0);
    assert!(
        dropped > 0,
        "hints past the bound are dropped and counted: {last}"
    );
    let on_disk = dir_bytes(&nodes[0].data_dir.join("hints"));
    assert!(
        on_disk <= MAX,
        "hint files hold {on_disk} bytes, bound {MAX}: {last}"
    );
    assert!(
        last["primaries"][0]["disk_bytes"]
            .as_u64()
            .unwrap_or(u64::MAX)
            <= MAX,
        "{last}"
    );
    let metrics = reqwest_metrics(&nodes[0]);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("troupe_hints_dropped_total{reason=\"full\"}"))
        .unwrap_or_else(|| panic!("no dropped counter in /metrics:\n{metrics}"));
    assert_eq!(
        line.rsplit(' ').next(),
        Some(dropped.to_string().as_str()),
        "{line}"
    );
}

/// The node's /metrics text (a plain HTTP/1.0 GET).
fn reqwest_metrics(node: &NodeProc) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&node.metrics).expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Four nodes, N=3, one down: a write with `w=all` still succeeds, because the down
/// primary's copy goes to the partition's fallback as a hint and that acknowledgement
/// counts (sloppy quorum). Once the node is back the fallbacks hand the hints off and it
/// holds its keys.
#[test]
fn with_a_fallback_a_hint_counts_toward_w() {
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string())];
    let n1 = start(dir.path(), "n1", None, &extra);
    let seed = n1.peer.clone();
    let mut nodes = vec![n1];
    for id in ["n2", "n3", "n4"] {
        nodes.push(start(dir.path(), id, Some(&seed), &extra));
    }
    let ids = ["n1", "n2", "n3", "n4"];
    {
        let refs: Vec<&NodeProc> = nodes.iter().collect();
        wait_for(
            "every node sees every member alive",
            Duration::from_secs(30),
            || {
                refs.iter().all(|n| {
                    ids.iter()
                        .all(|id| status_of(n, id).as_deref() == Some("alive"))
                })
            },
        );
        agreed_ring(&refs, 4);
    }
    nodes[3].kill();
    wait_for("the others see n4 dead", dead_bound() * 2, || {
        nodes[..3]
            .iter()
            .all(|n| status_of(n, "n4").as_deref() == Some("dead"))
    });
    let rt = rt_mt();
    let addr = nodes[0].client.clone();
    let c1 = rt.block_on(async move { Client::connect(addr.as_str(), "hints").await.unwrap() });
    const KEYS: usize = 100;
    rt.block_on(async {
        for i in 0..KEYS {
            let k = format!("f{i:03}");
            c1.put_with(k.as_bytes(), b"v", None, Some(Quorum::All))
                .await
                .unwrap_or_else(|e| panic!("w=all with n4 down, {k}: {e:?}"));
        }
    });
    let pending = |n: &NodeProc| hints_json(n)["count"].as_u64().unwrap_or(0);
    let held: u64 = nodes[..3].iter().map(pending).sum();
    assert!(held > 0, "some keys have n4 as a primary");

    nodes[3].restart();
    wait_for(
        "the fallbacks hand every hint to n4",
        Duration::from_secs(40),
        || nodes[..3].iter().all(|n| pending(n) == 0),
    );
    // Every key n4 is a primary of is on n4 now.
    let mut checked = 0;
    for i in 0..KEYS {
        let k = format!("f{i:03}");
        let (code, out, err) = nodes[3].cli(&["admin", "preflist", &k, "--json"]);
        assert_eq!(code, 0, "{err}");
        let pl: Value = serde_json::from_str(&out).unwrap();
        let primary = pl["primaries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "n4");
        if !primary {
            continue;
        }
        let (code, out, err) = nodes[3].cli(&["admin", "object", &k, "--json"]);
        assert_eq!(code, 0, "{err}");
        let obj: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(obj["found"], true, "{k} on n4: {obj}");
        checked += 1;
        if checked == 10 {
            break;
        }
    }
    assert!(checked > 0, "n4 is a primary of some of {KEYS} keys");
}
