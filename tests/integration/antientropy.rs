//! Anti-entropy with three real nodes: a replica whose data directory is wiped (same node
//! id, new actor id) gets every key back from anti-entropy alone, and no write made
//! meanwhile is lost.
//!
//! 1. Three nodes (N=3, W=quorum); 400 keys written through n1.
//! 2. n3 is killed and its data directory removed; 100 more keys are written (n3 misses
//!    them as well as everything before).
//! 3. n3 restarts empty (same id, new actor id, rejoins through its seed); a writer keeps
//!    writing through n1 from now on, remembering what was acknowledged.
//! 4. `troupe admin repair --json` on n3 (retried until n3's trees are built and the round
//!    ends without errors), then once more after the writer stopped, so writes racing with
//!    the restart are covered too.
//! 5. n2 restarts (its trees rebuilt from its data) and finds no difference with the others.
//! 6. n1 and n2 are stopped; n3 alone serves every acknowledged key with `r=one`, with the
//!    value written. Its /metrics and `admin stats` show the repair.
//!
//! No read repair can help: nothing is read from n3 before step 6, and in step 6 it is alone.

use crate::cluster::{agreed_ring, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use troupe_protocol::{Client, Quorum};

fn extra() -> Vec<(&'static str, String)> {
    vec![
        ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string()),
        ("TROUPE__CLUSTER__PARTITIONS", "64".to_string()),
        // Rounds only when asked: the test triggers them with `admin repair`.
        ("TROUPE__ANTI_ENTROPY__INTERVAL", "1h".to_string()),
        // A frame lost to a peer's restart costs one request timeout.
        ("TROUPE__ANTI_ENTROPY__REQUEST_TIMEOUT", "3s".to_string()),
        // Anti-entropy alone: no hints to hand the missed writes over.
        ("TROUPE__HANDOFF__ENABLED", "false".to_string()),
    ]
}

fn all_alive(nodes: &[&NodeProc], ids: &[&str]) {
    wait_for(
        "every node sees every member alive",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                ids.iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        },
    );
}

/// Runs `admin repair` on `node` until a round ends with every exchange done and no error
/// (the node refuses while its trees are being built; a peer may refuse likewise).
fn repair(node: &NodeProc) -> Value {
    let mut last = Value::Null;
    wait_for(
        "a clean anti-entropy round",
        Duration::from_secs(40),
        || {
            let (code, out, err) = node.cli(&["admin", "repair", "--json"]);
            last = serde_json::from_str(&out).unwrap_or(Value::Null);
            if code != 0 {
                eprintln!("admin repair: {err} {out}");
                return false;
            }
            last["running"] == false
                && last["errors"].as_array().is_some_and(Vec::is_empty)
                && last["exchanges_done"] == last["exchanges"]
        },
    );
    last
}

#[test]
fn a_wiped_replica_gets_every_key_back_from_anti_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, &extra());
    let seed = n1.peer.clone();
    let n2 = start(dir.path(), "n2", Some(&seed), &extra());
    let mut n3 = start(dir.path(), "n3", Some(&seed), &extra());
    all_alive(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    agreed_ring(&[&n1, &n2, &n3], 3);

    let rt = rt_mt();
    let c1 =
        Arc::new(rt.block_on(async { Client::connect(n1.client.as_str(), "ae").await.unwrap() }));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let write = |keys: Vec<String>| {
        rt.block_on(async {
            let puts: Vec<_> = keys
                .into_iter()
                .map(|k| {
                    let c = c1.clone();
                    tokio::spawn(
                        async move { c.put(k.as_bytes(), k.as_bytes(), None).await.map(|_| k) },
                    )
                })
                .collect();
            for p in puts {
                let k = p.await.unwrap().expect("quorum put");
                acked.lock().unwrap().push(k);
            }
        })
    };

    // 1. Keys on all three.
    write((0..400).map(|i| format!("before-{i:04}")).collect());

    // 2. n3 is wiped; more keys while it is away.
    n3.kill();
    std::fs::remove_dir_all(&n3.data_dir).expect("wiping n3's data directory");
    write((0..100).map(|i| format!("down-{i:04}")).collect());

    // 3. n3 comes back empty; a writer keeps going.
    n3.restart();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, acked, stop) = (c1.clone(), acked.clone(), stop.clone());
        rt.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("during-{i:05}");
                // A write may fail while n3 rejoins (timeout); only acknowledged ones count.
                if c.put(k.as_bytes(), k.as_bytes(), None).await.is_ok() {
                    acked.lock().unwrap().push(k);
                }
                i += 1;
            }
        })
    };
    all_alive(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    agreed_ring(&[&n1, &n2, &n3], 3);

    // 4. Repair from n3, during the writes and after them.
    let first = repair(&n3);
    eprintln!("first round: {first}");
    // At least the 400 keys written before the wipe: the 100 written while n3 was away may
    // reach it anyway, from frames its peers still had queued when it came back.
    assert!(
        first["keys_repaired"].as_u64().unwrap_or(0) >= 400,
        "the wiped node fetched what it lacked: {first}"
    );
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).unwrap();
    let second = repair(&n3);
    eprintln!("second round: {second}");
    let written = acked.lock().unwrap().clone();
    assert!(written.len() > 500, "the writer wrote during the repair");

    let (_, metrics) = {
        let (code, out, err) = n3.cli(&["admin", "stats", "--json"]);
        assert_eq!(code, 0, "{err}");
        (code, serde_json::from_str::<Value>(&out).unwrap())
    };
    assert!(
        metrics["anti_entropy"]["keys_repaired"]
            .as_u64()
            .unwrap_or(0)
            >= 400,
        "admin stats: {}",
        metrics["anti_entropy"]
    );
    let scrape = rt.block_on(async {
        let body = reqwest_lite(&n3.metrics).await;
        body
    });
    assert!(
        scrape.contains("troupe_antientropy_keys_repaired_total")
            && scrape.contains("troupe_antientropy_rounds_total"),
        "metrics: {scrape}"
    );

    // The trees a restart rebuilds from the data are the ones writes kept: a restarted n2
    // finds no difference with the others.
    let (mut n1, mut n2) = (n1, n2);
    n2.kill();
    n2.restart();
    all_alive(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    let after_restart = repair(&n2);
    eprintln!("n2 after its restart: {after_restart}");
    for l in n2.log_text().lines().filter(|l| l.contains("anti-entropy")) {
        eprintln!("n2 log: {l}");
    }
    assert_eq!(after_restart["keys_differing"], 0, "{after_restart}");
    assert!(
        after_restart["keys_compared"].as_u64().unwrap_or(0) >= 2 * written.len() as u64,
        "{after_restart}"
    );

    // 5. n3 alone serves everything with r=one.
    n1.kill();
    n2.kill();
    let c3 = rt.block_on(async { Client::connect(n3.client.as_str(), "ae").await.unwrap() });
    rt.block_on(async {
        let mut missing = Vec::new();
        for k in &written {
            let got = c3.get_with(k.as_bytes(), Some(Quorum::One)).await;
            match got {
                Ok(g) if g.values == vec![k.as_bytes().to_vec()] => {}
                other => missing.push(format!("{k}: {other:?}")),
            }
        }
        assert!(
            missing.is_empty(),
            "{} of {} keys not on n3: {:?}",
            missing.len(),
            written.len(),
            &missing[..missing.len().min(10)]
        );
    });
}

/// GET /metrics over a plain TCP connection.
async fn reqwest_lite(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
