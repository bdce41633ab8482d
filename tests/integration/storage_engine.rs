//! Storage engine scenarios against real node processes with tiny memtables, so flushes,
//! compactions and GC run all the time:
//! - crash: SIGKILL at random moments under write load (30+ times); every acknowledged
//!   write is present after restart, with its value;
//! - corruption: a flipped byte in a data block, a table index, a bloom filter, the manifest
//!   or the middle of a WAL segment is detected and reported with the file name; the node
//!   never answers with wrong data;
//! - space: overwriting the same keys many times leaves the data directory within a small
//!   multiple of the live data once compaction and GC settle;
//! - disk errors (RLIMIT_FSIZE -> EFBIG): a failed WAL write poisons the node, a failed
//!   compaction output does not (it is reported and retried).

use crate::harness::{rt, AckLog, NodeProc, Rng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use troupe_protocol::Client;

/// Small everything: a flush every ~32 KiB of writes (of WAL: the memory limit is out of
/// the way, so where the tables are cut depends on the writes alone), compactions soon after.
const SMALL: &[(&str, &str)] = &[
    ("TROUPE__STORAGE__MEMTABLE_BYTES", "1048576"),
    ("TROUPE__STORAGE__MEMTABLE_WAL_BYTES", "32768"),
    ("TROUPE__STORAGE__TARGET_TABLE_BYTES", "65536"),
    ("TROUPE__STORAGE__LEVEL1_BYTES", "131072"),
    ("TROUPE__STORAGE__L0_COMPACTION_TRIGGER", "2"),
    ("TROUPE__STORAGE__BLOCK_CACHE_BYTES", "65536"),
];

fn value_for(key: &str) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    let mut h: u64 = 0xcbf29ce484222325; // FNV-1a: a key-dependent filler
    for b in key.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    v.extend_from_slice(&h.to_le_bytes().repeat(4));
    v.extend_from_slice(&[b'.'; 40]);
    v
}

#[test]
fn acknowledged_writes_survive_30_sigkills_during_flush_and_compaction() {
    let mut rng = Rng::from_env("crash test");
    let seed = rng.0;
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), SMALL);
    let rt = crate::harness::rt_mt();
    let acked: Arc<AckLog> = Arc::default();
    let started = Instant::now();
    for kills in 0..30 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (acked, stop, addr) = (acked.clone(), stop.clone(), node.client.clone());
                rt.spawn(async move {
                    let t = Some(Duration::from_secs(5));
                    let Ok(c) = Client::connect_with(addr.as_str(), "crash", None, t).await else {
                        return;
                    };
                    // Bounded in count; in practice the kill below ends it much sooner.
                    for i in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let key = format!("k{kills}-{w}-{i}");
                        match c.put(key.as_bytes(), &value_for(&key), None).await {
                            Ok(_) => acked.push(key),
                            Err(_) => return, // killed under us
                        }
                    }
                })
            })
            .collect();
        // Kill after a seeded number of further acknowledged writes (some thousands of
        // bytes: with 32 KiB memtables that is several flushes and compactions apart).
        let target = acked.len() + 50 + (rng.next() % 600) as usize;
        acked.wait_for(target, &format!("round {kills}; seed {seed}"));
        node.kill();
        stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for w in writers {
                let _ = w.await;
            }
        });
        node.restart();
    }
    let kills = 30;
    let keys = acked.keys();
    let log = node.log_text();
    assert!(
        log.contains("start-up GC deleted") || log.contains("orphan"),
        "no kill landed during a flush or compaction (no orphans were ever cleaned up); seed {seed}"
    );
    let client = rt
        .block_on(Client::connect(node.client.as_str(), "verify"))
        .unwrap();
    let client = Arc::new(client);
    rt.block_on(async {
        for chunk in keys.chunks(256) {
            let gets: Vec<_> = chunk
                .iter()
                .map(|k| {
                    let c = client.clone();
                    let k = k.clone();
                    tokio::spawn(async move { (c.get(k.as_bytes()).await, k) })
                })
                .collect();
            for g in gets {
                let (got, key) = g.await.unwrap();
                let got = got.unwrap_or_else(|e| panic!("get {key}: {e}; seed {seed}"));
                assert_eq!(
                    got.values,
                    vec![value_for(&key)],
                    "acknowledged key {key} lost or wrong after {kills} SIGKILLs; seed {seed}"
                );
            }
        }
    });
    let (code, stats, _) = node.cli(&["admin", "stats", "--json"]);
    assert_eq!(code, 0);
    eprintln!(
        "crash test: {kills} kills, {} acknowledged writes verified in {:?}",
        keys.len(),
        started.elapsed()
    );
    assert!(stats.contains("\"flushes\""), "{stats}");
}

/// Writes `n` keys, flushes and compacts everything into one bottom table, stops the node.
fn settled_node(dir: &Path, n: usize) -> NodeProc {
    let mut node = NodeProc::start(dir, SMALL);
    let rt = rt();
    rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "load").await.unwrap();
        for i in 0..n {
            let key = format!("key{i:05}");
            c.put(key.as_bytes(), &value_for(&key), None).await.unwrap();
        }
    });
    for cmd in ["flush", "compact", "gc"] {
        let (code, out, err) = node.cli(&["admin", cmd]);
        assert_eq!(code, 0, "admin {cmd}: {out}{err}");
    }
    node.signal(libc::SIGTERM);
    assert!(node.wait_exit(Duration::from_secs(20)).success());
    node
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    std::fs::write(path, data).unwrap();
}

fn footer_u64(path: &Path, at: usize) -> u64 {
    let data = std::fs::read(path).unwrap();
    let footer = &data[data.len() - 68..];
    u64::from_le_bytes(footer[at..at + 8].try_into().unwrap())
}

/// Starting must fail and the log must name `file`.
fn assert_refuses_to_start(node: &NodeProc, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let mut cmd = std::process::Command::new(crate::harness::BIN);
    let out = cmd
        .args(["node", "--data-dir"])
        .arg(&node.data_dir)
        .args(["--listen", &node.client, "--admin-listen", &node.admin])
        .args([
            "--metrics-listen",
            &node.metrics,
            "--peer-listen",
            &node.peer,
        ])
        .envs(SMALL.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "node started on a corrupt {name}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name), "error does not name {name}: {err}");
}

#[test]
fn corruption_is_detected_and_reported_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut node = settled_node(&data, 400);
    let tables = data.join("tables");
    let sst = files_with_suffix(&tables, ".sst");
    assert_eq!(sst.len(), 1, "{sst:?}");
    let sst = sst[0].clone();
    let pristine = std::fs::read(&sst).unwrap();

    // A data block: the node starts (the footer, index and filter are fine) but a get of a
    // key in that block is an error, never a wrong or missing value.
    flip(&sst, 20);
    node.restart();
    let rt = rt();
    let c = rt
        .block_on(Client::connect(node.client.as_str(), "c"))
        .unwrap();
    let got = rt.block_on(c.get(b"key00000"));
    // The only replica failed the read: the quorum is not met (`unavailable`), and the
    // message carries the replica's error, which names the file and the section.
    let name = sst.file_name().unwrap().to_string_lossy().to_string();
    match &got {
        Err(troupe_protocol::ClientError::Server(e)) => {
            assert_eq!(e.code, troupe_protocol::ErrorCode::Unavailable);
            assert!(
                e.msg.contains(&name) && e.msg.contains("data block"),
                "{}",
                e.msg
            );
        }
        other => panic!("corrupt block answered {other:?}"),
    }
    let got = rt.block_on(c.get(b"key00399")).unwrap();
    assert_eq!(
        got.values,
        vec![value_for("key00399")],
        "other blocks still read"
    );
    node.kill();
    assert!(
        node.log_text().contains(&name) && node.log_text().contains("data block"),
        "the log does not name {name}"
    );

    // The index and the bloom filter are checked when the table opens: start-up refuses.
    std::fs::write(&sst, &pristine).unwrap();
    let index_at = footer_u64(&sst, 24);
    flip(&sst, index_at + 3);
    assert_refuses_to_start(&node, &sst);
    std::fs::write(&sst, &pristine).unwrap();
    let filter_at = footer_u64(&sst, 0);
    flip(&sst, filter_at + 5);
    assert_refuses_to_start(&node, &sst);
    std::fs::write(&sst, &pristine).unwrap();

    // The manifest: a record in the middle (not a torn tail) fails its checksum.
    let manifest = tables.join("MANIFEST");
    let m = std::fs::read(&manifest).unwrap();
    flip(&manifest, (m.len() / 2) as u64);
    assert_refuses_to_start(&node, &manifest);
    std::fs::write(&manifest, &m).unwrap();

    // The WAL: write more so the live segment has records, then flip one in the middle.
    node.restart();
    rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "w").await.unwrap();
        for i in 0..50 {
            c.put(format!("wal{i:03}").as_bytes(), &[7u8; 100], None)
                .await
                .unwrap();
        }
    });
    node.kill();
    let segs = files_with_suffix(&data.join("wal"), ".wal");
    let seg = segs.last().unwrap();
    // The middle of the log, not of the file: the writer keeps zeros preallocated past the
    // log's end (ARCHITECTURE.md, the local write path), and damage there damages nothing.
    let bytes = std::fs::read(seg).unwrap();
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
    assert!(
        len > 2000,
        "WAL segment too small to corrupt its middle: {len}"
    );
    flip(seg, len / 2);
    assert_refuses_to_start(&node, seg);
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn overwriting_the_same_keys_keeps_the_data_directory_near_the_live_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let node = NodeProc::start(&data, SMALL);
    let keys = 1000;
    let value_len = 100;
    let rt = rt();
    rt.block_on(async {
        let c = Arc::new(
            Client::connect(node.client.as_str(), "space")
                .await
                .unwrap(),
        );
        // Each overwrite passes the context of the previous one, as a client replacing a
        // value does (a blind overwrite would keep both as siblings).
        let mut contexts: Vec<Option<Vec<u8>>> = vec![None; keys];
        for round in 0..20u8 {
            let puts: Vec<_> = (0..keys)
                .map(|i| {
                    let c = c.clone();
                    let ctx = contexts[i].take();
                    tokio::spawn(async move {
                        let key = format!("key{i:05}");
                        c.put(key.as_bytes(), &vec![round; value_len], ctx).await
                    })
                })
                .collect();
            for (i, p) in puts.into_iter().enumerate() {
                contexts[i] = Some(p.await.unwrap().unwrap());
            }
        }
    });
    for cmd in ["flush", "compact", "gc"] {
        let (code, out, err) = node.cli(&["admin", cmd]);
        assert_eq!(code, 0, "admin {cmd}: {out}{err}");
    }
    let live = (keys * (8 + value_len)) as u64;
    let total = dir_bytes(&data);
    eprintln!("space: {total} bytes on disk for {live} bytes of live data");
    assert!(
        total < 4 * live,
        "{total} bytes on disk for {live} bytes of live data after 20 overwrites"
    );
    rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "check")
            .await
            .unwrap();
        let got = c.get(b"key00042").await.unwrap();
        assert_eq!(got.values, vec![vec![19u8; value_len]]);
    });
}

/// A real I/O error from the kernel: the node runs under RLIMIT_FSIZE = 1 MiB, so once the
/// WAL segment reaches it, `write` fails with EFBIG. The write that hit it and every later
/// one get an error (never an acknowledgement), status and log say why, acknowledged writes
/// stay readable; after a restart without the limit every acknowledged write is there.
#[test]
fn a_failed_wal_write_poisons_the_node_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::new(
        &dir.path().join("d"),
        "efbig",
        &[("TROUPE__STORAGE__DURABILITY", "sync")],
        &[],
    );
    node.file_size_limit = Some(1 << 20);
    let mut node = node.started();
    let rt = crate::harness::rt();
    let value = vec![b'x'; 4096];
    let (acked, refused) = rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "efbig")
            .await
            .unwrap();
        let mut acked = Vec::new();
        let mut refused = None;
        // 1 MiB / 4 KiB values: the limit is hit within ~260 writes; 1000 bounds the loop.
        for i in 0..1000 {
            let key = format!("k{i:04}");
            match c.put(key.as_bytes(), &value, None).await {
                Ok(_) => acked.push(key),
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            }
        }
        let refused = refused.expect("no write failed although the WAL outgrew RLIMIT_FSIZE");
        // The write whose WAL append failed may have partly reached the file: its outcome is
        // unknown, which the protocol calls `timeout`, never `internal`.
        assert!(refused.starts_with("timeout:"), "{refused}");
        // Later writes are refused too, with the reason.
        let later = c.put(b"later", b"v", None).await.expect_err("poisoned");
        assert!(later.to_string().contains("refuses writes"), "{later}");
        // A write refused up front was certainly not applied: not a `timeout`.
        assert!(later.to_string().starts_with("internal:"), "{later}");
        // Reads keep working.
        let got = c.get(acked[0].as_bytes()).await.expect("reads work");
        assert_eq!(got.values, vec![value.clone()]);
        (acked, refused)
    });
    assert!(
        acked.len() > 100,
        "only {} writes before the limit",
        acked.len()
    );
    eprintln!("{} writes acknowledged, then: {refused}", acked.len());
    let (code, status, _) = node.cli(&["admin", "status", "--json"]);
    assert_eq!(code, 0);
    assert!(
        status.contains("too large"),
        "status must say why: {status}"
    );
    assert!(
        node.log_text().contains("too large"),
        "the log must say why"
    );

    node.kill();
    node.file_size_limit = None;
    node.restart();
    rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "efbig")
            .await
            .unwrap();
        for key in &acked {
            let got = c.get(key.as_bytes()).await.unwrap();
            assert_eq!(got.values, vec![value.clone()], "acknowledged {key} lost");
        }
        c.put(b"after-restart", b"v", None)
            .await
            .expect("a restarted node takes writes again");
    });
}

/// Asks `troupe admin <cmd> --json` until `done` holds for its reply (at most 60 s: the
/// node's compactor retries on its own backoff, which the test cannot fire by hand).
fn admin_until(
    node: &NodeProc,
    cmd: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = node.cli(&["admin", cmd, "--json"]);
        assert_eq!(code, 0, "admin {cmd}: {err}");
        let out: serde_json::Value = serde_json::from_str(&out).expect("admin replies JSON");
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "admin {cmd} never got there: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 8, defect 3, with a real error from the kernel: under RLIMIT_FSIZE = 96 KiB the WAL
/// segments and flushed tables (~32 KiB memtables) fit, but the L1 output of compacting four
/// L0 tables (distinct keys, ~130 KiB) does not, so every compaction fails with EFBIG. The
/// node must not poison itself: writes are still acknowledged, `admin status` and /metrics say
/// compaction is failing and why, and after a restart without the limit the compaction that
/// kept failing runs and every acknowledged write is there.
#[test]
fn a_compaction_that_cannot_write_its_output_stops_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::new(
        &dir.path().join("d"),
        "efbig-compaction",
        &[
            ("TROUPE__STORAGE__DURABILITY", "sync"),
            ("TROUPE__STORAGE__MEMTABLE_BYTES", "32768"),
            ("TROUPE__STORAGE__TARGET_TABLE_BYTES", "1048576"),
            ("TROUPE__STORAGE__L0_COMPACTION_TRIGGER", "4"),
            ("TROUPE__STORAGE__L0_STOP_TABLES", "100"),
        ],
        &[],
    );
    node.file_size_limit = Some(96 << 10);
    let mut node = node.started();
    let rt = crate::harness::rt();
    let value = vec![b'v'; 1024];
    let keys: Vec<String> = (0..400).map(|i| format!("key{i:05}")).collect();
    let write = |keys: &[String]| {
        rt.block_on(async {
            let c = Client::connect(node.client.as_str(), "efbig")
                .await
                .unwrap();
            for key in keys {
                c.put(key.as_bytes(), &value, None)
                    .await
                    .unwrap_or_else(|e| panic!("{key} refused while only compaction fails: {e}"));
            }
        })
    };
    let compaction_failing = |status: &serde_json::Value| {
        status["background"].as_array().is_some_and(|b| {
            b.iter().any(|l| {
                l.as_str()
                    .is_some_and(|l| l.starts_with("compaction failing"))
            })
        })
    };
    write(&keys[..200]);
    let status = admin_until(&node, "status", compaction_failing);
    assert!(
        status.to_string().contains("too large"),
        "status must say why: {status}"
    );
    assert_eq!(status["health"], "ok", "not poisoned: {status}");
    // Writes go on while compaction keeps failing.
    write(&keys[200..]);
    let status = admin_until(&node, "status", |_| true);
    assert_eq!(status["health"], "ok", "{status}");
    let stats = admin_until(&node, "stats", |_| true);
    assert!(stats["compactor"]["failures"].as_u64() > Some(0), "{stats}");
    assert!(stats["compactor"]["last_error"].is_string(), "{stats}");
    let metrics = metrics_body(&node);
    for line in [
        "\ntroupe_up 1\n",
        "\ntroupe_background_failing{work=\"compaction\"} 1\n",
        "\ntroupe_background_failing{work=\"flush\"} 0\n",
    ] {
        assert!(metrics.contains(line), "missing {line:?}:\n{metrics}");
    }
    assert!(!metrics.contains("\ntroupe_compaction_failures_total 0\n"));

    // Space is back: after a restart without the limit the compaction runs.
    node.kill();
    node.file_size_limit = None;
    node.restart();
    let stats = admin_until(&node, "stats", |s| {
        s["engine"]["compactions"].as_u64() > Some(0)
    });
    assert!(
        stats["engine"]["levels"][1]["tables"].as_u64() > Some(0),
        "{stats}"
    );
    let status = admin_until(&node, "status", |_| true);
    assert!(!compaction_failing(&status), "{status}");
    rt.block_on(async {
        let c = Client::connect(node.client.as_str(), "efbig")
            .await
            .unwrap();
        for key in &keys {
            let got = c.get(key.as_bytes()).await.unwrap();
            assert_eq!(got.values, vec![value.clone()], "acknowledged {key} lost");
        }
    });
}

fn metrics_body(node: &NodeProc) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&node.metrics).expect("metrics port");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .expect("http response")
        .1
        .to_string()
}
