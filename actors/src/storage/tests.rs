//! Model test of the running storage actors (Memtable + WAL writer, Flusher, Compactor, GC)
//! against a `BTreeMap`: seeded random put / delete / get / paged scan / seal-and-flush /
//! compact-all / restart. A 2 KiB memtable makes flushes, compactions and GC run all the
//! time, so reads cross memory, L0 and deeper levels. A restart stops the actor system
//! (its runtime waits for blocking-pool work), waits for its WAL writer thread to end, and
//! reopens the same directory, so recovery (manifest replay, WAL replay, orphan cleanup) is
//! part of every run.
//!
//! A failing seed is reported; replay it with `STORAGE_MODEL_SEEDS=<seed>[,<seed>...]`, and
//! keep it in `REGRESSION_SEEDS` once fixed.

use super::*;
use crate::compactor::CompactAll;
use crate::memtable::{Get, Scan, Seal, WalThreadExit, Write};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// Seeds that once failed, beyond the default 1..=4; always run. (Seeds 1 and 2 failed
/// under load with a scan that skipped keys, fixed in the `Scan` handler's page bound.)
const REGRESSION_SEEDS: &[u64] = &[];

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Tiny everything, so a short run flushes, compacts and stalls (shared with the power-loss
/// test).
pub(super) fn config(dir: &Path) -> MemtableConfig {
    MemtableConfig {
        data_dir: dir.to_path_buf(),
        durability: wal::Durability::Sync,
        wal_queue_jobs: 1024,
        max_queued_bytes: 1 << 20,
        mailbox: 1024,
        memtable_bytes: 2048,
        wal_bytes: 2048,
        max_sealed: 2,
        max_stalled_writes: 1024,
        max_disk_reads: 8,
        read_workers: 2,
    }
}

pub(super) fn engine() -> EngineConfig {
    EngineConfig {
        block_cache_bytes: 16 << 10,
        compaction_bytes_per_sec: 0,
        l0_compaction_trigger: 2,
        l0_stop_tables: 6,
        level1_bytes: 8 << 10,
        target_table_bytes: 4 << 10,
    }
}

fn key(rng: &mut SmallRng) -> Vec<u8> {
    // A small key space, so overwrites, deletes of live keys and shadowing are common.
    format!("k{:03}", rng.random_range(0..120u32)).into_bytes()
}

/// Flushes and compactions seen, summed over epochs.
#[derive(Default, Clone, Copy)]
struct Seen {
    flushes: u64,
    compactions: u64,
}

/// Runs operations from `rng` against storage in `dir` until the op stream asks for a
/// restart (returns true) or `budget` operations are done (returns false). Also returns
/// what to wait on for this epoch's WAL writer thread to end.
async fn epoch(
    dir: &Path,
    rng: &mut SmallRng,
    model: &mut Model,
    budget: &mut u32,
    seen: &mut Seen,
) -> (bool, WalThreadExit) {
    let registry = Registry::default();
    let mut opened = open(config(dir), &engine(), &registry).expect("storage opens");
    let wal_exit = opened
        .take_wal_exit()
        .expect("a new memtable has its WAL exit");
    let here = Arbiter::current();
    let s = opened.start(&here, &here, &registry);
    let restart = run_ops(&s, rng, model, budget).await;
    let stats = s.tables.stats();
    seen.flushes += stats.flushes;
    seen.compactions += stats.compactions;
    (restart, wal_exit)
}

async fn run_ops(s: &Storage, rng: &mut SmallRng, model: &mut Model, budget: &mut u32) -> bool {
    while *budget > 0 {
        *budget -= 1;
        match rng.random_range(0..100u32) {
            0..=44 => {
                let (k, len) = (key(rng), rng.random_range(0..300usize));
                let v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let w = Write {
                    key: k.clone(),
                    value: Some(v.clone()),
                };
                s.memtable.send(w).await.unwrap().expect("put acknowledged");
                model.insert(k, v);
            }
            45..=59 => {
                let k = key(rng);
                let w = Write {
                    key: k.clone(),
                    value: None,
                };
                s.memtable
                    .send(w)
                    .await
                    .unwrap()
                    .expect("delete acknowledged");
                model.remove(&k);
            }
            60..=84 => {
                let k = key(rng);
                let got = s.memtable.send(Get { key: k.clone() }).await.unwrap();
                let got = got.expect("read ok").and_then(|v| v.value);
                assert_eq!(
                    got.as_ref(),
                    model.get(&k),
                    "get {:?}",
                    String::from_utf8_lossy(&k)
                );
            }
            85..=92 => scan_matches(s, rng, model).await,
            93..=95 => {
                s.memtable
                    .send(Seal)
                    .await
                    .unwrap()
                    .expect("seal and flush");
            }
            96..=97 => {
                let r = s.compactor.send(CompactAll).await.unwrap();
                r.expect("compact all");
            }
            _ => return true,
        }
    }
    false
}

async fn scan_matches(s: &Storage, rng: &mut SmallRng, model: &Model) {
    let (a, b) = (key(rng), key(rng));
    let (start, end) = if a <= b { (a, b) } else { (b, a) };
    let start = rng.random_bool(0.8).then_some(start);
    let end = rng.random_bool(0.8).then_some(end);
    let limit = rng.random_range(1..20usize);
    let mut got = Vec::new();
    let mut cursor = start.clone();
    loop {
        let page = s
            .memtable
            .send(Scan {
                start: cursor.clone(),
                end: end.clone(),
                limit,
            })
            .await
            .unwrap()
            .expect("scan ok");
        assert!(page.entries.len() <= limit);
        got.extend(page.entries.into_iter().map(|e| (e.key, e.value)));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let want: Vec<_> = model
        .iter()
        .filter(|(k, _)| start.as_ref().is_none_or(|s| *k >= s))
        .filter(|(k, _)| end.as_ref().is_none_or(|e| *k < e))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    assert_eq!(got, want, "scan {start:?}..{end:?} by {limit}");
}

fn run(seed: u64, ops: u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut model = Model::new();
    let mut budget = ops;
    let mut restarts = 0;
    let mut seen = Seen::default();
    while budget > 0 {
        // One actor system per epoch: dropping it stops the actors and waits for the
        // blocking pool, as a node's shutdown does, before the directory is reopened.
        let (r, m, b, again, wal_exit) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let sys = actix::System::new();
                    let (mut r, mut m, mut b) = (rng.clone(), model.clone(), budget);
                    let ep = epoch(dir.path(), &mut r, &mut m, &mut b, &mut seen);
                    let (again, wal_exit) = sys.block_on(ep);
                    drop(sys);
                    (r, m, b, again, wal_exit)
                })
                .join()
                .unwrap_or_else(|_| panic!("model test failed with seed {seed}"))
        });
        (rng, model, budget) = (r, m, b);
        // The dropped actor held the last WAL handle: the writer thread finishes what it
        // has queued (a rotation may still be; it creates the next segment) and ends. The
        // next epoch must not recover the directory while it still writes there.
        wal_exit.wait();
        if again {
            restarts += 1;
        }
    }
    // The run must have crossed every path it claims to test.
    assert!(restarts >= 5, "seed {seed}: only {restarts} restarts");
    assert!(
        seen.flushes >= 20,
        "seed {seed}: only {} flushes",
        seen.flushes
    );
    assert!(
        seen.compactions >= 5,
        "seed {seed}: only {} compactions",
        seen.compactions
    );
}

#[test]
fn storage_actors_match_a_btreemap_across_flushes_compactions_and_restarts() {
    let seeds: Vec<u64> = match std::env::var("STORAGE_MODEL_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("STORAGE_MODEL_SEEDS: comma-separated u64s")
            })
            .collect(),
        Err(_) => (1..=4).chain(REGRESSION_SEEDS.iter().copied()).collect(),
    };
    for seed in seeds {
        run(seed, 1500);
    }
}
