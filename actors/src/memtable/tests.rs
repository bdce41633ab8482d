//! Memtable actor tests: durability before visibility, reopen, overload, sealing and flush,
//! reads and scans across memory and tables.

use super::*;
use crate::compactor::{Compactor, TablesChanged};
use crate::engine::TablesOptions;
use crate::flusher::Flusher;
use crate::gc::Gc;
use crate::stats::Registry;
use actix::dev::ArbiterHandle;
use std::time::Duration;

/// A memtable configuration for tests (also `view` and `update` tests use it).
pub(super) fn config(dir: &Path, max_queued_bytes: usize, memtable_bytes: usize) -> MemtableConfig {
    MemtableConfig {
        data_dir: dir.to_path_buf(),
        durability: Durability::Sync,
        wal_queue_jobs: 1024,
        max_queued_bytes,
        mailbox: 1024,
        memtable_bytes,
        wal_bytes: memtable_bytes,
        max_sealed: 2,
        max_stalled_writes: 10_000,
        max_disk_reads: 8,
        read_workers: 2,
    }
}

/// Opens storage in `dir` and starts the memtable with a flusher, compactor and GC on the
/// current arbiter.
fn start(
    dir: &Path,
    max_queued_bytes: usize,
    memtable_bytes: usize,
) -> (Addr<MemtableActor>, Arc<Tables>, OpenReport) {
    let life = start_in(dir, max_queued_bytes, memtable_bytes, &Arbiter::current());
    (life.addr, life.tables, life.report)
}

/// One life of a node's storage: its actors, and what to wait on to know it ended.
struct Life {
    addr: Addr<MemtableActor>,
    reads: view::LocalReads,
    tables: Arc<Tables>,
    report: OpenReport,
    wal_exit: WalThreadExit,
}

/// Opens storage in `dir` and starts the memtable, flusher, compactor and GC on `arbiter`.
fn start_in(
    dir: &Path,
    max_queued_bytes: usize,
    memtable_bytes: usize,
    arbiter: &ArbiterHandle,
) -> Life {
    let reg = Registry::default();
    let (tables, rec) = Tables::open(&tables_dir(dir), TablesOptions::default()).unwrap();
    let tables = Arc::new(tables);
    let (mut actor, report) = MemtableActor::open(
        config(dir, max_queued_bytes, memtable_bytes),
        tables.clone(),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        reg.actor("memtable"),
    )
    .unwrap();
    let wal_exit = actor.take_wal_exit().expect("a new actor has its WAL exit");
    let gc = Gc::new(tables.clone(), reg.actor("gc"));
    let gc = Gc::start_in_arbiter(arbiter, move |_| gc);
    let compactor = Compactor::new(
        tables.clone(),
        gc.recipient(),
        actor.health(),
        reg.actor("compactor"),
    );
    let compactor: Addr<Compactor> = Compactor::start_in_arbiter(arbiter, move |_| compactor);
    let compactor_rcpt: Recipient<TablesChanged> = compactor.recipient();
    let flusher = Flusher::new(
        tables.clone(),
        wal_dir(dir),
        Some(compactor_rcpt),
        reg.actor("flusher"),
        20,
    );
    let flusher = Flusher::start_in_arbiter(arbiter, move |_| flusher);
    actor.set_flusher(flusher.recipient());
    Life {
        reads: actor.local_reads(),
        addr: MemtableActor::start_in_arbiter(arbiter, move |_| actor),
        tables,
        report,
        wal_exit,
    }
}

/// A life on its own arbiter (thread), so it can be ended (and stopped) apart from the test.
fn start_life(dir: &Path, max_queued_bytes: usize, memtable_bytes: usize) -> (Life, Arbiter) {
    let arbiter = Arbiter::new();
    let life = start_in(dir, max_queued_bytes, memtable_bytes, &arbiter.handle());
    (life, arbiter)
}

/// Ends a life: stops its arbiter and joins its thread (its runtime drops every actor after
/// waiting for their blocking work: flushes, compactions, deletions), then waits for the
/// WAL writer thread to end (after its last sync). Nothing of that life touches the
/// directory afterwards, so the next one may open it.
async fn end_life(life: Life, arbiter: Arbiter) {
    let Life { wal_exit, .. } = life;
    tokio::task::spawn_blocking(move || {
        arbiter.stop();
        arbiter
            .join()
            .expect("the storage arbiter's thread ended cleanly");
        wal_exit.wait();
    })
    .await
    .unwrap();
}

async fn put(addr: &Addr<MemtableActor>, k: &str, v: Option<&str>) -> u64 {
    addr.send(Write {
        key: k.as_bytes().to_vec(),
        value: v.map(|v| v.as_bytes().to_vec()),
    })
    .await
    .unwrap()
    .unwrap()
}

/// Writes the actor holds in its stall queue. A write sent before this is counted: both go
/// through the same mailbox, in order.
async fn stalled_now(addr: &Addr<MemtableActor>) -> usize {
    addr.send(GetMemtableStats)
        .await
        .unwrap()
        .stalled_writes_now
}

async fn get(addr: &Addr<MemtableActor>, k: &str) -> Option<Vec<u8>> {
    addr.send(Get {
        key: k.as_bytes().to_vec(),
    })
    .await
    .unwrap()
    .unwrap()
    .and_then(|v| v.value)
}

#[actix_rt::test]
async fn writes_are_readable_after_ack_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (life, arbiter) = start_life(dir.path(), 1 << 20, 64 << 20);
    let addr = life.addr.clone();
    // Five rounds of ten writes in flight, one per key, each round acknowledged before the
    // next is sent. (Not all fifty at once: past the mailbox's capacity actix's `send`
    // queues a message only when its future is polled, while the actor, on its own
    // thread, drains the mailbox and lets later sends in first, so two writes of one key
    // could reach it in the other order.)
    for round in 0..5u32 {
        let mut acks = Vec::new();
        for k in 0..10u32 {
            let i = round * 10 + k;
            acks.push(addr.send(Write {
                key: format!("k{k}").into_bytes(),
                value: Some(i.to_be_bytes().to_vec()),
            }));
        }
        for a in acks {
            a.await.unwrap().unwrap();
        }
    }
    put(&addr, "k0", None).await;
    assert_eq!(get(&addr, "k9").await, Some(49u32.to_be_bytes().to_vec()));
    end_life(life, arbiter).await;

    let (addr, _, report) = start(dir.path(), 1 << 20, 64 << 20);
    assert_eq!(report.records, 51);
    assert_eq!(get(&addr, "k9").await, Some(49u32.to_be_bytes().to_vec()));
    assert_eq!(get(&addr, "k0").await, None);
    assert_eq!(
        put(&addr, "x", Some("y")).await,
        52,
        "sequence numbers continue after reopen"
    );
}

#[actix_rt::test]
async fn a_full_write_queue_answers_overloaded_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _, _) = start(dir.path(), 10, 64 << 20);
    let r = addr
        .send(Write {
            key: b"key".to_vec(),
            value: Some(vec![0; 100]),
        })
        .await
        .unwrap();
    assert!(
        matches!(r, Err(StorageError::Overloaded { limit: 10, .. })),
        "{r:?}"
    );
    assert!(addr
        .send(Get {
            key: b"key".to_vec()
        })
        .await
        .unwrap()
        .unwrap()
        .is_none());
}

/// After an upgrade, the format-3 segment the last build wrote is replayed, new writes go to
/// a format-4 segment after it, and the first flush retires both: nothing of format 3 is
/// left, and nothing is lost.
#[actix_rt::test]
async fn a_format_3_wal_is_replayed_and_retired_by_the_first_flush() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal_dir(dir.path());
    std::fs::create_dir_all(&wal).unwrap();
    let old = wal::WalRecord {
        seq: 1,
        key: b"old".to_vec(),
        value: Some(b"three".to_vec()),
    };
    let v3 = wal::format::encode_segment_in(3, 1, 5, &[vec![old]]);
    std::fs::write(wal::segment_path(&wal, 1), v3).unwrap();
    let (life, arbiter) = start_life(dir.path(), 1 << 20, 64 << 20);
    let addr = life.addr.clone();
    assert_eq!(life.report.records, 1);
    assert_eq!(wal::list_segments(&wal).unwrap(), vec![1, 2]);
    put(&addr, "new", Some("four")).await;
    addr.send(Seal).await.unwrap().unwrap();
    let left = wal::list_segments(&wal).unwrap();
    assert!(!left.contains(&1) && !left.contains(&2), "{left:?}");
    assert_eq!(get(&addr, "old").await, Some(b"three".to_vec()));
    assert_eq!(get(&addr, "new").await, Some(b"four".to_vec()));
    end_life(life, arbiter).await;
    let (addr, _, _) = start(dir.path(), 1 << 20, 64 << 20);
    assert_eq!(get(&addr, "old").await, Some(b"three".to_vec()));
    assert_eq!(get(&addr, "new").await, Some(b"four".to_vec()));
}

/// A memtable is sealed by the memory its entries take or by the WAL bytes written to it,
/// whichever limit comes first: overwrites of one key grow the log, not the table, and only
/// the log's limit seals them; new keys grow the table and seal it long before the log's.
#[actix_rt::test]
async fn a_memtable_is_sealed_by_its_memory_or_by_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, rec) = Tables::open(&tables_dir(dir.path()), TablesOptions::default()).unwrap();
    let cfg = MemtableConfig {
        memtable_bytes: 16 << 10,
        wal_bytes: 64 << 10,
        max_sealed: 8,
        ..config(dir.path(), 1 << 20, 0)
    };
    let (actor, _) = MemtableActor::open(
        cfg,
        Arc::new(tables),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        Registry::default().actor("memtable"),
    )
    .unwrap();
    let addr = actor.start();
    let seals = || async { addr.send(GetMemtableStats).await.unwrap().seals };
    let value = "v".repeat(100);
    // 300 records of 132 bytes: about 39 KiB of log, past the memory limit (16 KiB) but not
    // the log's (64 KiB); one entry in memory.
    for _ in 0..300 {
        put(&addr, "hot", Some(&value)).await;
    }
    assert_eq!(seals().await, 0, "overwrites alone stay in one memtable");
    let stats = addr.send(GetMemtableStats).await.unwrap();
    assert!(stats.active_bytes < 1024, "{stats:?}");
    for _ in 0..300 {
        put(&addr, "hot", Some(&value)).await;
    }
    assert_eq!(seals().await, 1, "the log's limit seals");
    // New keys: 16 KiB of entries long before 64 KiB of log.
    let mut i = 0;
    while seals().await == 1 {
        put(&addr, &format!("key{i:05}"), Some(&value)).await;
        i += 1;
        assert!(i < 400, "no seal after {i} new keys");
    }
    assert!(i * 132 < 40 << 10, "sealed by memory after {i} keys");
    assert_eq!(get(&addr, "hot").await, Some(value.into_bytes()));
}

#[actix_rt::test]
async fn sealed_memtables_flush_to_tables_and_retire_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (life, arbiter) = start_life(dir.path(), 1 << 20, 4096);
    let addr = life.addr.clone();
    for i in 0..2000u32 {
        put(&addr, &format!("key{i:05}"), Some(&format!("value{i}"))).await;
    }
    // An admin flush answers once every table sealed so far is flushed.
    addr.send(Seal).await.unwrap().unwrap();
    let n: usize = life.tables.stats().levels.iter().map(|l| l.tables).sum();
    assert!(n >= 1, "no table after a flush");
    // Everything is readable, whether in memory or on disk.
    for i in (0..2000u32).step_by(97) {
        assert_eq!(
            get(&addr, &format!("key{i:05}")).await,
            Some(format!("value{i}").into_bytes())
        );
    }
    let segments = wal::list_segments(&wal_dir(dir.path())).unwrap();
    assert!(
        segments.len() <= 4,
        "retired WAL segments were not deleted: {segments:?}"
    );
    let stats = addr.send(GetMemtableStats).await.unwrap();
    assert!(stats.seals > 5, "{stats:?}");

    // A scan merges memory and tables, hides tombstones and pages with `next`.
    put(&addr, "key00003", None).await;
    let mut seen = Vec::new();
    let mut from = Some(b"key00000".to_vec());
    while let Some(s) = from {
        let r = addr
            .send(Scan {
                start: Some(s),
                end: Some(b"key00010".to_vec()),
                limit: 3,
            })
            .await
            .unwrap()
            .unwrap();
        seen.extend(
            r.entries
                .into_iter()
                .map(|e| String::from_utf8(e.key).unwrap()),
        );
        from = r.next;
    }
    let want: Vec<String> = (0..10)
        .filter(|&i| i != 3)
        .map(|i| format!("key{i:05}"))
        .collect();
    assert_eq!(seen, want);
    end_life(life, arbiter).await;

    // After a restart the flushed data comes from tables and the rest from the WAL.
    let (addr, _, report) = start(dir.path(), 1 << 20, 4096);
    assert!(
        report.records < 2001,
        "replayed {} records: retired segments were replayed",
        report.records
    );
    for i in (0..2000u32).step_by(89) {
        let want = (i != 3).then(|| format!("value{i}").into_bytes());
        assert_eq!(get(&addr, &format!("key{i:05}")).await, want, "key{i:05}");
    }
}

/// Opens a memtable with no flusher: sealed tables never leave memory, so the sealed queue
/// fills and writes must stall, then be refused.
fn start_without_flusher(dir: &Path, max_stalled_writes: usize) -> Addr<MemtableActor> {
    let reg = Registry::default();
    let (tables, rec) = Tables::open(&tables_dir(dir), TablesOptions::default()).unwrap();
    let mut cfg = config(dir, 1 << 20, 4096);
    cfg.max_sealed = 1;
    cfg.max_stalled_writes = max_stalled_writes;
    let (actor, _) = MemtableActor::open(
        cfg,
        Arc::new(tables),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        reg.actor("memtable"),
    )
    .unwrap();
    actor.start()
}

#[actix_rt::test]
async fn writes_stall_while_the_flusher_is_behind_and_then_get_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_without_flusher(dir.path(), 3);
    // Past 4 KiB the active memtable is sealed; with no flusher it stays sealed, the sealed
    // queue (1) is full, and the next write waits.
    let mut i = 0;
    loop {
        let w = addr.send(Write {
            key: format!("k{i:05}").into_bytes(),
            value: Some(vec![1; 200]),
        });
        if stalled_now(&addr).await > 0 {
            break; // this write stalled, for good: nothing flushes
        }
        w.await.unwrap().unwrap();
        i += 1;
        assert!(i < 1000, "writes never stalled although nothing flushes");
    }
    let stats = addr.send(GetMemtableStats).await.unwrap();
    assert!(stats.write_stalls >= 1, "{stats:?}");
    assert_eq!(stats.stalled_writes_now, 1, "{stats:?}");
    // Two more fit in the stall queue (limit 3); the next is refused at once.
    let _held: Vec<_> = (0..2)
        .map(|j| {
            addr.send(Write {
                key: format!("s{j}").into_bytes(),
                value: Some(vec![2; 10]),
            })
        })
        .collect();
    let r = addr
        .send(Write {
            key: b"refused".to_vec(),
            value: Some(vec![3; 10]),
        })
        .await
        .unwrap();
    assert!(matches!(r, Err(StorageError::Overloaded { .. })), "{r:?}");
    // Everything acknowledged before the stall is still readable from memory.
    assert_eq!(get(&addr, "k00000").await, Some(vec![1; 200]));
}

#[actix_rt::test]
async fn a_poisoned_engine_refuses_writes_but_keeps_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, tables, _) = start(dir.path(), 1 << 20, 64 << 20);
    put(&addr, "before", Some("v")).await;
    tables.poison_for_test("table fsync failed: EIO");
    let r = addr
        .send(Write {
            key: b"after".to_vec(),
            value: Some(b"v".to_vec()),
        })
        .await
        .unwrap();
    match r {
        Err(StorageError::Poisoned(why)) => assert!(why.contains("EIO"), "{why}"),
        other => panic!("a write on a poisoned engine answered {other:?}"),
    }
    assert_eq!(
        get(&addr, "before").await,
        Some(b"v".to_vec()),
        "reads keep working"
    );
    assert_eq!(get(&addr, "after").await, None);
}

type StalledWrite = std::pin::Pin<Box<Request<MemtableActor, Write>>>;

/// Memtable + Flusher (no compactor) with 4 KiB memtables and L0 capped at `l0_cap`.
fn start_with_l0_cap(
    dir: &Path,
    l0_cap: usize,
) -> (
    Addr<MemtableActor>,
    Arc<Tables>,
    Arc<crate::flusher::FlusherStats>,
) {
    let reg = Registry::default();
    let (tables, rec) = Tables::open(&tables_dir(dir), TablesOptions::default()).unwrap();
    let tables = Arc::new(tables);
    let (mut actor, _) = MemtableActor::open(
        config(dir, 1 << 20, 4096),
        tables.clone(),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        reg.actor("memtable"),
    )
    .unwrap();
    let flusher = Flusher::new(tables.clone(), wal_dir(dir), None, reg.actor("f"), l0_cap);
    let stats = flusher.stats();
    actor.set_flusher(flusher.start().recipient());
    (actor.start(), tables, stats)
}

/// Writes 200-byte values until one stalls behind a flush held for a full L0; returns how
/// many were acknowledged and the stalled one. A write that stalls while the Flusher is
/// merely behind completes once its flush does, so it is awaited. Once the Flusher has held
/// a flush (with no compactor it holds for good), a write still stalled after that stays
/// stalled: the stats request that says so is queued behind any `TableFlushed` the Flusher
/// sent before holding.
async fn write_until_stalled(
    addr: &Addr<MemtableActor>,
    flusher: &crate::flusher::FlusherStats,
) -> (usize, StalledWrite) {
    let mut written = 0;
    loop {
        let w = Box::pin(addr.send(Write {
            key: format!("k{written:05}").into_bytes(),
            value: Some(vec![7; 200]),
        }));
        if stalled_now(addr).await > 0
            && flusher.snapshot().l0_stalls > 0
            && stalled_now(addr).await > 0
        {
            return (written, w);
        }
        w.await.unwrap().unwrap();
        written += 1;
        assert!(written < 2000, "writes never stalled although L0 is capped");
    }
}

/// With no compactor, L0 fills to `l0_stop_tables`; the next flush waits, sealed memtables
/// pile up and writes stall, instead of L0 growing. Once L0 is compacted the held flush runs
/// and the stalled write completes; every write is readable.
#[actix_rt::test]
async fn a_full_l0_holds_flushes_and_stalls_writes_until_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, tables, flusher_stats) = start_with_l0_cap(dir.path(), 3);
    let l0 = || tables.current_version().level(0).len();
    let (written, stalled) = write_until_stalled(&addr, &flusher_stats).await;
    assert_eq!(l0(), 3, "L0 stops at l0_stop_tables");
    assert_eq!(flusher_stats.snapshot().l0_stalls, 1);

    let t = tables.clone();
    tokio::task::spawn_blocking(move || {
        let task = t.pick_level_compaction(0).expect("L0 task");
        t.run_compaction(&task).expect("compaction");
    })
    .await
    .unwrap();
    stalled
        .await
        .unwrap()
        .expect("the stalled write completes once L0 drains");
    for i in (0..written).step_by(37) {
        assert_eq!(
            get(&addr, &format!("k{i:05}")).await,
            Some(vec![7; 200]),
            "k{i:05}"
        );
    }
    assert!(l0() <= 3);
}

/// If the engine is poisoned while a flush is held for a full L0 (compaction will never
/// drain it now), the held flush still runs, fails, and the stalled writer hears why.
#[actix_rt::test]
async fn a_flush_held_for_l0_answers_stalled_writes_once_poisoned() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, tables, flusher_stats) = start_with_l0_cap(dir.path(), 3);
    let (_, stalled) = write_until_stalled(&addr, &flusher_stats).await;
    tables.poison_for_test("compaction fsync failed: EIO");
    let r = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the stalled write is answered, not left hanging")
        .unwrap();
    match r {
        Err(StorageError::Poisoned(why)) => assert!(why.contains("EIO"), "{why}"),
        other => panic!("a stalled write on a poisoned engine got {other:?}"),
    }
}

/// Many concurrent reads that miss memory with a single disk-read permit: all but one take
/// the path that waits for a permit, and each gets its own key's answer.
#[actix_rt::test]
async fn concurrent_disk_reads_beyond_the_permits_all_get_their_answer() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::default();
    let (tables, rec) = Tables::open(&tables_dir(dir.path()), TablesOptions::default()).unwrap();
    let entries: Vec<Entry> = (0..500u64)
        .map(|i| Entry::put(format!("k{i:04}"), i + 1, format!("v{i}")))
        .collect();
    tables.flush(entries, None).unwrap();
    let mut cfg = config(dir.path(), 1 << 20, 64 << 20);
    cfg.max_disk_reads = 1;
    let (actor, _) = MemtableActor::open(
        cfg,
        Arc::new(tables),
        rec.retired_wal_segment,
        1000,
        reg.actor("memtable"),
    )
    .unwrap();
    let addr = actor.start();
    let asks: Vec<_> = (0..300u64)
        .map(|i| {
            let k = format!("k{:04}", i * 2);
            (
                i * 2,
                addr.send(Get {
                    key: k.into_bytes(),
                }),
            )
        })
        .collect();
    for (i, ask) in asks {
        let got = ask.await.unwrap().unwrap().and_then(|v| v.value);
        let want = (i < 500).then(|| format!("v{i}").into_bytes());
        assert_eq!(got, want, "k{i:04}");
    }
}

/// Issue 8, defect 2, through the real actor: three admin flushes arrive while a WAL
/// rotation is in flight, between a trickle of puts, and then writes stop. Every flush must
/// complete. The messages are all queued before the actor runs (this test shares its thread),
/// and the rotation's completion can only be queued after the first `Seal` is handled, so the
/// order is fixed: Seal (rotation queued), put, Seal, Seal, put, then the rotation completes.
/// Before the fix the second put cleared the "seal after rotation" flag while `seal()` was a
/// no-op mid-rotation, and the last two flushes waited for a memtable that never filled.
#[actix_rt::test]
async fn flushes_during_a_rotation_complete_once_writes_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, tables, _) = start(dir.path(), 1 << 20, 64 << 20);
    put(&addr, "a", Some("1")).await;
    let first = addr.send(Seal);
    let w1 = addr.send(Write {
        key: b"b".to_vec(),
        value: Some(b"2".to_vec()),
    });
    let second = addr.send(Seal);
    let third = addr.send(Seal);
    let w2 = addr.send(Write {
        key: b"c".to_vec(),
        value: Some(b"3".to_vec()),
    });
    // Generous: only a broken build gets near it; the writes stop here.
    let all = async {
        w1.await.unwrap().unwrap();
        w2.await.unwrap().unwrap();
        for s in [first, second, third] {
            s.await.unwrap().unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("every flush completes once writes stop");
    // Everything acknowledged before the last flush is in tables: memory is empty.
    let stats = addr.send(GetMemtableStats).await.unwrap();
    assert_eq!(stats.active_keys, 0, "{stats:?}");
    assert_eq!(stats.sealed_tables, 0, "{stats:?}");
    let n: usize = tables.stats().levels.iter().map(|l| l.tables).sum();
    assert!(n >= 1);
}

/// Pages through `[None, None)` `limit` keys at a time; returns the live keys seen.
async fn scan_all(addr: &Addr<MemtableActor>, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = addr
            .send(Scan {
                start: cursor,
                end: None,
                limit,
            })
            .await
            .unwrap()
            .unwrap();
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| String::from_utf8(e.key).unwrap()),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => return seen,
        }
    }
}

/// A scan page is cut at the smallest last key of the memory sources that hit the limit
/// (here the active table's tombstone `k031`); the tables are read only up to that bound,
/// so the other memory sources must be cut there too. Before the fix the sealed table's
/// `k043` got into the page past the bound and `next` jumped over `k033..k042`, which only
/// the tables hold. (Seen in the storage model test under load, when a flush was slow
/// enough for a sealed table to still be in memory during a scan.)
#[actix_rt::test]
async fn a_scan_page_never_passes_keys_that_only_the_tables_hold() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::default();
    let (tables, _) = Tables::open(&tables_dir(dir.path()), TablesOptions::default()).unwrap();
    let on_disk: Vec<Entry> = (33..=42u64)
        .map(|i| Entry::put(format!("k{i:03}"), i, "old"))
        .collect();
    tables.flush(on_disk, None).unwrap();
    let flushed = tables.current_version().last_flushed_seq();
    // No flusher: a sealed table stays in memory, as it does while its flush is slow.
    let (actor, _) = MemtableActor::open(
        config(dir.path(), 1 << 20, 64 << 20),
        Arc::new(tables),
        None,
        flushed,
        reg.actor("memtable"),
    )
    .unwrap();
    let addr = actor.start();
    put(&addr, "k043", Some("sealed")).await;
    addr.do_send(Seal); // never answered (nothing flushes); the table is frozen at once
    put(&addr, "k031", None).await; // the active table's first key: a tombstone
    let want: Vec<String> = (33..=43).map(|i| format!("k{i:03}")).collect();
    for limit in 1..=4 {
        assert_eq!(scan_all(&addr, limit).await, want, "pages of {limit}");
    }
}

/// One scan page over memtables (newest first) and a table, as the `Scan` handler builds
/// it, with no actor or disk: the memory sources bounded by `bound_page`, the table read
/// up to the page's end, merged, `limit` taken.
fn page_over(
    memory: &[MemTable],
    table: &[Entry],
    start: Option<&[u8]>,
    end: Option<&[u8]>,
    limit: usize,
) -> (Vec<Entry>, Option<Vec<u8>>) {
    use crate::engine::read::{vec_source, MergeIter};
    let ranges = memory.iter().map(|t| t.range(start, end, limit)).collect();
    let (ranges, page_end, cut) = handlers::bound_page(ranges, limit, end.map(<[u8]>::to_vec));
    let mut sources: Vec<_> = ranges.into_iter().map(vec_source).collect();
    let in_page =
        |k: &[u8]| start.is_none_or(|s| k >= s) && page_end.as_deref().is_none_or(|e| k < e);
    sources.push(vec_source(
        table.iter().filter(|e| in_page(&e.key)).cloned().collect(),
    ));
    let entries: Vec<Entry> = MergeIter::new(sources, false)
        .take(limit)
        .map(|e| e.expect("in-memory sources do not fail"))
        .collect();
    let next = handlers::page_next(&entries, limit, cut, page_end);
    (entries, next)
}

proptest::proptest! {
    /// Paging through any mix of puts and deletes spread over a table and several
    /// memtables returns exactly the live keys of the range, newest values, in order.
    #[test]
    fn paged_scans_over_memtables_and_a_table_match_a_model(
        writes in proptest::collection::vec((0..24u8, proptest::option::of(0..4u8)), 1..120),
        cuts in proptest::collection::vec(0..120usize, 0..4),
        bounds in (proptest::option::of(0..24u8), proptest::option::of(0..25u8)),
        limit in 1..6usize,
    ) {
        let key = |k: u8| format!("k{k:02}").into_bytes();
        // Writes in seq order: the oldest part goes to the table, each later part to a
        // newer memtable (cut points sorted, so parts are contiguous).
        let mut cuts = cuts;
        cuts.sort_unstable();
        let part = |i: usize| cuts.iter().filter(|&&c| c <= i).count();
        let mut parts: Vec<MemTable> = Vec::new();
        let mut model = std::collections::BTreeMap::new();
        for (i, (k, v)) in writes.iter().enumerate() {
            let p = part(i);
            while parts.len() <= p {
                parts.push(MemTable::default());
            }
            let value = v.map(|v| vec![v]);
            let hash = crate::keyhash::KeyHash::of(&key(*k));
            parts[p].apply(key(*k), hash, i as u64 + 1, value.clone());
            match value {
                Some(v) => model.insert(key(*k), v),
                None => model.remove(&key(*k)),
            };
        }
        let table: Vec<Entry> = parts.remove(0).entries().collect();
        parts.reverse(); // newest first
        let (start, end) = (bounds.0.map(key), bounds.1.map(key));
        let mut got = Vec::new();
        let mut cursor = start.clone();
        for _ in 0..200 {
            let (entries, next) =
                page_over(&parts, &table, cursor.as_deref(), end.as_deref(), limit);
            proptest::prop_assert!(entries.len() <= limit);
            got.extend(entries.into_iter().map(|e| (e.key, e.value.expect("live"))));
            match next {
                Some(n) => {
                    proptest::prop_assert!(Some(&n) > cursor.as_ref(), "next goes forward");
                    cursor = Some(n);
                }
                None => break,
            }
        }
        let want: Vec<_> = model
            .into_iter()
            .filter(|(k, _)| start.as_ref().is_none_or(|s| k >= s))
            .filter(|(k, _)| end.as_ref().is_none_or(|e| k < e))
            .collect();
        proptest::prop_assert_eq!(got, want);
    }
}

/// Direct reads (`view::LocalReads`, what the coordinator uses) see every acknowledged
/// write while memtables are sealed, flushed and dropped under them: the view is published
/// in the turn that changes it, and a table leaves it only once its SSTable is installed.
#[actix_rt::test]
async fn direct_reads_see_every_acknowledged_write_across_seals_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (life, arbiter) = start_life(dir.path(), 1 << 20, 4 * 1024);
    let value = |i: u32| format!("value-{i}-{}", "x".repeat(64));
    for i in 0..1500u32 {
        let k = format!("key-{:05}", (i * 7919) % 1500);
        put(&life.addr, &k, Some(&value(i))).await;
        let got = life.reads.lookup(k.as_bytes());
        // `None`: a block must be read from a file (the actor's disk path); fine, but what
        // memory or the cache answers must be the write just acknowledged.
        if let Some(got) = got {
            assert_eq!(got, Some(value(i).into_bytes()), "{k}");
        }
    }
    let stats = life.addr.send(GetMemtableStats).await.unwrap();
    assert!(
        stats.seals >= 10,
        "the test must cross seals: {}",
        stats.seals
    );
    end_life(life, arbiter).await;
}
