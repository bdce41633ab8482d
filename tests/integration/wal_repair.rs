//! A damaged WAL as an operator meets it (issue 8): a flipped length bit in the middle of a
//! segment stops the node (instead of truncating the acknowledged writes after it); the
//! `troupe repair-wal` command its error names keeps a copy and cuts the segment; the node
//! then starts with every write before the damage.

use crate::harness::{NodeProc, BIN};
use std::process::Command;
use troupe_actors::memtable::wal::format::{record_offsets, BATCH_HEADER_LEN};

fn start_fails(node: &NodeProc) -> String {
    let out = Command::new(BIN)
        .args(["node", "--data-dir"])
        .arg(&node.data_dir)
        .args(["--listen", &node.client, "--admin-listen", &node.admin])
        .args(["--metrics-listen", &node.metrics])
        .args(["--peer-listen", &node.peer])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "node started on a damaged WAL");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_damaged_wal_refuses_to_start_until_repair_wal_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);
    for i in 0..40 {
        assert_eq!(node.cli(&["put", &format!("k{i:02}"), "v"]).0, 0);
    }
    node.kill();
    let wal_dir = node.data_dir.join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = &segs[0];
    let mut data = std::fs::read(seg).unwrap();
    let offsets = record_offsets(&data);
    assert_eq!(offsets.len(), 40);
    let at = offsets[20];
    data[at + 3] ^= 0x80;
    std::fs::write(seg, &data).unwrap();

    let err = start_fails(&node);
    assert!(err.contains(&format!("at offset {at}")), "{err}");
    assert_eq!(
        std::fs::read(seg).unwrap(),
        data,
        "start-up changed the segment"
    );
    let cmd = err
        .split("troupe repair-wal ")
        .nth(1)
        .unwrap_or_else(|| panic!("no repair command in: {err}"))
        .trim();
    let mut args: Vec<&str> = cmd.split_whitespace().collect();
    args.push("--json");
    let out = Command::new(BIN)
        .arg("repair-wal")
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records_kept"], 20);
    assert_eq!(v["records_dropped"], 19, "the damaged record is unreadable");
    let copy = v["copy"].as_str().unwrap();
    assert_eq!(
        std::fs::read(copy).unwrap(),
        data,
        "the copy is the original"
    );

    // A second run at an offset inside a batch header is refused with the offset to use
    // instead: the start of that batch (each put was its own group commit).
    let batch = at - BATCH_HEADER_LEN;
    let out = Command::new(BIN)
        .args(["repair-wal", "--data-dir"])
        .arg(&node.data_dir)
        .args(["--segment", "1", "--truncate-at"])
        .arg((at - 3).to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--truncate-at {batch}")), "{err}");

    node.restart();
    assert_eq!(node.cli(&["get", "k19"]).0, 0);
    assert_eq!(node.cli(&["get", "k20"]).0, 1, "cut by the repair");
}
