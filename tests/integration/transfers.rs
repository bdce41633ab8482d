//! Ring changes with real processes: partitions move to new owners through the Handoff
//! actors while clients keep writing.
//! - A fourth node joins three under a write load (w=quorum): every acknowledged write is
//!   read back with r=all afterwards, the newcomer fetched about its share of the keys
//!   (within 1.2x of 3/4 of them: with N=3 it holds 3 of every 4 replicas' worth), and the
//!   clients saw no error but a bounded count of `timeout`.
//! - A transfer whose receiver is SIGKILLed mid-way resumes from its saved cursor after
//!   the restart and completes.
//! - 4 -> 3 by `admin leave` under load, then 3 -> 2 by `admin remove` of a SIGKILLed node
//!   (refused while it was alive), then back to 3 by a join: every key ends with N
//!   replicas, checked on each primary with `admin object`.
//!
//! Every wait is on an observable event (`admin ring` settled, `admin transfers`,
//! membership status), never on a fixed sleep.

use crate::cluster::{agreed_ring, agreed_ring_within, dead_bound, start, status_of, wait_for};
use crate::harness::{rt_mt, AckLog, NodeProc};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::{Client, ClientError, Quorum};

const VALUE_LEN: usize = 100;

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL", "200ms".into()),
        ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "3s".into()),
        ("TROUPE__HANDOFF__DROP_DELAY", "1s".into()),
    ]
}

fn json(node: &NodeProc, args: &[&str]) -> Value {
    let mut a = vec!["admin"];
    a.extend_from_slice(args);
    a.push("--json");
    let (code, out, err) = node.cli(&a);
    assert_eq!(code, 0, "admin {args:?} on {}: {err}", node.node_id);
    serde_json::from_str(&out).expect("--json is JSON")
}

fn transfer_stat(node: &NodeProc, name: &str) -> u64 {
    json(node, &["stats"])["transfers"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("transfers.{name} in admin stats of {}", node.node_id))
}

fn value_of(key: &str) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    // Keys `big-*` carry 1 KiB values (the resume test needs several chunks per stream).
    let len = if key.starts_with("big-") {
        1024
    } else {
        VALUE_LEN
    };
    v.resize(len, b'.');
    v
}

fn connect(rt: &tokio::runtime::Runtime, n: &NodeProc) -> Arc<Client> {
    let addr = n.client.clone();
    Arc::new(rt.block_on(async move { Client::connect(addr.as_str(), "transfers").await.unwrap() }))
}

/// Writes `keys` with w=quorum, 100 at a time, spread over `clients`; all must succeed.
fn preload(rt: &tokio::runtime::Runtime, clients: &[Arc<Client>], keys: &[String]) {
    rt.block_on(async {
        for chunk in keys.chunks(100) {
            let puts: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let c = clients[i % clients.len()].clone();
                    let k = k.clone();
                    tokio::spawn(async move { c.put(k.as_bytes(), &value_of(&k), None).await })
                })
                .collect();
            for p in puts {
                p.await.unwrap().expect("preload put with every node up");
            }
        }
    });
}

/// A write load until `stop`: keys `{prefix}{i}`, 8 in flight, w=quorum. Acknowledged
/// keys go to `acked`; errors are counted, `timeout`s apart.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AckLog>,
    timeouts: Arc<AtomicU64>,
    others: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn load(rt: &tokio::runtime::Runtime, clients: &[Arc<Client>], prefix: &str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AckLog::default());
    let timeouts = Arc::new(AtomicU64::new(0));
    let others = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = (0..8)
        .map(|t| {
            let c = clients[t % clients.len()].clone();
            let (stop, acked, timeouts, others) = (
                stop.clone(),
                acked.clone(),
                timeouts.clone(),
                others.clone(),
            );
            let prefix = prefix.to_string();
            rt.spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("{prefix}{t}-{i:06}");
                    i += 1;
                    match c.put(k.as_bytes(), &value_of(&k), None).await {
                        Ok(_) => acked.push(k),
                        Err(ClientError::Server(e)) if e.code.to_string() == "timeout" => {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => others.lock().unwrap().push(format!("{k}: {e}")),
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        acked,
        timeouts,
        others,
        tasks,
    }
}

impl Load {
    fn finish(self, rt: &tokio::runtime::Runtime) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            rt.block_on(t).unwrap();
        }
        let others = self.others.lock().unwrap().clone();
        assert!(
            others.is_empty(),
            "only timeouts are allowed during a ring change: {} other error(s), first: {:?}",
            others.len(),
            others.first()
        );
        (self.acked.keys(), self.timeouts.load(Ordering::Relaxed))
    }
}

/// Every key reads back with its value with r=all, through the clients in turn.
fn read_back(rt: &tokio::runtime::Runtime, clients: &[Arc<Client>], keys: &[String], what: &str) {
    rt.block_on(async {
        for chunk in keys.chunks(200) {
            let gets: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let c = clients[i % clients.len()].clone();
                    let k = k.clone();
                    tokio::spawn(async move {
                        let r = c.get_with(k.as_bytes(), Some(Quorum::All)).await;
                        (k, r)
                    })
                })
                .collect();
            for g in gets {
                let (k, r) = g.await.unwrap();
                let r = r.unwrap_or_else(|e| panic!("{what}: r=all get of {k}: {e}"));
                assert_eq!(r.values, vec![value_of(&k)], "{what}: {k}");
            }
        }
    });
}

fn three_nodes(dir: &std::path::Path, extra: &[(&'static str, String)]) -> Vec<NodeProc> {
    let mut e = env();
    e.extend(extra.iter().cloned());
    let n1 = start(dir, "n1", None, &e);
    let seed = n1.peer.clone();
    let n2 = start(dir, "n2", Some(&seed), &e);
    let n3 = start(dir, "n3", Some(&seed), &e);
    agreed_ring(&[&n1, &n2, &n3], 3);
    vec![n1, n2, n3]
}

#[test]
fn a_join_under_load_moves_its_share_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path(), &[]);
    let rt = rt_mt();
    let clients: Vec<Arc<Client>> = nodes.iter().map(|n| connect(&rt, n)).collect();
    let before: Vec<String> = (0..3000).map(|i| format!("pre-{i:05}")).collect();
    preload(&rt, &clients, &before);

    let running = load(&rt, &clients, "live-");
    running.acked.wait_for(200, "writes before the join");
    let seed = nodes[0].peer.clone();
    let n4 = start(dir.path(), "n4", Some(&seed), &env());
    nodes.push(n4);
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let ring = agreed_ring(&refs, 4);
    let at_settle = running.acked.len();
    running
        .acked
        .wait_for(at_settle + 200, "writes after the join");
    let (live, timeouts) = running.finish(&rt);
    eprintln!(
        "join: {} live writes acknowledged, {timeouts} timeout(s); ring {}",
        live.len(),
        ring["version"]
    );
    assert!(
        timeouts as usize <= live.len() / 20 + 5,
        "a bounded count of timeouts: {timeouts} against {} acknowledged",
        live.len()
    );

    let mut all = before.clone();
    all.extend(live);
    let all_clients: Vec<Arc<Client>> = nodes.iter().map(|n| connect(&rt, n)).collect();
    read_back(&rt, &all_clients, &all, "after the join");

    // The newcomer fetched about its share: with N=3 over 4 members it holds 3/4 of the
    // keys. Keys written after it joined reached it as writes, not through the transfer,
    // so the bound is over every key written.
    let received = transfer_stat(&nodes[3], "keys_received");
    let bytes = transfer_stat(&nodes[3], "bytes_received");
    let share = all.len() as f64 * 3.0 / 4.0;
    eprintln!(
        "n4 received {received} keys ({bytes} bytes) by transfer; its share of {} keys is {share:.0}",
        all.len()
    );
    assert!(
        received as f64 >= before.len() as f64 * 0.6,
        "n4 fetched the data it owns: {received} keys"
    );
    assert!(
        (received as f64) <= share * 1.2,
        "n4 fetched {received} keys, more than 1.2x its share {share:.0}"
    );
    for n in &nodes[..3] {
        assert_eq!(
            transfer_stat(n, "keys_received"),
            0,
            "{}: an old owner fetches nothing",
            n.node_id
        );
    }
    // The old owners delete what they no longer own once the new owner has it.
    wait_for(
        "old owners drop what n4 took",
        Duration::from_secs(30),
        || {
            nodes[..3]
                .iter()
                .all(|n| transfer_stat(n, "partitions_dropped") > 0)
        },
    );
    read_back(&rt, &all_clients, &all, "after the old owners dropped");
}

#[test]
fn a_transfer_cut_by_sigkill_of_the_receiver_resumes() {
    let dir = tempfile::tempdir().unwrap();
    // Slow transfers (the fetch is paced) so the kill lands mid-way.
    let slow = vec![(
        "TROUPE__HANDOFF__TRANSFER_BYTES_PER_SEC",
        "150000".to_string(),
    )];
    let nodes = three_nodes(dir.path(), &slow);
    let rt = rt_mt();
    let clients: Vec<Arc<Client>> = nodes.iter().map(|n| connect(&rt, n)).collect();
    // About 8 MiB, of which n4 takes 3/4 in 256 KiB chunks: many chunks per stream.
    let keys: Vec<String> = (0..8000).map(|i| format!("big-{i:05}")).collect();
    preload(&rt, &clients, &keys);

    let mut e = env();
    e.extend(slow.iter().cloned());
    let mut n4 = start(dir.path(), "n4", Some(&nodes[0].peer), &e);
    // Two chunks in (a chunk is 256 KiB, ~250 of these keys): the first one's cursor has
    // been written by then.
    wait_for("n4 fetched some keys", Duration::from_secs(60), || {
        let t = json(&n4, &["transfers"]);
        t["streams"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["keys"].as_u64().unwrap_or(0) > 400))
    });
    n4.kill();
    n4.restart();
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("n4 resumed a stream", Duration::from_secs(30), || {
            n4.log_text().contains("resuming from the saved cursor")
        })
    }));
    if resumed.is_err() {
        panic!("n4 did not resume; its log:\n{}", n4.log_text());
    }
    let refs: Vec<&NodeProc> = nodes.iter().chain(std::iter::once(&n4)).collect();
    let ring = agreed_ring_within(&refs, 4, Duration::from_secs(120));
    let after_restart = transfer_stat(&n4, "keys_received");
    eprintln!(
        "resumed transfer: {after_restart} keys fetched after the restart; ring {}",
        ring["version"]
    );
    assert!(
        (after_restart as f64) < keys.len() as f64 * 0.75,
        "the restarted receiver fetched only the rest ({after_restart} keys), not its whole share again"
    );
    let mut all_clients = clients.clone();
    all_clients.push(connect(&rt, &n4));
    read_back(&rt, &all_clients, &keys, "after the resumed transfer");
}

/// Whether every key of `sample` is held by `nodes` (each `admin object` says found).
fn held_everywhere(nodes: &[&NodeProc], sample: &[String]) -> Result<(), String> {
    for k in sample {
        for n in nodes {
            let o = json(n, &["object", k]);
            if o["found"] != true {
                return Err(format!("{} lacks {k}", n.node_id));
            }
        }
    }
    Ok(())
}

#[test]
fn leave_and_remove_keep_every_key_on_n_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path(), &[]);
    let n4 = start(dir.path(), "n4", Some(&nodes[0].peer), &env());
    nodes.push(n4);
    agreed_ring(&nodes.iter().collect::<Vec<_>>(), 4);
    let rt = rt_mt();
    let clients: Vec<Arc<Client>> = nodes[..3].iter().map(|n| connect(&rt, n)).collect();
    let keys: Vec<String> = (0..1500).map(|i| format!("k-{i:05}")).collect();
    preload(&rt, &clients, &keys);

    // 4 -> 3 by leave, under load.
    let running = load(&rt, &clients, "leave-");
    running.acked.wait_for(100, "writes before the leave");
    let (code, out, err) = nodes[3].cli(&["admin", "leave", "--yes"]);
    assert_eq!(code, 0, "admin leave: {err}");
    eprintln!("leave: {out}");
    agreed_ring(&nodes[..3].iter().collect::<Vec<_>>(), 3);
    wait_for("n4 departed (left)", Duration::from_secs(30), || {
        status_of(&nodes[0], "n4").as_deref() == Some("left")
    });
    let (live, timeouts) = running.finish(&rt);
    eprintln!(
        "leave: {} writes during it, {timeouts} timeout(s)",
        live.len()
    );
    let mut all = keys.clone();
    all.extend(live);
    read_back(&rt, &clients, &all, "after the leave");
    let three: Vec<&NodeProc> = nodes[..3].iter().collect();
    // Three members, N=3: every key on all three.
    let sample: Vec<String> = all.iter().step_by(all.len() / 60 + 1).cloned().collect();
    held_everywhere(&three, &sample).unwrap_or_else(|e| panic!("after the leave: {e}"));

    // Remove is refused for a member that is alive.
    let (code, _, err) = nodes[0].cli(&["admin", "remove", "n3", "--yes"]);
    assert_ne!(code, 0);
    assert!(err.contains("alive") && err.contains("leave"), "{err}");

    // 3 -> 2: n3 SIGKILLed and removed.
    nodes[2].kill();
    wait_for("n3 seen dead", dead_bound() * 2, || {
        nodes[..2]
            .iter()
            .all(|n| status_of(n, "n3").as_deref() == Some("dead"))
    });
    let (code, _, err) = nodes[0].cli(&["admin", "remove", "n3", "--yes"]);
    assert_eq!(code, 0, "admin remove: {err}");
    agreed_ring(&nodes[..2].iter().collect::<Vec<_>>(), 2);

    // 2 -> 3: a new node joins and gets every key.
    let n5 = start(dir.path(), "n5", Some(&nodes[0].peer), &env());
    let final_nodes = vec![&nodes[0], &nodes[1], &n5];
    agreed_ring(&final_nodes, 3);
    held_everywhere(&final_nodes, &sample).unwrap_or_else(|e| panic!("after remove and join: {e}"));
    let c5 = vec![connect(&rt, &n5)];
    read_back(&rt, &c5, &all, "through the new node");
}

#[test]
fn a_stalled_source_is_left_for_another_holder() {
    let dir = tempfile::tempdir().unwrap();
    // Slow, short-fused transfers: a source that stops answering is given up on quickly.
    let slow = vec![
        (
            "TROUPE__HANDOFF__TRANSFER_BYTES_PER_SEC",
            "1000000".to_string(),
        ),
        ("TROUPE__HANDOFF__STALL_TIMEOUT", "4s".to_string()),
        ("TROUPE__HANDOFF__TRANSFER_LIMIT", "1".to_string()),
    ];
    let nodes = three_nodes(dir.path(), &slow);
    let rt = rt_mt();
    let clients: Vec<Arc<Client>> = nodes.iter().map(|n| connect(&rt, n)).collect();
    let keys: Vec<String> = (0..6000).map(|i| format!("big-{i:05}")).collect();
    preload(&rt, &clients, &keys);

    let mut e = env();
    e.extend(slow.iter().cloned());
    let n4 = start(dir.path(), "n4", Some(&nodes[0].peer), &e);
    // The first stream's source is frozen (SIGSTOP) once it has sent something.
    let mut source = String::new();
    wait_for("n4 streams from a source", Duration::from_secs(60), || {
        let t = json(&n4, &["transfers"]);
        match t["streams"].as_array().and_then(|s| s.first()) {
            Some(s) if s["keys"].as_u64().unwrap_or(0) > 0 => {
                source = s["source"].as_str().unwrap().to_string();
                true
            }
            _ => false,
        }
    });
    let frozen = nodes.iter().find(|n| n.node_id == source).unwrap();
    frozen.signal(libc::SIGSTOP);
    wait_for(
        "n4 gives the frozen source up and moves on",
        Duration::from_secs(60),
        || {
            let log = n4.log_text();
            log.contains(&format!("the stream from {source} made no progress"))
                || log.contains(&format!("the stream from {source} failed"))
        },
    );
    // Everything except the frozen source's own partitions (n4 needs the frozen node's ack
    // to finish the ring change, not its data) comes from the others meanwhile.
    wait_for(
        "n4 fetches from the others",
        Duration::from_secs(60),
        || {
            let t = json(&n4, &["transfers"]);
            t["streams"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["source"] != source.as_str()))
                || t["in_transition"] == false
        },
    );
    frozen.signal(libc::SIGCONT);
    let refs: Vec<&NodeProc> = nodes.iter().chain(std::iter::once(&n4)).collect();
    agreed_ring_within(&refs, 4, Duration::from_secs(120));
    let mut all_clients = clients.clone();
    all_clients.push(connect(&rt, &n4));
    read_back(&rt, &all_clients, &keys, "after the stalled transfer");
}
