//! Membership under random peer-frame loss with real processes on loopback (issue 16):
//! every node drops 10% of the SWIM frames it sends (`admin fault loss 0.1`); for the
//! whole run no node ever declares another dead (checked in every node's log, so a death
//! that was refuted between two looks is caught too); then one node is SIGKILLed and the
//! others, still losing frames, mark it dead within the suspicion bound. `admin members`
//! shows when each member was last heard from.
//!
//! Size: 5 nodes for 30 s at 200 ms periods (150 periods) in CI, so the test stays well
//! under 90 s on a shared 2-core machine (node start-up and the crash phase add ~15 s).
//! The full size, 10 nodes for 2 minutes (600 periods), is
//! `ten_nodes_two_minutes_of_frame_loss`, `#[ignore]`d:
//! `cargo test --test integration membership_loss -- --ignored`.

use crate::cluster::{dead_bound, start, view, wait_for};
use crate::harness::NodeProc;
use serde_json::Value;
use std::time::{Duration, Instant};

fn loss_run(n: usize, loss_for: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, &[]);
    let seed = n1.peer.clone();
    let mut nodes = vec![n1];
    for i in 2..=n {
        nodes.push(start(dir.path(), &format!("n{i}"), Some(&seed), &[]));
    }
    wait_for(
        &format!("{n} nodes see {n} alive members"),
        Duration::from_secs(30),
        || {
            nodes.iter().all(|node| {
                let v = view(node);
                v.len() == n && v.iter().all(|m| m.1 == "alive")
            })
        },
    );
    for node in &nodes {
        let (code, out, err) = node.cli(&["admin", "fault", "loss", "0.1", "--yes"]);
        assert_eq!(code, 0, "fault loss: {out} {err}");
    }

    // Observe the lossy cluster for the whole period; every member stays alive.
    let start_at = Instant::now();
    while start_at.elapsed() < loss_for {
        for (i, node) in nodes.iter().enumerate() {
            let down = node
                .log_text()
                .lines()
                .any(|l| l.contains("is down (dead)"));
            assert!(!down, "n{} declared a member dead under 10% loss", i + 1);
        }
        // Pace the observation (no synchronisation rides on it: the logs are the record).
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, out, _) = nodes[0].cli(&["admin", "members", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("members --json is JSON");
    for m in v["members"].as_array().expect("members") {
        if m["this_node"] == true {
            continue;
        }
        let heard = m["last_heard_ms_ago"].as_u64();
        assert!(
            heard.is_some_and(|ms| ms < 10_000),
            "n1 heard from {} {heard:?} ms ago",
            m["id"]
        );
    }

    // Crash one node: the others mark it dead within the bound, loss and all.
    let victim = n / 2;
    let vid = format!("n{}", victim + 1);
    nodes[victim].kill();
    let others: Vec<&NodeProc> = (0..n).filter(|&i| i != victim).map(|i| &nodes[i]).collect();
    let took = wait_for(
        &format!("crashed {vid} marked dead by all"),
        dead_bound(),
        || {
            others
                .iter()
                .all(|node| view(node).iter().any(|m| m.0 == vid && m.1 == "dead"))
        },
    );
    eprintln!(
        "{n} nodes, 10% loss: crash -> dead everywhere in {took:?} (bound {:?})",
        dead_bound()
    );
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != victim) {
        let wrong = node
            .log_text()
            .lines()
            .filter(|l| l.contains("is down (dead)") && !l.contains(&format!("member {vid} ")))
            .count();
        assert_eq!(wrong, 0, "n{} declared a healthy member dead", i + 1);
    }
}

#[test]
fn five_nodes_with_ten_percent_frame_loss_no_false_deaths_then_crash_detected() {
    loss_run(5, Duration::from_secs(30));
}

#[test]
#[ignore]
fn ten_nodes_two_minutes_of_frame_loss() {
    loss_run(10, Duration::from_secs(120));
}
