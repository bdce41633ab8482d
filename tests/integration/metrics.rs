//! The Prometheus endpoint as a scraper meets it: well-formed text exposition with the
//! actor, storage, WAL and membership families, 404 for other paths.

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
/// `name{labels} value` has a numeric value and a `# TYPE` line before it.
fn samples(body: &str) -> HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut out = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        out.insert(series.to_string(), v);
    }
    out
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

    let (status, body) = http_get(&node.metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let m = samples(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in:\n{body}"));
    assert_eq!(get("troupe_up"), 1.0);
    assert!(
        get("troupe_wal_fsyncs_total") >= 20.0,
        "sync durability: a fsync per put"
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

    let (status, _) = http_get(&node.metrics, "/nope");
    assert!(status.contains("404"), "{status}");
}
