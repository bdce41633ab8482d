//! The actor's start-up rebuild against a stand-in Memtable whose scan the test holds back:
//! a write notified while the scan is in flight wins over the scan's older view of its key,
//! and no round starts before the rebuild ends.

use super::actor::TreeHashOf;
use super::tree::{tree_hash, TreeClock, Trees, DEFAULT_SHAPE};
use super::*;
use crate::coordinator::placement::RingInputs;
use crate::coordinator::{JoinLocal, LocalWrite, LocalWrites, Stored};
use crate::engine::Entry;
use crate::memtable::{Get, Scan, ScanResult, StorageError};
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use troupe_protocol::object::{ActorId, Object, Value};

/// A Memtable stand-in: one scan page of `entries`, answered once `gate` opens.
struct FakeStore {
    entries: Vec<Entry>,
    gate: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl Actor for FakeStore {
    type Context = Context<Self>;
}

impl Handler<Scan> for FakeStore {
    type Result = ResponseFuture<Result<ScanResult, StorageError>>;
    fn handle(&mut self, _: Scan, _: &mut Context<Self>) -> Self::Result {
        let gate = self.gate.lock().unwrap().take();
        let entries = self.entries.clone();
        Box::pin(async move {
            if let Some(g) = gate {
                let _ = g.await;
            }
            Ok(ScanResult {
                entries,
                next: None,
            })
        })
    }
}

impl Handler<Get> for FakeStore {
    type Result = Result<Option<crate::memtable::table::Versioned>, StorageError>;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Self::Result {
        Ok(None)
    }
}

impl Handler<JoinLocal> for FakeStore {
    type Result = Result<Stored, crate::coordinator::ClientError>;
    fn handle(&mut self, m: JoinLocal, _: &mut Context<Self>) -> Self::Result {
        Ok(Stored {
            bytes: m.object.encode(),
            object: m.object,
        })
    }
}

fn object(value: &str, writes: u64) -> Object {
    let mut o = Object::new();
    for _ in 0..writes {
        o = o
            .update(&o.context(), Value::data(value), ActorId(1))
            .unwrap();
    }
    o
}

#[actix_rt::test]
async fn a_write_during_the_rebuild_wins_over_the_scan() {
    let (old, new, other) = (object("old", 1), object("new", 2), object("x", 1));
    let (open, gate) = oneshot::channel();
    let store = FakeStore {
        entries: vec![
            Entry::put(b"k".to_vec(), 1, old.encode()),
            Entry::put(b"other".to_vec(), 2, other.encode()),
            Entry::put(b"junk".to_vec(), 3, b"not an object".to_vec()),
        ],
        gate: Arc::new(Mutex::new(Some(gate))),
    }
    .start();
    let cfg = AntiEntropyConfig {
        me: "n1".into(),
        enabled: true,
        interval: std::time::Duration::from_secs(3600),
        max_bytes_per_sec: 0,
        request_timeout: std::time::Duration::from_secs(10),
        partitions: 16,
        shape: DEFAULT_SHAPE,
        mailbox: 100,
    };
    let ae = AntiEntropy::new(
        cfg,
        Trees::new(DEFAULT_SHAPE, 16).unwrap(),
        store.clone().recipient(),
        store.clone().recipient(),
        store.recipient(),
        None,
        RingInputs::single_for_tests(),
        Arc::default(),
    )
    .start();

    // The scan (holding the old object) is in flight; the write of the new one lands.
    ae.send(LocalWrites(vec![LocalWrite::new(
        b"k".to_vec(),
        TreeClock::of(&new),
    )]))
    .await
    .unwrap();
    assert_eq!(
        ae.send(StartRepair { partition: None })
            .await
            .unwrap()
            .map(|r| r.round),
        Err(RepairRefused::NotReady { keys: 1 }),
        "no round before the trees are built"
    );
    open.send(()).unwrap();
    // The rebuild ends with the page: wait for it through the actor's own answer.
    let mut answer = ae.send(TreeHashOf(b"k".to_vec())).await.unwrap();
    while !answer.1 {
        tokio::task::yield_now().await;
        answer = ae.send(TreeHashOf(b"k".to_vec())).await.unwrap();
    }
    assert_eq!(
        answer.0,
        tree_hash(&new),
        "the notified write, not the scan's view"
    );
    let other_hash = ae.send(TreeHashOf(b"other".to_vec())).await.unwrap().0;
    assert_eq!(other_hash, tree_hash(&other), "scanned keys go in");
    let junk = ae.send(TreeHashOf(b"junk".to_vec())).await.unwrap().0;
    assert_eq!(junk, None, "a value that is no object is not compared");
    assert!(ae
        .send(StartRepair { partition: None })
        .await
        .unwrap()
        .is_ok());
}
