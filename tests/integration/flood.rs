//! A flood cannot take the node's memory: 40 connections pipelining 8 MiB puts without
//! reading, plus 1,000 connections that send half a frame and stall. A fresh client's put
//! and get still succeed meanwhile; the stalled connections are closed after
//! `net.read_timeout`.
//!
//! The bound (stated in ARCHITECTURE.md "Bounds"): request bytes read but not answered are
//! at most `net.max_inflight_bytes` (here 64 MiB) plus 64 KiB per connection (1,040 x 64 KiB
//! = 65 MiB); the writes that were read sit in memtables (at most 1 + 2 sealed x
//! `storage.memtable_bytes`, here 3 x 16 MiB) and the WAL queue (64 MiB). We allow 400 MiB
//! of RSS growth; without the budget, 40 x 256 x 8 MiB = 80 GiB of puts could be held
//! (`FLOOD_BUDGET_MIB=16384 FLOOD_PUTS=8` runs it with a budget that does not bind: RSS
//! then grew by 830 MiB with only 8 puts per connection, and the test fails).

use crate::cluster::wait_for;
use crate::harness::{rt_mt, NodeProc};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::message::{encode_request, Request};
use troupe_protocol::Client;

const PUT_BYTES: usize = 8 << 20;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn hello(name: &str) -> Vec<u8> {
    frame(&encode_request(
        0,
        &Request::Hello {
            version: 1,
            client: name.into(),
            token: None,
        },
    ))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn metric(node: &NodeProc, name: &str) -> f64 {
    let (_, body) = crate::metrics::http_get(&node.metrics, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("/metrics has {name}"))
}

#[test]
fn large_pipelined_puts_and_half_frames_stay_within_the_memory_bound() {
    let budget_mib: u64 = std::env::var("FLOOD_BUDGET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let budget = (budget_mib << 20).to_string();
    let mem = (16u64 << 20).to_string();
    let node = NodeProc::start(
        &dir.path().join("d"),
        &[
            ("TROUPE__NET__MAX_INFLIGHT_BYTES", budget.as_str()),
            ("TROUPE__NET__READ_TIMEOUT", "3s"),
            ("TROUPE__STORAGE__MEMTABLE_BYTES", mem.as_str()),
        ],
    );
    let before = node.rss_kib();
    // The peak RSS, sampled every 50 ms for the whole flood.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pid) = (stop.clone(), node.pid());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };

    // 1,000 connections, each half of a 256 KiB put.
    let half: Vec<u8> = {
        let body = encode_request(
            1,
            &Request::Put {
                key: b"half".to_vec(),
                value: vec![1; 256 << 10],
                context: None,
                w: None,
            },
        );
        let mut f = hello("half");
        let full = frame(&body);
        f.extend_from_slice(&full[..full.len() / 2]);
        f
    };
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(&node.client).unwrap();
            s.write_all(&half).unwrap();
            s
        })
        .collect();

    // 40 connections pipelining 8 MiB puts, never reading: writer threads that block once
    // the node stops reading, until we shut their sockets.
    let put = |i: usize| {
        frame(&encode_request(
            i as u64 + 1,
            &Request::Put {
                key: format!("big{i}").into_bytes(),
                value: vec![(i % 251) as u8; PUT_BYTES],
                context: None,
                w: None,
            },
        ))
    };
    let one_put = put(0);
    let puts: usize = std::env::var("FLOOD_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let hogs: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&node.client).unwrap())
        .collect();
    let writers: Vec<_> = hogs
        .iter()
        .map(|s| {
            let mut s = s.try_clone().unwrap();
            let one = one_put.clone();
            std::thread::spawn(move || {
                if s.write_all(&hello("hog")).is_err() {
                    return;
                }
                for _ in 0..puts {
                    if s.write_all(&one).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();

    // The budget fills up: readers are now waiting.
    let busy = ((budget_mib << 20) as f64 / 2.0).min(256.0 * 1048576.0);
    wait_for(
        "the request byte budget is in use",
        Duration::from_secs(60),
        || metric(&node, "troupe_inflight_request_bytes") >= busy,
    );
    // Meanwhile a fresh client works.
    let rt = rt_mt();
    let c = rt
        .block_on(Client::connect(node.client.as_str(), "fresh"))
        .unwrap();
    rt.block_on(c.put(b"fresh", b"v", None))
        .expect("a fresh put");
    let got = rt.block_on(c.get(b"fresh")).expect("a fresh get");
    assert_eq!(got.values, vec![b"v".to_vec()]);

    // The stalled connections are closed after the read timeout.
    wait_for(
        "every half frame is closed",
        Duration::from_secs(30),
        || metric(&node, "troupe_client_read_stalls_total") >= 1000.0,
    );
    for s in &hogs {
        let _ = s.shutdown(Shutdown::Both);
    }
    for w in writers {
        w.join().unwrap();
    }
    drop(stalled);
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "RSS {before} KiB -> peak {peak} KiB (+{growth_mib:.0} MiB), budget {budget_mib} MiB"
    );
    assert!(
        growth_mib < 400.0,
        "node RSS grew by {growth_mib:.0} MiB under the flood (bound 400 MiB)"
    );
}
