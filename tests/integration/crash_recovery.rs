//! A node is SIGKILLed in the middle of a concurrent write load; after restart every
//! acknowledged put is readable with its value.

use crate::harness::NodeProc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();

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
                    let deadline = Instant::now() + Duration::from_secs(20);
                    for i in 0.. {
                        if Instant::now() > deadline {
                            break;
                        }
                        let key = format!("r{round}-w{w}-{i}");
                        match client.put(key.as_bytes(), &value_for(&key), None).await {
                            Ok(_) => acked.lock().unwrap().push(key),
                            Err(_) => break, // the node died under us
                        }
                    }
                })
            })
            .collect();
        // Let the load run, then kill in the middle of it.
        let start = Instant::now();
        while acked.lock().unwrap().len() < (round + 1) * 2000
            && start.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        node.kill();
        rt.block_on(async {
            for w in writers {
                let _ = w.await;
            }
        });
        node.restart();
    }

    let keys = acked.lock().unwrap().clone();
    assert!(
        keys.len() >= 3000,
        "the load acknowledged only {} puts",
        keys.len()
    );
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
