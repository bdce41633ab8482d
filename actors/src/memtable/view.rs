//! Reads served from memory without the Memtable actor's mailbox.
//!
//! [`MemView`] is the list of memory tables newest first (active, closing, sealed newest to
//! oldest), published by the Memtable actor whenever the list changes (a seal, a flush
//! completed). [`LocalReads`] is what a reader outside the actor holds (the coordinator, on
//! the same event loop or another thread): the view and the
//! SSTables. Its [`LocalReads::lookup`] answers a key from the memory tables, or from the
//! tables when the bloom filters or the block cache answer without I/O, and says "ask the
//! actor" otherwise (a block must be read from a file: the actor's disk-read queue does
//! that). So a get whose data is in memory never waits behind the writes queued in the
//! actor's mailbox, and costs no thread hop.
//!
//! The actor stays the only writer. Invariants (why a reader never sees a write before it is
//! acknowledged, and never an older version than memory holds):
//! - A write is applied to a memory table only when the WAL writer reported it durable, in
//!   the same actor turn that acknowledges it (`DurableBatch`; or `FlushWal`, for a relaxed
//!   group the actor wrote to the WAL itself); before that it exists only in the WAL queue,
//!   which readers cannot see. A reader may see a write a moment before its
//!   writer hears the acknowledgement, never before it is durable.
//! - The list is replaced in the same actor turn as the change that makes it stale, before
//!   any later write is applied: a seal creates the new active table, and no durable write
//!   reaches it before the next turn, by which time the view lists it.
//! - A sealed table leaves the list only after its SSTable is installed in the tables
//!   (the Flusher installs, then reports): a reader that no longer sees the table finds its
//!   entries in the tables; one holding the old list still reads the table itself.
//! - A reader holds the list's read lock while it looks through the tables, one table read
//!   lock at a time; the actor holds a table's write lock for one map insert, and the list's
//!   write lock only to swap the list. Nothing waits on I/O under either.

use super::table::{MemTable, Versioned};
use crate::engine::Tables;
use crate::keyhash::KeyHash;
use std::sync::{Arc, RwLock};

/// The memory tables, newest first, as the Memtable actor last published them.
#[derive(Default)]
pub struct MemView(RwLock<Vec<Arc<MemTable>>>);

impl MemView {
    /// Replaces the list (the actor, after a seal or a completed flush).
    pub(super) fn publish(&self, tables: Vec<Arc<MemTable>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = tables;
    }

    /// `f` of the newest version of `key` in memory, run on it where it lies (under the
    /// table's read lock: keep `f` to CPU work); `None` when memory does not hold the key.
    /// The key is hashed once for all the tables probed.
    pub fn with<R>(&self, key: &[u8], f: impl FnOnce(&Versioned) -> R) -> Option<R> {
        let hash = KeyHash::of(key);
        let list = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut f = Some(f);
        list.iter().find_map(|t| {
            t.with(key, hash, |v| {
                f.take().expect("called once: find_map stops")(v)
            })
        })
    }
}

/// A reader's handle: lookups from memory and the cache on the caller's thread.
#[derive(Clone)]
pub struct LocalReads {
    view: Arc<MemView>,
    tables: Arc<Tables>,
}

impl LocalReads {
    pub(super) fn new(view: Arc<MemView>, tables: Arc<Tables>) -> LocalReads {
        LocalReads { view, tables }
    }

    /// `Some` with the newest durable value of `key` (`None` inside: a tombstone or no such
    /// key) when memory, the bloom filters or the block cache answer; `None` when a file must
    /// be read or the tables reported an error: send the actor a `Get`, whose disk path
    /// reads it and names the file on an error. A copy: [`LocalReads::lookup_with`] reads
    /// it in place.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.lookup_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// Readies `key`'s version in memory for a read that follows soon (it changes nothing
    /// a read returns): looks the key up in the memory tables, which brings their buckets
    /// into the cache (that probe still waits for its misses), and asks the CPU to load the
    /// value's first lines without waiting. A batch does this for all its keys before it
    /// reads any, so the misses on the values overlap instead of queueing one after
    /// another. Under pipelined gets from memory the two lookups' misses were 23% of a
    /// node's CPU samples (docs/BENCHMARKS.md, "Prefetched batches"). A key memory does not
    /// hold costs one walk of the memory tables more.
    pub fn prefetch(&self, key: &[u8]) {
        self.view.with(key, prefetch_value);
    }

    /// [`LocalReads::lookup`] that hands `f` the value's bytes where they lie instead of a
    /// copy: a get that decodes a value from memory copies it once, not twice.
    pub fn lookup_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Option<R> {
        let mut f = Some(f);
        let from_memory = self
            .view
            .with(key, |v| f.take().expect("called once")(v.value.as_deref()));
        if from_memory.is_some() {
            return from_memory;
        }
        let f = f.expect("not called: memory did not hold the key");
        match self
            .tables
            .get_cached_with(key, None, |e| f(e.and_then(|e| e.value)))
        {
            Some(Ok(r)) => Some(r),
            Some(Err(_)) | None => None,
        }
    }
}

/// Asks the CPU to load the first lines of `v`'s value without waiting for them: the lines
/// at its start and 64 bytes on, most of a value of ~100 bytes.
pub(super) fn prefetch_value(v: &Versioned) {
    if let Some(b) = &v.value {
        prefetch_line(b.as_ptr());
        if b.len() > 64 {
            prefetch_line(b[64..].as_ptr());
        }
    }
}

/// Asks the CPU to load the cache line holding `p` (no effect off x86-64).
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never changes memory, whatever
    // the address (here inside a live `Vec`, or its dangling pointer when it is empty).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::*;
    use crate::engine::io::hooked::{HookedIo, Hooks};
    use crate::engine::TablesOptions;
    use crate::stats::Registry;
    use std::io;
    use std::path::Path;
    use std::sync::mpsc as std_mpsc;
    use std::sync::Mutex;

    /// A gate on the WAL's fdatasync: while closed, a sync reports that it started and then
    /// waits until the test opens the gate (the test hook that holds the WAL sync).
    #[derive(Debug, Default)]
    pub(in crate::memtable) struct Gate {
        closed: Mutex<Option<(std_mpsc::Sender<()>, std_mpsc::Receiver<()>)>>,
        /// The next sync fails (a disk error).
        fail: std::sync::atomic::AtomicBool,
    }

    impl Gate {
        /// Closes the gate: the next sync sends on `entered`, then waits for `open`.
        pub(in crate::memtable) fn close(
            &self,
            entered: std_mpsc::Sender<()>,
            open: std_mpsc::Receiver<()>,
        ) {
            *self.closed.lock().unwrap() = Some((entered, open));
        }

        /// Makes the next sync fail.
        fn fail_next(&self) {
            self.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        }

        fn pass(&self) -> io::Result<()> {
            let held = self.closed.lock().unwrap().take();
            if let Some((entered, open)) = held {
                let _ = entered.send(());
                let _ = open.recv();
            }
            if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("injected fdatasync failure"));
            }
            Ok(())
        }
    }

    impl Hooks for Gate {
        fn before_sync(&self) -> io::Result<()> {
            self.pass()
        }
    }

    fn open(dir: &Path, gate: Arc<Gate>) -> MemtableActor {
        open_with(gate, crate::memtable::tests::config(dir, 1 << 20, 1 << 20))
    }

    /// A memtable over `config.data_dir` whose WAL and tables sync through `gate`.
    pub(in crate::memtable) fn open_with(gate: Arc<Gate>, config: MemtableConfig) -> MemtableActor {
        let dir = config.data_dir.clone();
        let dir = dir.as_path();
        let opts = TablesOptions {
            io: Arc::new(HookedIo(gate)),
            ..TablesOptions::default()
        };
        let (tables, rec) = Tables::open(&tables_dir(dir), opts).unwrap();
        let reg = Registry::default();
        let (actor, _) = MemtableActor::open(
            config,
            Arc::new(tables),
            rec.retired_wal_segment,
            rec.last_flushed_seq,
            reg.actor("memtable"),
        )
        .unwrap();
        actor
    }

    fn value(v: Option<Versioned>) -> Option<Vec<u8>> {
        v.and_then(|v| v.value)
    }

    fn write(v: &str) -> Write {
        Write {
            key: b"k".to_vec(),
            value: Some(v.as_bytes().to_vec()),
        }
    }

    /// A started memtable whose syncs pass through the returned gate, holding `k` = `v1`
    /// (acknowledged and read back directly).
    async fn started_with_v1() -> (
        tempfile::TempDir,
        Arc<Gate>,
        super::LocalReads,
        actix::Addr<MemtableActor>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        let actor = open(dir.path(), gate.clone());
        let reads = actor.local_reads();
        let addr = actor.start();
        addr.send(write("v1")).await.unwrap().unwrap();
        assert_eq!(reads.lookup(b"k").unwrap(), Some(b"v1".to_vec()));
        (dir, gate, reads, addr)
    }

    /// Holds the WAL's fdatasync of a second write of a key and reads the key meanwhile,
    /// both directly (`LocalReads`, what the coordinator uses) and through the actor: both
    /// see the first, acknowledged write until the second is acknowledged.
    #[actix_rt::test]
    async fn a_read_never_returns_a_write_before_it_is_acknowledged() {
        let (_dir, gate, reads, addr) = started_with_v1().await;

        let (entered_tx, entered) = std_mpsc::channel();
        let (open_gate, open_rx) = std_mpsc::channel();
        gate.close(entered_tx, open_rx);
        let second = tokio::spawn(addr.send(write("v2")));
        // The WAL writer is now inside the sync of the batch that holds v2 (or of the
        // preallocation before it): v2 cannot have been acknowledged.
        tokio::task::spawn_blocking(move || entered.recv().unwrap())
            .await
            .unwrap();
        assert!(!second.is_finished());
        for _ in 0..100 {
            let direct = reads.lookup(b"k").unwrap();
            assert_eq!(
                direct,
                Some(b"v1".to_vec()),
                "a direct read saw v2 before its ack"
            );
            let in_place = reads.lookup_with(b"k", |v| v.map(<[u8]>::to_vec)).unwrap();
            assert_eq!(in_place, direct, "a read in place saw v2 before its ack");
            let via_actor = addr
                .send(Get { key: b"k".to_vec() })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                value(via_actor),
                Some(b"v1".to_vec()),
                "a read through the actor saw v2 before its ack"
            );
            tokio::task::yield_now().await;
        }
        open_gate.send(()).unwrap();
        second.await.unwrap().unwrap().unwrap();
        assert_eq!(reads.lookup(b"k").unwrap(), Some(b"v2".to_vec()));
        let in_place = reads.lookup_with(b"k", |v| v.map(<[u8]>::to_vec));
        assert_eq!(in_place, Some(Some(b"v2".to_vec())));
        // Not in memory, and no table can hold it: answered without the actor, as lookup.
        assert_eq!(reads.lookup(b"absent"), Some(None));
        assert_eq!(reads.lookup_with(b"absent", |v| v.is_none()), Some(true));
    }

    /// A write whose batch fails to sync is answered with the failure and not applied:
    /// readers, direct or through the actor, still see the write before it, and later
    /// writes are refused (the WAL is poisoned). After a restart replay may bring it back,
    /// which its `Indeterminate` answer allows.
    #[actix_rt::test]
    async fn a_write_whose_sync_failed_is_never_read() {
        let (_dir, gate, reads, addr) = started_with_v1().await;
        gate.fail_next();
        let failed = addr.send(write("v2")).await.unwrap();
        assert!(
            matches!(failed, Err(StorageError::Indeterminate(_))),
            "{failed:?}"
        );
        assert_eq!(reads.lookup(b"k").unwrap(), Some(b"v1".to_vec()));
        let via_actor = addr.send(Get { key: b"k".to_vec() }).await.unwrap();
        assert_eq!(value(via_actor.unwrap()), Some(b"v1".to_vec()));
        let later = addr.send(write("v3")).await.unwrap();
        assert!(matches!(later, Err(StorageError::Poisoned(_))), "{later:?}");
        assert_eq!(reads.lookup(b"k").unwrap(), Some(b"v1".to_vec()));
    }
}
