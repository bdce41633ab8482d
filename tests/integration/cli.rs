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

fn troupe(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(crate::harness::BIN);
    cmd.args(args)
        .env_remove("TROUPE_ADDR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running troupe");
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.unwrap_or_default().to_vec();
    // Written from a thread: a CLI that refuses early stops reading, and stdout must drain.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("troupe exits");
    writer.join().expect("stdin writer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 14: a value over the frame limit is refused before it is sent, with the limit.
#[test]
fn an_oversize_value_is_refused_with_the_frame_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let big = vec![b'x'; troupe_protocol::DEFAULT_MAX_FRAME_BYTES + 1];
    let (code, _, err) = troupe(&["put", "big", "--addr", &node.client], &[], Some(&big));
    assert_eq!(code, 2, "{err}");
    let limit = troupe_protocol::DEFAULT_MAX_FRAME_BYTES.to_string();
    assert!(err.contains(&limit) && err.contains("frame"), "{err}");
    // Refused before sending: the same answer with no node listening at all.
    let nowhere = format!("127.0.0.1:{}", crate::harness::free_port());
    let (code, _, err) = troupe(&["put", "big", "--addr", &nowhere], &[], Some(&big));
    assert_eq!(code, 2);
    assert!(err.contains(&limit), "{err}");
    assert_eq!(node.cli(&["get", "big"]).0, 1, "nothing was stored");
    // A value that fits still goes through.
    let (code, _, err) = troupe(&["put", "small", "--addr", &node.client], &[], Some(b"ok"));
    assert_eq!(code, 0, "{err}");
}

/// Issue 14: the CLI pointed at the admin port says so and names the client port.
#[test]
fn pointing_the_cli_at_the_admin_port_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    for args in [
        vec!["get", "x"],
        vec!["bench", "--ops", "1", "--concurrency", "1"],
    ] {
        let mut args = args.clone();
        args.extend(["--addr", &node.admin]);
        let (code, _, err) = troupe(&args, &[], None);
        assert_eq!(code, 2);
        assert!(
            err.contains(&format!("{} is the admin port", node.admin))
                && err.contains(&format!("--addr {}", node.client)),
            "{args:?}: {err}"
        );
    }
}

/// Issue 14: an OS error is printed once, not once per layer of the error chain.
#[test]
fn os_errors_are_not_doubled() {
    let nowhere = format!("127.0.0.1:{}", crate::harness::free_port());
    for args in [
        vec!["get", "x"],
        vec!["put", "x", "v"],
        vec!["del", "x"],
        vec!["bench", "--ops", "1", "--concurrency", "1"],
    ] {
        let mut args = args.clone();
        args.extend(["--addr", &nowhere]);
        let (code, _, err) = troupe(&args, &[], None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
}

/// Issue 14: `TROUPE_ADDR` is the default `--addr`.
#[test]
fn troupe_addr_is_the_default_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let env = [("TROUPE_ADDR", node.client.as_str())];
    let (code, _, err) = troupe(&["put", "k", "from-env"], &env, None);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = troupe(&["get", "k"], &env, None);
    assert_eq!((code, out.as_str()), (0, "from-env"));
}

/// Issue 14: `config check` validates a file and names the problem; exit 2 when bad.
#[test]
fn config_check_names_the_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, "[storage]\ndurability = \"relaxed\"\n").unwrap();
    let (code, out, err) = troupe(&["config", "check", "--config", f], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(&file, "[storage]\ndurability = \"sometimes\"\n").unwrap();
    let (code, _, err) = troupe(&["config", "check", "--config", f], &[], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("storage.durability") && err.contains("relaxed") && err.contains(f),
        "{err}"
    );
    std::fs::write(&file, "[storage]\nmemtable_byte = 1\n").unwrap();
    let (code, _, err) = troupe(&["config", "check", "--config", f], &[], None);
    assert_eq!(code, 2);
    assert!(err.contains("storage.memtable_byte"), "{err}");
}

/// Issue 14: a bad environment value names the variable and the valid values.
#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = [("TROUPE__STORAGE__DURABILITY", "sometimes")];
    let (code, _, err) = troupe(&["config", "check"], &env, None);
    assert_eq!(code, 2);
    assert!(
        err.contains("TROUPE__STORAGE__DURABILITY")
            && err.contains("sync")
            && err.contains("relaxed"),
        "{err}"
    );
    let env = [("TROUPE__STORAGE__NO_SUCH_KEY", "1")];
    let (code, _, err) = troupe(&["config", "check"], &env, None);
    assert_eq!(code, 2);
    assert!(err.contains("TROUPE__STORAGE__NO_SUCH_KEY"), "{err}");
}

/// Issue 14: `config print` shows the effective value and the layer that set it.
#[test]
fn config_print_shows_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, "[net]\nlisten = \"127.0.0.1:9\"\n").unwrap();
    let env = [("TROUPE__STORAGE__MEMTABLE_BYTES", "1048576")];
    let (code, out, err) = troupe(&["config", "print", "--config", f], &env, None);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("storage.memtable_bytes"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("1048576") && line.contains("TROUPE__STORAGE__MEMTABLE_BYTES"),
        "{line}"
    );
    let (code, out, err) = troupe(&["config", "print", "--json", "--config", f], &env, None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys = &v["keys"];
    assert_eq!(keys["storage.memtable_bytes"]["value"], 1048576, "{out}");
    assert_eq!(
        keys["storage.memtable_bytes"]["source"],
        "env TROUPE__STORAGE__MEMTABLE_BYTES"
    );
    assert_eq!(keys["net.listen"]["value"], "127.0.0.1:9");
    assert_eq!(keys["net.listen"]["source"], format!("file {f}"));
    assert_eq!(keys["storage.durability"]["source"], "default");
}

/// Issue 14: a mixed workload reports each op on its own (latency, hits and misses), and
/// the workload by the name typed; the fields the bench scripts read stay at the top.
#[test]
fn bench_reports_each_op_of_a_mixed_workload() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let common = [
        "--ops",
        "400",
        "--keys",
        "100",
        "--concurrency",
        "2",
        "--addr",
        &node.client,
    ];
    let mut args = vec!["bench", "--workload", "ycsb-a", "--json"];
    args.extend(common);
    let (code, out, err) = troupe(&args, &[], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["workload"], "ycsb-a");
    for top in ["ops_per_sec", "ops", "errors"] {
        assert!(v[top].is_number(), "{top}: {out}");
    }
    assert!(v["latency_us"]["p50"].is_number() && v["latency_us"]["p99"].is_number());
    let get = &v["per_op"]["get"];
    let put = &v["per_op"]["put"];
    for (op, s) in [("get", get), ("put", put)] {
        for f in ["avg", "min", "p50", "p99", "p999", "max"] {
            assert!(s["latency_us"][f].is_number(), "{op} {f}: {out}");
        }
        assert!(s["kb_per_sec"].is_number(), "{op}: {out}");
    }
    let gets = get["ops"].as_u64().unwrap();
    assert_eq!(
        get["hits"].as_u64().unwrap()
            + get["misses"].as_u64().unwrap()
            + get["errors"].as_u64().unwrap(),
        gets
    );
    assert_eq!(
        gets + put["ops"].as_u64().unwrap(),
        v["ops"].as_u64().unwrap()
    );
    assert_eq!(get["misses"], 0, "every key was prefilled: {out}");

    let mut args = vec!["bench", "--workload", "ycsb-a"];
    args.extend(common);
    let (code, out, err) = troupe(&args, &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("GET")) && out.lines().any(|l| l.starts_with("PUT")),
        "{out}"
    );
}

/// Issue 14: `--fill sequential` writes keys in order.
#[test]
fn bench_fills_keys_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let args = [
        "bench",
        "--workload",
        "put",
        "--fill",
        "sequential",
        "--ops",
        "50",
        "--keys",
        "1000",
        "--concurrency",
        "2",
        "--json",
        "--addr",
        &node.client,
    ];
    let (code, _, err) = troupe(&args, &[], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(node.cli(&["get", "key000000000049"]).0, 0);
    assert_eq!(node.cli(&["get", "key000000000050"]).0, 1);
}

/// Issue 10: the data-type commands against one real node: output plain and `--json`,
/// a negative `incr`, `reg-get`'s not found (exit 1, like `get`), and a wrong type's
/// `bad_request` naming the type (exit 2).
#[test]
fn data_type_commands_print_values_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let json = |args: &[&str]| -> (i32, serde_json::Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let (code, out, err) = node.cli(&args);
        let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}{err}"));
        (code, v)
    };

    // Counter: BY defaults to 1, may be negative, and incr prints the value after it.
    assert_eq!(
        node.cli(&["incr", "hits"]),
        (0, "1\n".into(), String::new())
    );
    assert_eq!(node.cli(&["incr", "hits", "5"]).1, "6\n");
    assert_eq!(node.cli(&["incr", "hits", "-10"]).1, "-4\n");
    assert_eq!(
        node.cli(&["counter", "hits"]),
        (0, "-4\n".into(), String::new())
    );
    let (code, v) = json(&["incr", "hits", "2"]);
    assert_eq!(
        (code, v),
        (0, serde_json::json!({"key": "hits", "value": -2}))
    );
    let (code, v) = json(&["counter", "hits"]);
    assert_eq!(
        (code, v),
        (0, serde_json::json!({"key": "hits", "value": -2}))
    );
    assert_eq!(
        node.cli(&["counter", "no-counter"]).1,
        "0\n",
        "no counter yet: 0"
    );

    // Set: members one per line in byte order.
    assert_eq!(node.cli(&["sadd", "fruit", "pear", "apple", "fig"]).0, 0);
    assert_eq!(node.cli(&["srem", "fruit", "fig", "kiwi"]).0, 0);
    assert_eq!(node.cli(&["smembers", "fruit"]).1, "apple\npear");
    let (code, v) = json(&["smembers", "fruit"]);
    assert_eq!(
        (code, v),
        (
            0,
            serde_json::json!({"key": "fruit", "members": ["apple", "pear"]})
        )
    );
    let (code, v) = json(&["sadd", "fruit", "plum"]);
    assert_eq!(
        (code, v),
        (0, serde_json::json!({"key": "fruit", "ok": true}))
    );
    assert_eq!(
        node.cli(&["smembers", "no-set"]),
        (0, String::new(), String::new())
    );

    // Register: not found is exit 1, like get.
    let (code, _, err) = node.cli(&["reg-get", "color"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found: color"), "{err}");
    let (code, v) = json(&["reg-get", "color"]);
    assert_eq!(
        (code, v),
        (
            1,
            serde_json::json!({"key": "color", "found": false, "value": null})
        )
    );
    assert_eq!(node.cli(&["reg-put", "color", "red"]).0, 0);
    assert_eq!(node.cli(&["reg-put", "color", "blue"]).0, 0);
    assert_eq!(
        node.cli(&["reg-get", "color"]),
        (0, "blue".into(), String::new())
    );
    let (code, v) = json(&["reg-get", "color"]);
    assert_eq!(
        (code, v),
        (
            0,
            serde_json::json!({"key": "color", "found": true, "value": "blue"})
        )
    );

    // A key holds one type: anything else is bad_request naming it, exit 2.
    assert_eq!(node.cli(&["put", "greeting-plain", "hi"]).0, 0);
    for (args, holds) in [
        (vec!["sadd", "hits", "x"], "holds a counter"),
        (vec!["incr", "fruit"], "holds a set"),
        (vec!["get", "color"], "holds a register"),
        (vec!["put", "hits", "v"], "holds a counter"),
        (vec!["reg-get", "greeting-plain"], "holds a plain value"),
    ] {
        let (code, out, err) = node.cli(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("bad_request") && err.contains(holds),
            "{args:?}: {err}"
        );
    }

    // `del` of a typed key (no context to read) resets it: a counter reads 0 again and stays
    // a counter (its replicas' counters are kept, so later increments are never lost).
    assert_eq!(node.cli(&["del", "hits"]).0, 0);
    assert_eq!(node.cli(&["counter", "hits"]).1, "0\n");
    assert_eq!(node.cli(&["sadd", "hits", "now-a-set"]).0, 2);
    assert_eq!(node.cli(&["incr", "hits"]).1, "1\n");
}

/// Issue 10: `bench --workload incr|sadd` writes counters and sets under their own keys
/// (never a put workload's, which would refuse them) and reports them by op name; every
/// acknowledged increment is counted, with pipelined batches and with a sliding window.
#[test]
fn bench_writes_counters_and_sets() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    for workload in ["put", "incr", "sadd"] {
        let mut args = vec![
            "bench",
            "--workload",
            workload,
            "--ops",
            "200",
            "--keys",
            "10",
            "--concurrency",
            "4",
            "--pipeline",
            "4",
            "--value-size",
            "8",
            "--json",
            "--addr",
            &node.client,
        ];
        // Batches of --pipeline by default; the increments also through a sliding window.
        if workload == "incr" {
            args.push("--window");
        }
        let (code, out, err) = troupe(&args, &[], None);
        assert_eq!(code, 0, "{workload}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["workload"], workload);
        let mode = if workload == "incr" {
            "window"
        } else {
            "batch"
        };
        assert_eq!(v["pipelining"], mode, "{out}");
        assert_eq!(
            (v["ops"].as_u64(), v["errors"].as_u64()),
            (Some(200), Some(0))
        );
        assert_eq!(v["per_op"][workload]["ops"], 200, "{out}");
    }
    let counted: i64 = (0..10)
        .map(|i| {
            let (code, out, err) = node.cli(&["counter", &format!("ctr{i:012}")]);
            assert_eq!(code, 0, "{err}");
            out.trim().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(counted, 200);
    // A set gets one of 16 members per key: never more, however many adds.
    let (_, out, _) = node.cli(&["smembers", "set000000000000", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = v["members"].as_array().unwrap().len();
    assert!((1..=16).contains(&n), "{out}");
}
