//! Cluster membership with real processes on loopback: five nodes form a cluster through
//! `--seeds`; a SIGKILLed node is marked dead by the other four within the configured bound
//! and is alive again everywhere after a restart; a node SIGSTOPped for less than the
//! suspicion timeout is never declared dead; a node cut off by the peer transport's fault
//! hook is declared dead and comes back after the heal. A separate scenario checks that a
//! node without `cluster.secret` is refused by one that has it.
//!
//! Timing is shrunk through the environment (200 ms periods) so detection takes seconds.

use crate::harness::NodeProc;
use serde_json::Value;
use std::time::{Duration, Instant};

const PERIOD_MS: u64 = 200;
/// Lifeguard suspicion for N <= 10: min = mult * period, max = min * max_timeout_mult.
const SUSPICION_MULT: u64 = 5;
const SUSPICION_MAX_MULT: u64 = 6;

fn env() -> Vec<(&'static str, String)> {
    vec![
        (
            "TROUPE__MEMBERSHIP__PROBE_INTERVAL_MS",
            PERIOD_MS.to_string(),
        ),
        ("TROUPE__MEMBERSHIP__PROBE_TIMEOUT_MS", "100".into()),
        (
            "TROUPE__MEMBERSHIP__SUSPICION_MULT",
            SUSPICION_MULT.to_string(),
        ),
        (
            "TROUPE__MEMBERSHIP__SUSPICION_MAX_TIMEOUT_MULT",
            SUSPICION_MAX_MULT.to_string(),
        ),
        ("TROUPE__MEMBERSHIP__RECONNECT_INTERVAL_MS", "1000".into()),
        ("TROUPE__MEMBERSHIP__PUSH_PULL_INTERVAL_MS", "2000".into()),
        ("TROUPE__MEMBERSHIP__REAP_AFTER_MS", "120000".into()),
    ]
}

/// Bound for "everyone marks a crashed node dead": the longest suspicion timeout plus a few
/// periods for the first failed probe and for the verdict to spread.
pub(crate) fn dead_bound() -> Duration {
    Duration::from_millis(SUSPICION_MULT * SUSPICION_MAX_MULT * PERIOD_MS + 10 * PERIOD_MS)
}

pub(crate) fn start(
    dir: &std::path::Path,
    id: &str,
    seed: Option<&str>,
    extra: &[(&str, String)],
) -> NodeProc {
    let mut env = env();
    env.extend(extra.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args: Vec<&str> = match seed {
        Some(s) => vec!["--seeds", s],
        None => vec![],
    };
    // The harness picks free ports by binding :0 and releasing them; with tests starting
    // nodes in parallel two may pick the same port, so a node that could not bind retries
    // once or twice on fresh ports.
    for attempt in 1..=3 {
        let node = NodeProc::new(&dir.join(format!("{id}-{attempt}")), id, &env, &args);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.started())) {
            Ok(n) => return n,
            Err(e) if attempt == 3 => std::panic::resume_unwind(e),
            Err(_) => eprintln!("{id}: start failed (port taken?); retrying"),
        }
    }
    unreachable!("the loop returns or panics")
}

/// `id -> status` as `node` sees the cluster.
pub(crate) fn view(node: &NodeProc) -> Vec<(String, String, u64)> {
    let (code, out, err) = node.cli(&["admin", "members", "--json"]);
    assert_eq!(code, 0, "admin members failed: {err}");
    let v: Value = serde_json::from_str(&out).expect("members --json is JSON");
    v["members"]
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
                m["run_id"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

pub(crate) fn status_of(node: &NodeProc, id: &str) -> Option<String> {
    view(node).into_iter().find(|m| m.0 == id).map(|m| m.1)
}

/// Waits until every node of `nodes` holds one ring layout (version and digest) of
/// `members` members; returns node 0's `admin ring` then.
pub(crate) fn agreed_ring(nodes: &[&NodeProc], members: usize) -> Value {
    agreed_ring_within(nodes, members, Duration::from_secs(30))
}

/// [`agreed_ring`] with its own limit (a ring change that moves a lot of data).
pub(crate) fn agreed_ring_within(nodes: &[&NodeProc], members: usize, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_for(
        &format!("every node holds one settled layout of {members} members"),
        limit,
        || {
            let rings: Vec<Value> = nodes
                .iter()
                .map(|n| {
                    let (_, out, _) = n.cli(&["admin", "ring", "--json"]);
                    serde_json::from_str(&out).unwrap_or_default()
                })
                .collect();
            last = rings[0].clone();
            rings.iter().all(|r| {
                r["members"].as_array().map(Vec::len) == Some(members)
                    // Settled: no partition is still moving to a new owner.
                    && r["pending"].as_array().is_some_and(Vec::is_empty)
                    && r["digest"] == rings[0]["digest"]
                    && r["version"] == rings[0]["version"]
            })
        },
    );
    last
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}");
}

fn all_see(nodes: &[&NodeProc], id: &str, status: &str) -> bool {
    nodes
        .iter()
        .all(|n| status_of(n, id).as_deref() == Some(status))
}

#[test]
fn five_nodes_detect_crash_pause_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, &[]);
    let seed = n1.peer.clone();
    let mut nodes = vec![n1];
    for i in 2..=5 {
        nodes.push(start(dir.path(), &format!("n{i}"), Some(&seed), &[]));
    }
    let ids: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
    wait_for(
        "5 nodes see 5 alive members",
        Duration::from_secs(20),
        || {
            nodes.iter().all(|n| {
                let v = view(n);
                v.len() == 5 && v.iter().all(|m| m.1 == "alive")
            })
        },
    );

    // 1. SIGKILL n3: the other four mark it dead within the bound.
    nodes[2].kill();
    let others: Vec<&NodeProc> = [0, 1, 3, 4].iter().map(|&i| &nodes[i]).collect();
    let took = wait_for("crashed n3 marked dead by all four", dead_bound(), || {
        all_see(&others, "n3", "dead")
    });
    eprintln!(
        "crash -> dead everywhere in {took:?} (bound {:?})",
        dead_bound()
    );

    // 2. Restart n3 (new run id): alive again everywhere.
    let old_run = view(&nodes[0])
        .into_iter()
        .find(|m| m.0 == "n3")
        .map(|m| m.2);
    nodes[2].restart();
    wait_for(
        "restarted n3 alive everywhere",
        Duration::from_secs(15),
        || {
            nodes
                .iter()
                .all(|n| status_of(n, "n3").as_deref() == Some("alive"))
        },
    );
    let new_run = view(&nodes[0])
        .into_iter()
        .find(|m| m.0 == "n3")
        .map(|m| m.2);
    assert_ne!(old_run, new_run, "a restart changes the run id");

    // 3. SIGSTOP n2 for less than the minimum suspicion timeout: never declared dead.
    let min_suspicion = Duration::from_millis(SUSPICION_MULT * PERIOD_MS);
    nodes[1].signal(libc::SIGSTOP);
    std::thread::sleep(min_suspicion * 2 / 5);
    nodes[1].signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            status_of(n, "n2").as_deref(),
            Some("alive"),
            "node {} view",
            ids[i]
        );
        let declared_dead = n
            .log_text()
            .lines()
            .any(|l| l.contains("member n2 at") && l.contains("is down"));
        assert!(
            !declared_dead,
            "{} declared n2 dead after a short pause",
            ids[i]
        );
    }

    // 4. Cut n4 off with the fault hook: declared dead by the rest, alive after the heal.
    let (code, _, err) = nodes[3].cli(&["admin", "fault", "drop", "all", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let rest: Vec<&NodeProc> = [0, 1, 2, 4].iter().map(|&i| &nodes[i]).collect();
    wait_for("isolated n4 marked dead by the rest", dead_bound(), || {
        all_see(&rest, "n4", "dead")
    });
    let (code, _, err) = nodes[3].cli(&["admin", "fault", "heal", "--yes"]);
    assert_eq!(code, 0, "{err}");
    wait_for(
        "healed n4 alive everywhere",
        Duration::from_secs(15),
        || {
            nodes.iter().all(|n| {
                let v = view(n);
                v.len() == 5 && v.iter().all(|m| m.1 == "alive")
            })
        },
    );
}

#[test]
fn a_peer_without_the_secret_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [("TROUPE__CLUSTER__SECRET", "correct horse".to_string())];
    let a = start(dir.path(), "a", None, &secret);
    let b = start(dir.path(), "b", Some(&a.peer), &secret);
    let c = start(dir.path(), "c", Some(&a.peer), &[]);
    wait_for(
        "a and b (same secret) see each other",
        Duration::from_secs(15),
        || {
            status_of(&a, "b").as_deref() == Some("alive")
                && status_of(&b, "a").as_deref() == Some("alive")
        },
    );
    // c keeps dialling its seed; wait for a's refusal itself, then check nobody admitted c.
    wait_for("a refuses c", Duration::from_secs(15), || {
        a.log_text().contains("refused peer connection")
    });
    assert_eq!(status_of(&a, "c"), None, "a must not admit c");
    assert_eq!(status_of(&b, "c"), None, "b must not learn of c");
    assert_eq!(view(&c).len(), 1, "c stays alone: {:?}", view(&c));
    assert!(
        a.log_text().contains("refused peer connection"),
        "a logs the refusal:\n{}",
        a.log_text()
    );
    assert!(!a.log_text().contains("correct horse"));
}
