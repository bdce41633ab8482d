//! A client that pipelines requests and never reads its responses cannot grow the node's
//! memory without bound.
//!
//! The bound: the node keeps at most `max_inflight_per_connection` (256) responses for a
//! connection, here 256 x 64 KiB = 16 MiB, plus socket and read buffers. We allow 64 MiB of
//! RSS growth; without backpressure the 20,000 requests below would queue 1.3 GB of responses.

use crate::harness::{rt, NodeProc};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use troupe_protocol::message::{encode_request, Request};
use troupe_protocol::Client;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_client_that_never_reads_cannot_grow_node_memory_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let rt = rt();
    let good = rt
        .block_on(Client::connect(node.client.as_str(), "good"))
        .unwrap();
    let big = vec![7u8; 64 * 1024];
    rt.block_on(good.put(b"big", &big, None)).unwrap();
    let before = node.rss_kib();

    let mut s = TcpStream::connect(&node.client).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut batch = frame(&encode_request(
        0,
        &Request::Hello {
            version: 1,
            client: "hog".into(),
            token: None,
        },
    ));
    for id in 1..=20_000u64 {
        batch.extend(frame(&encode_request(
            id,
            &Request::Get {
                key: b"big".to_vec(),
                r: None,
                after: None,
            },
        )));
    }
    // Write until the node stops reading (our write times out) or everything is sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while sent < batch.len() && Instant::now() < deadline {
        match s.write(&batch[sent..]) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = node.rss_kib();
    eprintln!("sent {sent} of {} bytes", batch.len());
    eprintln!("RSS {before} -> {after} KiB");
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    assert!(
        growth_mib < 64.0,
        "node RSS grew by {growth_mib:.1} MiB ({before} -> {after} KiB) for a client that never reads"
    );

    // Other clients are still served while the hog is stalled.
    rt.block_on(async {
        good.ping().await.unwrap();
        assert_eq!(good.get(b"big").await.unwrap().values, vec![big.clone()]);
    });
    drop(s);
}
