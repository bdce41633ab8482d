//! A node is SIGKILLed in the middle of a concurrent write load; after restart every
//! acknowledged put is readable with its value.

use crate::harness::{AckLog, NodeProc};
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::Client;

fn value_for(key: &str) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.extend_from_slice(&blake3_like(key));
    v
}

/// A cheap, key-dependent filler so a value from the wrong key would be noticed.
fn blake3_like(key: &str) -> Vec<u8> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h.to_le_bytes().repeat(8)
}

#[test]
fn acknowledged_puts_survive_sigkill_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);
    let rt = crate::harness::rt_mt();
    let acked: Arc<AckLog> = Arc::default();

    for round in 0..3 {
        let addr = node.client.clone();
        let writers: Vec<_> = (0..16)
            .map(|w| {
                let acked = acked.clone();
                let addr = addr.clone();
                rt.spawn(async move {
                    let timeout = Some(Duration::from_secs(10));
                    let client = Client::connect_with(addr.as_str(), "crash-test", None, timeout)
                        .await
                        .unwrap();
                    // Bounded in count; the kill below ends it much sooner.
                    for i in 0..100_000 {
                        let key = format!("r{round}-w{w}-{i}");
                        match client.put(key.as_bytes(), &value_for(&key), None).await {
                            Ok(_) => acked.push(key),
                            Err(_) => break, // the node died under us
                        }
                    }
                })
            })
            .collect();
        // Kill in the middle of the load: once this round has 1,000 acknowledged writes,
        // while 16 writers still have puts in flight.
        acked.wait_for((round + 1) * 1000, &format!("round {round}"));
        node.kill();
        rt.block_on(async {
            for w in writers {
                let _ = w.await;
            }
        });
        node.restart();
    }

    let keys = acked.keys();
    let client = rt
        .block_on(Client::connect(node.client.as_str(), "verify"))
        .unwrap();
    rt.block_on(async {
        for key in &keys {
            let got = client.get(key.as_bytes()).await.unwrap();
            assert_eq!(
                got.values,
                vec![value_for(key)],
                "acknowledged key {key} lost or wrong after SIGKILL"
            );
        }
    });
}
