//! The CLI as a user meets it: put/get/del with exit codes, admin commands, SIGTERM.

use crate::harness::NodeProc;
use std::time::Duration;

#[test]
fn put_get_del_exit_codes_and_admin_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);

    assert_eq!(node.cli(&["put", "greeting", "hello"]).0, 0);
    let (code, out, _) = node.cli(&["get", "greeting"]);
    assert_eq!((code, out.as_str()), (0, "hello"));
    let (code, out, _) = node.cli(&["get", "greeting", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["values"][0], "hello");
    assert_eq!(v["found"], true);

    assert_eq!(node.cli(&["del", "greeting"]).0, 0);
    let (code, _, err) = node.cli(&["get", "greeting"]);
    assert_eq!(code, 1, "not found exits 1");
    assert!(err.contains("not found"), "{err}");

    let (code, out, _) = node.cli(&["admin", "status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node_id"], "test-node");
    assert_eq!(v["addresses"]["client"], node.client.as_str());
    assert_eq!(v["health"], "ok");

    let (code, out, _) = node.cli(&["admin", "actors", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in ["memtable", "connection", "admin"] {
        assert!(names.contains(&want), "{names:?} lacks {want}");
    }
    let memtable = v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "memtable")
        .unwrap();
    assert!(memtable["handled"].as_u64().unwrap() >= 5);

    let (code, _, err) = node.cli(&["admin", "frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad_request"), "{err}");

    // SIGTERM: graceful exit 0, and the data is there after a restart.
    node.signal(libc::SIGTERM);
    assert!(
        node.wait_exit(Duration::from_secs(15)).success(),
        "log:\n{}",
        node.log_text()
    );
    node.restart();
    assert_eq!(node.cli(&["put", "k", "v"]).0, 0);
    assert_eq!(node.cli(&["get", "k"]).1, "v");
}

#[test]
fn unreachable_node_is_a_clear_error_with_exit_2() {
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "get",
            "x",
            "--addr",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach a troupe node"), "{err}");
}

#[test]
fn two_nodes_cannot_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = NodeProc::start(&dir.path().join("d"), &[]);
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["node", "--data-dir"])
        .arg(dir.path().join("d"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another troupe node"));
}

#[test]
fn console_runs_commands_from_stdin_and_keeps_history() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["console", "--admin", &node.admin])
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"status\nactors\nno-such-command\nquit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("node_id:") && l.ends_with("test-node")),
        "{text}"
    );
    assert!(text.contains("memtable"), "{text}");
    assert!(text.contains("error: bad_request"), "{text}");
    let history = std::fs::read_to_string(dir.path().join(".troupe_history")).unwrap();
    assert!(history.contains("actors"), "{history}");
}

/// Issue 9: a put whose key holds other versions shows them (its context covers them all),
/// and says how to resolve them; a put that leaves one version prints nothing.
#[test]
fn put_prints_the_siblings_its_context_covers() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let (code, out, err) = node.cli(&["put", "sib", "one"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, err) = node.cli(&["put", "sib", "two"]);
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "two"], "one sibling per line, like get");
    assert!(
        err.contains("2 concurrent versions") && err.contains("--context"),
        "{err}"
    );
    let (code, out, _) = node.cli(&["put", "sib", "three", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["values"].as_array().map(Vec::len), Some(3), "{out}");
    // Writing back with that context replaces every value the reply showed.
    let ctx = v["context"].as_str().unwrap();
    let (code, out, _) = node.cli(&["put", "sib", "merged", "--context", ctx, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.get("values").is_none(), "one version: no values: {out}");
    assert_eq!(node.cli(&["get", "sib"]).1, "merged");
}
