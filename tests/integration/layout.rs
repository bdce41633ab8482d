//! The ring layout with real processes: three nodes agree on one layout; a fourth joins and
//! every node moves to the next layout in one step, which moves exactly the newcomer's
//! share of partition replicas; a SIGKILLed node restarts with its layout from disk and a
//! SIGTERMed one stays a member (a stop is not a departure), so neither changes the layout;
//! `admin leave` is a departure, and the others drop the member in one step.

use crate::cluster::{agreed_ring, start, wait_for};
use crate::harness::NodeProc;
use serde_json::Value;
use std::time::Duration;

fn version(r: &Value) -> u64 {
    r["version"].as_u64().expect("ring version")
}

fn share(r: &Value, id: &str) -> usize {
    r["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["replicas"].as_u64())
        .unwrap_or_else(|| panic!("{id} in {r}")) as usize
}

/// What the node's log says the change to `to` moved: "ring layout F -> T: ... M of R
/// partition replicas moved".
fn moved_to(node: &NodeProc, to: u64) -> Option<usize> {
    let marker = format!(" -> {to}: ");
    node.log_text()
        .lines()
        .rfind(|l| l.contains("ring layout") && l.contains(&marker))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|part| part.split(' ').next())
        .and_then(|m| m.parse().ok())
}

#[test]
fn joins_restarts_and_leaves_change_the_layout_only_as_they_must() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL",
        "200ms".to_string(),
    )];
    let n1 = start(dir.path(), "n1", None, &env);
    let seed = n1.peer.clone();
    let mut n2 = start(dir.path(), "n2", Some(&seed), &env);
    let mut n3 = start(dir.path(), "n3", Some(&seed), &env);
    let three = agreed_ring(&[&n1, &n2, &n3], 3);
    assert_eq!(three["effective_n"], 3);

    // A fourth node: one step from the three-member layout, moving its share and no more.
    let n4 = start(dir.path(), "n4", Some(&seed), &env);
    let four = agreed_ring(&[&n1, &n2, &n3, &n4], 4);
    let v4 = version(&four);
    assert_eq!(v4, version(&three) + 1, "one change: {four}");
    for id in ["n1", "n2", "n3", "n4"] {
        assert_eq!(share(&four, id), 192, "768 replicas over 4 members: {four}");
    }
    for n in [&n1, &n2, &n3] {
        assert_eq!(
            moved_to(n, v4),
            Some(192),
            "{}: the join moved the newcomer's 192 replicas",
            n.node_id
        );
    }

    // SIGKILL and restart: the layout comes back from the data directory, unchanged.
    n2.kill();
    n2.restart();
    wait_for("n2 restarted", Duration::from_secs(20), || {
        n2.log_text().contains(&format!(
            "ring layout {v4} from the data directory: 4 member(s)"
        ))
    });
    let again = agreed_ring(&[&n1, &n2, &n3, &n4], 4);
    assert_eq!(again["digest"], four["digest"]);
    assert_eq!(version(&again), v4, "a crash is not a ring change");

    // SIGTERM: the node stays a member while it is away.
    n3.signal(libc::SIGTERM);
    n3.wait_exit(Duration::from_secs(20));
    let away = agreed_ring(&[&n1, &n2, &n4], 4);
    assert_eq!(version(&away), v4, "a stop is not a departure");
    n3.restart();
    let back = agreed_ring(&[&n1, &n2, &n3, &n4], 4);
    assert_eq!(version(&back), v4);

    // `admin leave` departs: one step to a layout of the other three.
    let (code, _, err) = n4.cli(&["admin", "leave", "--yes"]);
    assert_eq!(code, 0, "admin leave: {err}");
    let after = agreed_ring(&[&n1, &n2, &n3], 3);
    assert_eq!(version(&after), v4 + 1, "one change: {after}");
    assert_eq!(
        moved_to(&n1, v4 + 1),
        Some(192),
        "n4's 192 replicas re-homed"
    );
}
