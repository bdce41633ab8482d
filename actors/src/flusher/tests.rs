//! Flusher stories: a flush whose table cannot be written (ENOSPC from a test-only fault in
//! the table writer) is retried with backoff, never poisons the node, and loses nothing.

use super::*;
use crate::compactor::Compactor;
use crate::engine::sstable::fault::{inject, FaultOp};
use crate::engine::TablesOptions;
use crate::gc::Gc;
use crate::memtable::wal::Durability;
use crate::memtable::{tables_dir, wal_dir, Get, MemtableActor, MemtableConfig, Seal, Write};
use crate::stats::Registry;

struct Node {
    memtable: Addr<MemtableActor>,
    tables: Arc<Tables>,
    flusher: Arc<FlusherStats>,
    health: wal::Health,
}

fn start(dir: &Path) -> Node {
    let reg = Registry::default();
    let (tables, rec) = Tables::open(&tables_dir(dir), TablesOptions::default()).expect("open");
    let tables = Arc::new(tables);
    let config = MemtableConfig {
        data_dir: dir.to_path_buf(),
        durability: Durability::Sync,
        wal_queue_jobs: 1024,
        max_queued_bytes: 1 << 20,
        mailbox: 1024,
        memtable_bytes: 64 << 20,
        wal_bytes: 64 << 20,
        max_sealed: 2,
        max_stalled_writes: 10_000,
        max_disk_reads: 8,
        read_workers: 2,
    };
    let (mut actor, _) = MemtableActor::open(
        config,
        tables.clone(),
        rec.retired_wal_segment,
        rec.last_flushed_seq,
        reg.actor("memtable"),
    )
    .expect("open memtable");
    let health = actor.health();
    let gc = Gc::new(tables.clone(), reg.actor("gc")).start();
    let compactor = Compactor::new(
        tables.clone(),
        gc.recipient(),
        health.clone(),
        reg.actor("compactor"),
    )
    .start();
    let flusher = Flusher::new(
        tables.clone(),
        wal_dir(dir),
        Some(compactor.recipient()),
        reg.actor("flusher"),
        20,
    );
    let stats = flusher.stats();
    actor.set_flusher(flusher.start().recipient());
    Node {
        memtable: actor.start(),
        tables,
        flusher: stats,
        health,
    }
}

async fn put(n: &Node, k: &str) {
    n.memtable
        .send(Write {
            key: k.as_bytes().to_vec(),
            value: Some(k.as_bytes().to_vec()),
        })
        .await
        .expect("mailbox")
        .expect("the write is acknowledged");
}

async fn get(n: &Node, k: &str) -> Option<Vec<u8>> {
    n.memtable
        .send(Get {
            key: k.as_bytes().to_vec(),
        })
        .await
        .expect("mailbox")
        .expect("read")
        .and_then(|v| v.value)
}

#[actix_rt::test]
async fn a_flush_on_a_full_disk_is_retried_and_writes_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = start(dir.path());
    let full = inject(
        &tables_dir(dir.path()),
        0..=0,
        FaultOp::Write,
        libc::ENOSPC,
        None,
    );
    for i in 0..10 {
        put(&n, &format!("a{i}")).await;
    }
    let mut sealed = actix::spawn(n.memtable.send(Seal));
    // A third attempt starts only after the second failure was handled (counted, retry
    // scheduled): wait for it, then look at what the first two left. A flusher that gives
    // up instead answers the `Seal` with an error.
    tokio::select! {
        () = full.hit(3) => {}
        r = &mut sealed => panic!("the flush gave up on a full disk: {r:?}"),
    }
    assert_eq!(
        n.tables.poisoned(),
        None,
        "a failed table write is not poison"
    );
    assert_eq!(*n.health.lock().expect("health"), None);
    let s = n.flusher.snapshot();
    assert!(s.failures.failures >= 2 && s.failures.consecutive_failures >= 1);
    assert!(s
        .failures
        .failing("flush")
        .is_some_and(|l| l.contains("No space left")));
    // Writes are still acknowledged while the flush keeps failing.
    for i in 0..10 {
        put(&n, &format!("b{i}")).await;
    }
    assert_eq!(n.tables.current_version().level(0).len(), 0);

    // Space comes back: the next retry lands the table and answers the `Seal`.
    drop(full);
    sealed
        .await
        .expect("join")
        .expect("mailbox")
        .expect("the flush succeeds once the disk has space");
    assert_eq!(n.tables.current_version().level(0).len(), 1);
    // Each failed attempt wrote under its own id; none left a file behind.
    let files: Vec<String> = std::fs::read_dir(tables_dir(dir.path()))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.contains(".sst")).count(),
        1,
        "only the committed table: {files:?}"
    );
    let s = n.flusher.snapshot();
    assert_eq!(s.flushes, 1);
    assert_eq!(s.failures.failing("flush"), None, "healthy again");
    for i in 0..10 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        assert_eq!(get(&n, &a).await, Some(a.into_bytes()));
        assert_eq!(get(&n, &b).await, Some(b.into_bytes()));
        assert!(
            n.tables
                .get(format!("a{i}").as_bytes())
                .expect("get")
                .is_some(),
            "a{i} is in the flushed table"
        );
    }
    assert_eq!(n.tables.poisoned(), None);
}
