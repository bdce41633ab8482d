//! The Prometheus endpoint as a scraper meets it: well-formed text exposition with the
//! actor, storage, WAL, membership, request-latency and process families, histograms whose
//! buckets are cumulative, `/health`, 404 for other paths; the Grafana dashboard and alert
//! rules parse and use only served families; with two nodes, peer RPCs counted and timed.

use crate::harness::NodeProc;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

pub(crate) fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("metrics port");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Parses the exposition format strictly enough to catch a malformed line: every sample
/// `name{labels} value` has a numeric value and a `# TYPE` line before it (a histogram's
/// samples are its name with `_bucket`, `_sum` or `_count`).
pub(crate) fn samples(body: &str) -> HashMap<String, f64> {
    let mut typed = HashMap::new();
    let mut out = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        out.insert(series.to_string(), v);
    }
    out
}

/// Family names in a scrape (a histogram's under its own name).
pub(crate) fn families(body: &str) -> std::collections::BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Checks every series of histogram `name`: buckets in increasing `le`, cumulative, ending at
/// `+Inf` equal to `_count`. Returns `_count` per series labels (without `le`).
fn check_histogram(body: &str, name: &str) -> HashMap<String, f64> {
    let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    let prefix = format!("{name}_bucket{{");
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let (series, le) = labels.rsplit_once("le=\"").unwrap();
        let le = le.trim_end_matches('"');
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let series = series.trim_end_matches(',').to_string();
        buckets
            .entry(series)
            .or_default()
            .push((le, value.parse().unwrap()));
    }
    assert!(!buckets.is_empty(), "no {name} buckets in:\n{body}");
    let m = samples(body);
    let mut counts = HashMap::new();
    for (series, b) in buckets {
        assert!(
            b.windows(2).all(|w| w[0].0 < w[1].0),
            "{name}{{{series}}}: le increases: {b:?}"
        );
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}{{{series}}}: cumulative: {b:?}"
        );
        let last = b.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{name}{{{series}}} ends at +Inf");
        let count = m[&format!("{name}_count{{{series}}}")];
        assert_eq!(last.1, count, "{name}{{{series}}}: +Inf bucket == _count");
        assert!(m[&format!("{name}_sum{{{series}}}")] >= 0.0);
        counts.insert(series, count);
    }
    counts
}

fn grafana_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `troupe_*` and `process_*` family named in `text`; a histogram's `_bucket`,
/// `_count` and `_sum` series count as the histogram.
fn referenced_metrics(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = (i == 0 || !word(bytes[i - 1]))
            && (text[i..].starts_with("troupe_") || text[i..].starts_with("process_"));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !word(bytes[j]))
            .unwrap_or(bytes.len());
        let name = &text[i..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| b.ends_with("_seconds")))
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

/// Parses `body` with the Prometheus Python client's parser where it is installed
/// (`pip install prometheus-client`); returns its `name type` lines, or `None` without it.
fn prometheus_parse(body: &str) -> Option<Vec<String>> {
    use std::process::{Command, Stdio};
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\nfor f in parse(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named") {
        eprintln!("prometheus_client missing: /metrics checked by our own parser only");
        return None;
    }
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {err}"
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn grafana_dashboard_and_alert_rules_parse() {
    let dash: serde_json::Value = serde_json::from_str(&grafana_file("troupe-dashboard.json"))
        .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12, "{} panels", panels.len());
    for p in panels {
        let targets = p["targets"].as_array().expect("every panel has targets");
        assert!(
            targets.iter().all(|t| t["expr"].is_string()),
            "{}",
            p["title"]
        );
    }
    let alerts = grafana_file("alerts.yml");
    assert!(!alerts.contains('\t'), "YAML does not allow tabs");
    assert!(alerts.lines().any(|l| l == "groups:"));
    assert!(referenced_metrics(&alerts).contains("troupe_up"));
    // A full YAML parse where python3 with PyYAML is installed (dev machines and CI).
    let parsed = std::process::Command::new("python3")
        .args(["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert all('expr' in r and 'alert' in r for g in d['groups'] for r in g['rules'])"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/alerts.yml"))
        .output();
    match parsed {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("PyYAML missing: alerts.yml checked only minimally")
        }
        Ok(out) => panic!("alerts.yml: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => eprintln!("python3 missing: alerts.yml checked only minimally"),
    }
}

#[test]
fn metrics_cover_actors_storage_wal_and_membership() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    for i in 0..20 {
        assert_eq!(node.cli(&["put", &format!("k{i}"), "v"]).0, 0);
    }
    assert_eq!(node.cli(&["admin", "flush"]).0, 0);
    // Flushed: the first read loads the keys' one block from its file, the rest find it in
    // the block cache and are answered without the disk-read queue.
    for k in ["k0", "k0", "k1", "k19"] {
        assert_eq!(node.cli(&["get", k]).0, 0);
    }
    // A miss is an answer (no values, the CLI exits 1), not an error of the request.
    assert_eq!(node.cli(&["get", "absent"]).0, 1);

    // One connection held open across the scrape: its hello was answered, so it is counted.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt
        .block_on(troupe_protocol::Client::connect(
            node.client.as_str(),
            "held",
        ))
        .unwrap();
    // An error answer is counted by its code.
    let long_key = vec![b'k'; 70_000];
    assert!(
        rt.block_on(held.get(&long_key)).is_err(),
        "keys are limited to 64 KiB"
    );

    let (status, body) = http_get(&node.metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    drop(held);
    let m = samples(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in:\n{body}"));
    assert_eq!(get("troupe_up"), 1.0);
    assert!(
        get("troupe_wal_fsyncs_total") >= 20.0,
        "sync durability: a fsync per put"
    );
    assert!(
        get("troupe_wal_batches_total") >= 20.0,
        "one group commit per put when puts come one at a time"
    );
    assert_eq!(
        get("troupe_wal_batches_now_total"),
        0.0,
        "sync durability: every group commit through the writer thread"
    );
    assert!(get("troupe_storage_flushes_total") >= 1.0);
    assert_eq!(
        get("troupe_disk_lookups_total"),
        1.0,
        "one block read, then cached"
    );
    assert!(get("troupe_storage_tables{level=\"0\"}") >= 1.0);
    assert!(get("troupe_storage_table_bytes{level=\"0\"}") > 0.0);
    assert_eq!(
        get("troupe_members{status=\"alive\"}"),
        1.0,
        "the node itself"
    );
    assert_eq!(get("troupe_members{status=\"dead\"}"), 0.0);
    assert_eq!(get("troupe_l0_stalls_total"), 0.0);
    assert!(get("troupe_actor_messages_handled_total{actor=\"memtable\"}") >= 20.0);
    assert_eq!(
        get("troupe_coordinator_puts_total"),
        20.0,
        "every put went through it"
    );
    assert_eq!(get("troupe_coordinator_unavailable_total"), 0.0);

    let requests = check_histogram(&body, "troupe_request_duration_seconds");
    let count = |series: &str| {
        *requests
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {requests:?}"))
    };
    assert_eq!(count("op=\"put\",result=\"ok\""), 20.0);
    assert_eq!(count("op=\"get\",result=\"ok\""), 5.0);
    assert_eq!(count("op=\"get\",result=\"too_large\""), 1.0);
    assert!(
        count("op=\"hello\",result=\"ok\"") >= 25.0,
        "one per CLI call"
    );

    // CLI connections may still be closing; the held one is surely open.
    assert!(get("troupe_connections_open") >= 1.0);
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        m.iter()
            .any(|(k, v)| k.starts_with("troupe_build_info{") && k.contains(&version) && *v == 1.0),
        "build info with {version}:\n{body}"
    );
    assert!(get("troupe_wal_bytes") > 0.0, "20 puts are in the WAL");
    assert!(get("troupe_data_bytes") >= get("troupe_storage_table_bytes{level=\"0\"}"));
    assert!(get("process_cpu_seconds_total") > 0.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") >= 4.0, "listeners and files");
    assert!(get("process_start_time_seconds") > 1.6e9);

    // Alone, the node sends no peer RPCs, but the families are there for dashboards.
    let names = families(&body);
    for f in ["troupe_peer_rpcs_total", "troupe_peer_rpc_duration_seconds"] {
        assert!(names.contains(f), "no family {f}");
    }
    check_histogram(&body, "troupe_peer_rpc_duration_seconds");

    // Every message an actor handled was counted as sent (else its mailbox depth would
    // read 0 while messages wait). `handled` is read before `sent` in a scrape.
    for (series, handled) in m
        .iter()
        .filter(|(k, _)| k.starts_with("troupe_actor_messages_handled_total{"))
    {
        let labels = series.trim_start_matches("troupe_actor_messages_handled_total");
        let sent = get(&format!("troupe_actor_messages_sent_total{labels}"));
        assert!(
            sent >= *handled,
            "{labels}: sent {sent} < handled {handled}"
        );
    }

    // The dashboard and the alert rules chart and alert only on families a node serves.
    for file in ["troupe-dashboard.json", "alerts.yml"] {
        for name in referenced_metrics(&grafana_file(file)) {
            assert!(
                names.contains(&name),
                "{file} uses {name}, which no scrape has"
            );
        }
    }

    // Every request was answered, so nothing waits for these two: their depth is exact.
    for actor in ["memtable", "coordinator"] {
        let labels = format!("{{actor=\"{actor}\"}}");
        let sent = get(&format!("troupe_actor_messages_sent_total{labels}"));
        assert!(sent >= 20.0, "{actor} got the puts");
        assert_eq!(
            sent,
            get(&format!("troupe_actor_messages_handled_total{labels}")),
            "{actor}"
        );
        assert_eq!(
            get(&format!("troupe_actor_mailbox{labels}")),
            0.0,
            "{actor}"
        );
    }

    if let Some(parsed) = prometheus_parse(&body) {
        assert!(
            parsed
                .iter()
                .any(|l| l.starts_with("troupe_request_duration_seconds histogram ")),
            "{parsed:?}"
        );
        assert_eq!(parsed.len(), names.len(), "every family parsed: {parsed:?}");
    }

    let (status, body) = http_get(&node.metrics, "/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok\n");

    let (status, _) = http_get(&node.metrics, "/nope");
    assert!(status.contains("404"), "{status}");
}

/// Two nodes replicating every key (n = w = r = 2): each put and get through `a` asks `b`,
/// and `a` counts and times those RPCs by peer, kind and result.
#[test]
fn peer_rpcs_are_counted_by_peer_kind_and_result_and_timed() {
    use crate::cluster::{start, wait_for};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let env = [("TROUPE__CLUSTER__N", "2".to_string())];
    let a = start(dir.path(), "a", None, &env);
    let b = start(dir.path(), "b", Some(&a.peer), &env);
    // A settled ring of two: while b's partitions still move to it, reads go to a alone.
    crate::cluster::agreed_ring(&[&a, &b], 2);
    for i in 0..5 {
        assert_eq!(a.cli(&["put", &format!("p{i}"), "v"]).0, 0);
    }
    assert_eq!(a.cli(&["get", "p0"]).0, 0);

    let (_, body) = http_get(&a.metrics, "/metrics");
    let m = samples(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in:\n{body}"));
    assert_eq!(
        get("troupe_peer_rpcs_total{peer=\"b\",kind=\"put\",result=\"ok\"}"),
        5.0,
        "w = 2: every put waited for b"
    );
    assert_eq!(
        get("troupe_peer_rpcs_total{peer=\"b\",kind=\"get\",result=\"ok\"}"),
        1.0
    );
    let timed = check_histogram(&body, "troupe_peer_rpc_duration_seconds");
    assert_eq!(timed["kind=\"put\""], 5.0);
    assert_eq!(timed["kind=\"get\""], 1.0);

    // b's coordinator got every one of those as peer data batches, counted as sent by the
    // peer reader: at rest its sent and handled totals agree, and they are not zero.
    let coordinator = |n: &NodeProc| {
        let (_, body) = http_get(&n.metrics, "/metrics");
        let m = samples(&body);
        let k = "{actor=\"coordinator\"}";
        (
            m[&format!("troupe_actor_messages_sent_total{k}")],
            m[&format!("troupe_actor_messages_handled_total{k}")],
        )
    };
    wait_for("b's coordinator at rest", Duration::from_secs(10), || {
        let (sent, handled) = coordinator(&b);
        sent == handled
    });
    assert!(coordinator(&b).0 >= 6.0, "{:?}", coordinator(&b));
}
