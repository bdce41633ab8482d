//! The Memtable actor: owns the in-memory table and the WAL writer.
//!
//! Receives: [`Write`] (put or delete), [`Read`], [`SyncWal`]; internally [`DurableBatch`] from the
//! WAL writer thread. A write gets the next sequence number, is encoded and queued on the
//! WAL writer thread (never written on this actor's event loop), and is applied to the table
//! and acknowledged only when the writer reports it durable. Readers therefore never see a
//! write that a crash could still lose.
//!
//! Invariants:
//! - Durable notifications arrive in log order, one message per group commit (one writer
//!   thread, FIFO mailbox), so the table is updated in sequence order.
//! - Bytes queued for the WAL are bounded by `max_queued_bytes`; past that a write gets
//!   [`StorageError::Overloaded`] at once and costs nothing else.
//! - Once the WAL is poisoned every write fails; reads keep working.

pub mod table;
pub mod wal;

use crate::stats::ActorCounters;
use actix::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use table::{MemTable, Versioned};
use tokio::sync::oneshot;
use wal::{Durability, WalError, WalRecord, WalWriter};

/// Why a write was not acknowledged.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    /// Nothing was written; the node has too much queued. Retry with backoff.
    #[error("write queue full ({queued} bytes queued, limit {limit}); retry with backoff")]
    Overloaded { queued: usize, limit: usize },
    /// The write was not (and will never be) acknowledged: the log failed earlier.
    #[error("storage refuses writes: {0}")]
    Poisoned(String),
    /// The actor or its writer stopped; the write's fate is unknown (it may be durable).
    #[error("storage stopped while handling the request")]
    Stopped,
}

/// Settings of the memtable and its log.
#[derive(Debug, Clone)]
pub struct MemtableConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Jobs the WAL writer queue holds.
    pub wal_queue_jobs: usize,
    /// Bytes of encoded records waiting for the WAL at most.
    pub max_queued_bytes: usize,
    /// Mailbox capacity (senders using `send` wait when it is full).
    pub mailbox: usize,
}

/// Put (`value: Some`) or delete (`value: None`) a key. Replies with the write's sequence
/// number once it is durable.
#[derive(Message)]
#[rtype(result = "Result<u64, StorageError>")]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Reads the newest durable version of a key (a tombstone is `Some` with `value: None`).
#[derive(Message)]
#[rtype(result = "Option<Versioned>")]
pub struct Read {
    pub key: Vec<u8>,
}

/// Makes everything acknowledged so far durable (used at shutdown in relaxed mode).
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct SyncWal;

/// A write waiting for its WAL record to become durable.
struct Pending {
    seq: u64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// Encoded size, released from `queued_bytes` when the batch completes.
    len: usize,
    reply: oneshot::Sender<Result<u64, StorageError>>,
}

/// From the WAL writer thread: one group commit's writes are durable (or failed), in log
/// order.
#[derive(Message)]
#[rtype(result = "()")]
struct DurableBatch {
    writes: Vec<Pending>,
    result: Result<(), WalError>,
}

/// The actor's address, filled in once it starts; the WAL sink needs it but the writer
/// thread is started (by `open`) before the actor exists.
type SelfAddr = Arc<std::sync::OnceLock<Addr<MemtableActor>>>;

pub struct MemtableActor {
    table: MemTable,
    wal: WalWriter<Pending>,
    self_addr: SelfAddr,
    next_seq: u64,
    queued_bytes: Arc<AtomicUsize>,
    config: MemtableConfig,
    counters: Arc<ActorCounters>,
}

/// What [`MemtableActor::open`] recovered, for the start-up log.
#[derive(Debug)]
pub struct OpenReport {
    pub records: usize,
    pub keys: usize,
    pub torn_bytes: u64,
    pub segments: usize,
}

impl MemtableActor {
    /// Replays the WAL under `config.data_dir/wal` and starts its writer thread. Blocking:
    /// call before the actor system serves anything (start-up), never from an actor.
    pub fn open(
        config: MemtableConfig,
        counters: Arc<ActorCounters>,
    ) -> Result<(MemtableActor, OpenReport), WalError> {
        let dir = wal_dir(&config.data_dir);
        let recovered = wal::recover(&dir)?;
        let mut table = MemTable::default();
        let mut max_seq = 0;
        let records = recovered.records.len();
        for WalRecord { seq, key, value } in recovered.records {
            max_seq = max_seq.max(seq);
            table.apply(key, seq, value);
        }
        // Appending after a replayed segment is safe: recovery truncated any torn tail.
        let segment = recovered.segments.last().copied().unwrap_or(1);
        let self_addr: SelfAddr = Arc::default();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let sink = {
            let self_addr = self_addr.clone();
            let queued_bytes = queued_bytes.clone();
            let counters = counters.clone();
            Box::new(move |writes: Vec<Pending>, result: Result<(), WalError>| {
                let bytes: usize = writes.iter().map(|w| w.len).sum();
                queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                if let Some(addr) = self_addr.get() {
                    counters.sent();
                    // Bounded by the WAL queue: the batch holds at most `wal_queue_jobs` writes.
                    addr.do_send(DurableBatch { writes, result });
                }
                // Before the actor started nothing can have been appended, so no reply is lost.
            })
        };
        let writer = WalWriter::start(
            &dir,
            segment,
            config.durability,
            config.wal_queue_jobs,
            sink,
        )?;
        let report = OpenReport {
            records,
            keys: table.len(),
            torn_bytes: recovered.torn_bytes,
            segments: recovered.segments.len(),
        };
        Ok((
            MemtableActor {
                table,
                wal: writer,
                self_addr,
                next_seq: max_seq + 1,
                queued_bytes,
                config,
                counters,
            },
            report,
        ))
    }

    /// The shared poison flag of the WAL, for status reporting.
    pub fn health(&self) -> wal::Health {
        self.wal.health()
    }
}

pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

impl Actor for MemtableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.config.mailbox);
        let _ = self.self_addr.set(ctx.address());
        self.counters.started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<Write> for MemtableActor {
    type Result = ResponseFuture<Result<u64, StorageError>>;

    fn handle(&mut self, msg: Write, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        if let Some(reason) = self.wal.poisoned() {
            self.counters.error();
            return Box::pin(async move { Err(StorageError::Poisoned(reason)) });
        }
        let seq = self.next_seq;
        let record = WalRecord {
            seq,
            key: msg.key,
            value: msg.value,
        };
        let mut bytes =
            Vec::with_capacity(32 + record.key.len() + record.value.as_ref().map_or(0, Vec::len));
        wal::encode_record(&record, &mut bytes);
        let len = bytes.len();
        let limit = self.config.max_queued_bytes;
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > limit {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.counters.error();
            return Box::pin(async move { Err(StorageError::Overloaded { queued, limit }) });
        }
        let (tx, rx) = oneshot::channel();
        let WalRecord { key, value, .. } = record;
        let pending = Pending {
            seq,
            key,
            value,
            len,
            reply: tx,
        };
        if let Err(e) = self.wal.append(bytes, pending) {
            // The pending write (and its reply sender) was dropped unqueued.
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.counters.error();
            let err = match e {
                wal::SubmitError::Full => StorageError::Overloaded {
                    queued: self.queued_bytes.load(Ordering::Relaxed),
                    limit,
                },
                wal::SubmitError::Stopped => StorageError::Stopped,
            };
            return Box::pin(async move { Err(err) });
        }
        self.next_seq += 1;
        Box::pin(async move { rx.await.unwrap_or(Err(StorageError::Stopped)) })
    }
}

impl Handler<DurableBatch> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self>) {
        self.counters.handled();
        match msg.result {
            Ok(()) => {
                for w in msg.writes {
                    self.table.apply(w.key, w.seq, w.value);
                    let _ = w.reply.send(Ok(w.seq));
                }
            }
            Err(e) => {
                self.counters.error();
                let err = StorageError::Poisoned(e.to_string());
                for w in msg.writes {
                    let _ = w.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

impl Handler<Read> for MemtableActor {
    type Result = Option<Versioned>;

    fn handle(&mut self, msg: Read, _: &mut Context<Self>) -> Option<Versioned> {
        self.counters.handled();
        self.table.get(&msg.key).cloned()
    }
}

impl Handler<SyncWal> for MemtableActor {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, _: SyncWal, _: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let (tx, rx) = oneshot::channel();
        let queued = self.wal.sync(Box::new(move |r| {
            let _ = tx.send(r.map_err(|e| StorageError::Poisoned(e.to_string())));
        }));
        Box::pin(async move {
            match queued {
                Ok(()) => rx.await.unwrap_or(Err(StorageError::Stopped)),
                Err(_) => Err(StorageError::Stopped),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Registry;

    fn config(dir: &Path, max_queued_bytes: usize) -> MemtableConfig {
        MemtableConfig {
            data_dir: dir.to_path_buf(),
            durability: Durability::Sync,
            wal_queue_jobs: 1024,
            max_queued_bytes,
            mailbox: 1024,
        }
    }

    #[actix_rt::test]
    async fn writes_are_readable_after_ack_and_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::default();
        let (actor, _) =
            MemtableActor::open(config(dir.path(), 1 << 20), reg.actor("memtable")).unwrap();
        let addr = actor.start();
        let mut acks = Vec::new();
        for i in 0..50u32 {
            acks.push(addr.send(Write {
                key: format!("k{}", i % 10).into_bytes(),
                value: Some(i.to_be_bytes().to_vec()),
            }));
        }
        for a in acks {
            a.await.unwrap().unwrap();
        }
        addr.send(Write {
            key: b"k0".to_vec(),
            value: None,
        })
        .await
        .unwrap()
        .unwrap();
        let got = addr
            .send(Read {
                key: b"k9".to_vec(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value, Some(49u32.to_be_bytes().to_vec()));
        drop(addr);

        let (actor, report) =
            MemtableActor::open(config(dir.path(), 1 << 20), reg.actor("memtable")).unwrap();
        assert_eq!(report.records, 51);
        assert_eq!(
            actor.table.get(b"k9").unwrap().value,
            Some(49u32.to_be_bytes().to_vec())
        );
        assert_eq!(actor.table.get(b"k0").unwrap().value, None);
        assert_eq!(actor.next_seq, 52);
    }

    #[actix_rt::test]
    async fn a_full_write_queue_answers_overloaded_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::default();
        let (actor, _) =
            MemtableActor::open(config(dir.path(), 10), reg.actor("memtable")).unwrap();
        let addr = actor.start();
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
            .send(Read {
                key: b"key".to_vec()
            })
            .await
            .unwrap()
            .is_none());
    }
}
