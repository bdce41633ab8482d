//! Conflict-free data types across three real nodes (N=3, R=W=2): increments through every
//! node while one node is SIGKILLed and restarted add up to the acknowledged count (plus at
//! most the ones whose outcome is unknown); a remove and a concurrent add of one element on
//! two sides of a partition settle to add-wins on every node; register writes on both sides
//! settle to one value everywhere.

use crate::cluster::{agreed_ring, start, status_of, wait_for};
use crate::harness::{rt_mt, NodeProc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::message::ReplyValue;
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum, Request};

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s".to_string()),
        (
            "TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL",
            "200ms".to_string(),
        ),
    ]
}

fn ring_of_three(nodes: &[&NodeProc]) {
    agreed_ring(nodes, 3);
    wait_for(
        "every node sees every node alive",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                ["n1", "n2", "n3"]
                    .iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        },
    );
}

fn int(v: &Option<ReplyValue>) -> i64 {
    match v {
        Some(ReplyValue::Int(i)) => *i,
        other => panic!("expected an integer value, got {other:?}"),
    }
}

/// What became of one increment.
#[derive(Default)]
struct Tally {
    acked: AtomicUsize,
    /// May or may not have been applied: `timeout`, or the connection died with it.
    unknown: AtomicUsize,
    /// Certainly not applied (`unavailable` before writing, or no connection).
    refused: AtomicUsize,
}

#[test]
fn counters_sets_and_registers_converge_across_crashes_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, &env());
    let seed = n1.peer.clone();
    let n2 = start(dir.path(), "n2", Some(&seed), &env());
    let mut n3 = start(dir.path(), "n3", Some(&seed), &env());
    ring_of_three(&[&n1, &n2, &n3]);
    let rt = rt_mt();
    let addrs: Vec<String> = [&n1, &n2, &n3].iter().map(|n| n.client.clone()).collect();

    // 1. Three clients x 200 increments of 1, one per node; n3 is SIGKILLed and restarted
    //    once the first client is halfway.
    let tally = Arc::new(Tally::default());
    let progress = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = addrs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, addr)| {
            let (tally, progress) = (tally.clone(), progress.clone());
            rt.spawn(async move {
                let mut client: Option<Client> = None;
                for _ in 0..200 {
                    if client.is_none() {
                        client = Client::connect(addr.as_str(), "incr").await.ok();
                    }
                    let Some(c) = &client else {
                        tally.refused.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    let req = Request::Incr {
                        key: b"hits".to_vec(),
                        by: 1,
                        w: None,
                    };
                    match c.call(&req).await {
                        Ok(_) => tally.acked.fetch_add(1, Ordering::SeqCst),
                        Err(ClientError::Server(e)) if e.code == ErrorCode::Unavailable => {
                            tally.refused.fetch_add(1, Ordering::SeqCst)
                        }
                        Err(ClientError::Server(e)) => {
                            assert_eq!(e.code, ErrorCode::Timeout, "{}", e.msg);
                            tally.unknown.fetch_add(1, Ordering::SeqCst)
                        }
                        Err(_) => {
                            client = None; // the node went away with the request
                            tally.unknown.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                    if i == 0 {
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    wait_for(
        "the first client is halfway",
        Duration::from_secs(60),
        || progress.load(Ordering::SeqCst) >= 100,
    );
    n3.kill();
    n3.restart();
    for w in workers {
        rt.block_on(w).expect("an increment worker panicked");
    }
    ring_of_three(&[&n1, &n2, &n3]);
    let (acked, unknown) = (
        tally.acked.load(Ordering::SeqCst) as i64,
        tally.unknown.load(Ordering::SeqCst) as i64,
    );
    assert!(
        acked >= 400,
        "most increments succeed: {acked} acknowledged"
    );
    for addr in &addrs {
        let c = rt
            .block_on(Client::connect(addr.as_str(), "check"))
            .unwrap();
        let req = Request::Counter {
            key: b"hits".to_vec(),
            r: Some(Quorum::All),
        };
        let value = int(&rt.block_on(c.call(&req)).expect("r=all counter").value);
        assert!(
            (acked..=acked + unknown).contains(&value),
            "{addr}: counter {value}, acknowledged {acked}, unknown {unknown}"
        );
    }

    // 2. Add-wins across a partition: n1 is cut off; y is removed on the majority side (n1
    //    never re-adds it), x is removed there and concurrently re-added on n1.
    let c1 = rt
        .block_on(Client::connect(addrs[0].as_str(), "set"))
        .unwrap();
    let c2 = rt
        .block_on(Client::connect(addrs[1].as_str(), "set"))
        .unwrap();
    let members = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    let set = |members: Vec<Vec<u8>>, add: bool, w| {
        if add {
            Request::Sadd {
                key: b"s".to_vec(),
                members,
                w,
            }
        } else {
            Request::Srem {
                key: b"s".to_vec(),
                members,
                w,
            }
        }
    };
    rt.block_on(c1.call(&set(members(&["x", "y"]), true, Some(Quorum::All))))
        .expect("sadd x y on all three");
    let (code, _, err) = n1.cli(&["admin", "fault", "drop", "all", "--yes"]);
    assert_eq!(code, 0, "{err}");
    rt.block_on(c2.call(&set(members(&["x", "y"]), false, None)))
        .expect("srem on the majority side");
    rt.block_on(c1.call(&set(members(&["x"]), true, Some(Quorum::One))))
        .expect("sadd x alone on n1");
    // 3. Register writes on both sides: the later timestamp wins everywhere.
    let reg = |v: &str, w| Request::RegPut {
        key: b"r".to_vec(),
        value: v.as_bytes().to_vec(),
        w,
    };
    rt.block_on(c1.call(&reg("from-n1", Some(Quorum::One))))
        .expect("reg_put alone on n1");
    rt.block_on(c2.call(&reg("from-n2", None)))
        .expect("reg_put on the majority side");
    let (code, _, err) = n1.cli(&["admin", "fault", "heal", "--yes"]);
    assert_eq!(code, 0, "{err}");
    ring_of_three(&[&n1, &n2, &n3]);

    let mut registers = Vec::new();
    for addr in &addrs {
        let c = rt
            .block_on(Client::connect(addr.as_str(), "check"))
            .unwrap();
        let got = rt
            .block_on(c.call(&Request::Smembers {
                key: b"s".to_vec(),
                r: Some(Quorum::All),
            }))
            .expect("r=all smembers");
        let got: Vec<Vec<u8>> = got
            .members
            .expect("members")
            .into_iter()
            .map(|m| m.into_vec())
            .collect();
        assert_eq!(
            got,
            members(&["x"]),
            "{addr}: add wins for x, y stays removed"
        );
        let got = rt
            .block_on(c.call(&Request::RegGet {
                key: b"r".to_vec(),
                r: Some(Quorum::All),
            }))
            .expect("r=all reg_get");
        registers.push(got.value);
    }
    assert!(
        registers.iter().all(|r| *r == registers[0]),
        "one register value everywhere: {registers:?}"
    );
    assert!(
        matches!(&registers[0], Some(ReplyValue::Bytes(b)) if b.as_slice() == b"from-n2"),
        "n2 wrote last: {:?}",
        registers[0]
    );
}
