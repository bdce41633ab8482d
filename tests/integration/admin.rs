//! The admin surface as an operator meets it (issue 14): help from the command table, "did
//! you mean" on typos, JSON answers (errors included) with a format version, the log level
//! at run time, `--yes` for destructive commands, `fault` only with the node flag.

use crate::harness::{NodeProc, BIN};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// Every command the node dispatches, as the README and the console name them.
const COMMANDS: &[&str] = &[
    "status",
    "actors",
    "sync",
    "stats",
    "flush",
    "compact",
    "gc",
    "members",
    "transfers",
    "leave",
    "remove",
    "fault",
    "ring",
    "preflist",
    "object",
    "repair",
    "hints",
    "log-level",
    "help",
];

#[test]
fn help_lists_every_command_and_typos_get_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);

    // `admin help` (from the node) and `admin --help` (local) list every command, one line each.
    let (code, out, err) = node.cli(&["admin", "help"]);
    assert_eq!(code, 0, "{err}");
    let local = std::process::Command::new(BIN)
        .args(["admin", "--help"])
        .output()
        .unwrap();
    assert!(local.status.success());
    let local = String::from_utf8_lossy(&local.stdout).into_owned();
    for text in [&out, &local] {
        for cmd in COMMANDS {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(cmd)),
                "{cmd} missing from:\n{text}"
            );
        }
    }
    let (code, out, _) = node.cli(&["admin", "help", "--json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["format"], 1);
    let names: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for cmd in COMMANDS {
        assert!(names.contains(cmd), "{cmd} not in {names:?}");
    }

    // The node answers `help` from the same table, for tools that speak the admin protocol.
    let reply = crate::harness::rt().block_on(async {
        let c = troupe_protocol::Client::connect_raw(
            node.admin.as_str(),
            Some(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap();
        c.admin("help", vec![]).await.unwrap()
    });
    let reply: troupe_protocol::admin::AdminResponse<serde_json::Value> =
        rmp_serde::from_slice(&reply).unwrap();
    let listed = reply.ok.unwrap()["commands"].as_array().unwrap().len();
    assert_eq!(
        listed,
        COMMANDS.len(),
        "the node's table and this list agree"
    );

    // `help CMD`: its usage.
    let (code, out, _) = node.cli(&["admin", "help", "preflist"]);
    assert_eq!(code, 0);
    assert!(out.contains("preflist KEY"), "{out}");

    // A typo: bad_request, a suggestion and the hint, exit 2; as JSON, an error object.
    let (code, _, err) = node.cli(&["admin", "stauts"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean status?"), "{err}");
    assert!(err.contains("admin help"), "{err}");
    let (code, out, _) = node.cli(&["admin", "membres", "--json"]);
    assert_eq!(code, 2);
    let v = json(&out);
    assert_eq!(v["format"], 1);
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean members?"),
        "{v}"
    );

    // Every answer as JSON carries the format version.
    for cmd in ["status", "actors", "stats", "members", "ring"] {
        let (code, out, err) = node.cli(&["admin", cmd, "--json"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        assert_eq!(json(&out)["format"], 1, "{cmd}: {out}");
    }
}

#[test]
fn human_output_is_tables_with_readable_bytes_and_durations() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let (code, out, _) = node.cli(&["admin", "status"]);
    assert_eq!(code, 0);
    // uptime as a duration ("3s"), not a bare number of seconds.
    let uptime = out
        .lines()
        .find(|l| l.contains("uptime"))
        .unwrap_or_default();
    assert!(uptime.trim_end().ends_with('s'), "{out}");
    let (code, out, _) = node.cli(&["admin", "stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("KiB") || out.contains("MiB"), "{out}");
    // A table's first column is its key.
    let (code, out, _) = node.cli(&["admin", "actors"]);
    assert_eq!(code, 0);
    let header = out.lines().find(|l| l.contains("handled")).unwrap();
    assert!(header.trim_start().starts_with("name"), "{out}");
}

#[test]
fn log_level_changes_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let (code, out, _) = node.cli(&["admin", "status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["log_level"], "info");
    let (code, out, err) = node.cli(&["admin", "log-level", "debug", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["log_level"], "debug");
    // Debug lines now reach the log: every admin command is logged at debug.
    node.cli(&["admin", "status"]);
    assert!(node.log_text().contains("DEBUG"), "{}", node.log_text());
    let (code, out, _) = node.cli(&["admin", "status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["log_level"], "debug");
    let (code, _, err) = node.cli(&["admin", "log-level", "loud"]);
    assert_eq!(code, 2);
    assert!(err.contains("error, warn, info, debug, trace"), "{err}");
}

#[test]
fn destructive_commands_need_yes_and_fault_needs_the_node_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::new(&dir.path().join("d"), "test-node", &[], &[]);
    node.fault_injection = false;
    let node = node.started();

    let (code, _, err) = node.cli(&["admin", "leave"]);
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = node.cli(&["admin", "members", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        json(&out)["members"][0]["status"],
        "alive",
        "not left: {out}"
    );

    let (code, _, err) = node.cli(&["admin", "fault", "drop", "all", "--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("--enable-fault-injection"), "{err}");
}

#[test]
fn admin_pointed_at_the_client_port_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let out = std::process::Command::new(BIN)
        .args(["admin", "status", "--addr", &node.client])
        .output()
        .expect("running troupe CLI");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("client port") && err.contains("admin port"),
        "no hint that this is the client port: {err}"
    );
}
