//! Read-modify-write of one key inside the Memtable actor ([`UpdateThen`]: an [`Update`]
//! and the callback that gets its answer).
//!
//! A replicated write reads the key's stored object, joins or updates it, and writes the
//! result. Done as a `Get` and then a `Write`, that is two round trips between the caller
//! and the Memtable actor per write; as an `Update` the read and the write are one
//! message: the caller's function runs here, on the value the actor just looked up, and its
//! write is queued to the WAL in the same turn. The answer comes once that write is durable.
//!
//! Invariants:
//! - The function sees the newest *durable* value of the key: memory first (active, closing,
//!   sealed tables; newest first), else the SSTables. A lookup the bloom filters rule out
//!   answers "absent" at once; otherwise the tables are read off the event loop (the
//!   disk-read queue, bounded by the `max_disk_reads` permits like a `Get`), and memory is
//!   looked at again when the tables answer, since memory is always newer than the tables.
//! - Writes are applied to memory only once durable, so two updates of one key in flight
//!   at once would both see the value before either: callers serialize updates per key (the
//!   coordinator's key locks do: one update per key at a time, the next after the answer).
//! - The answer is the function's output once its write (if any) is durable, or the storage
//!   error (`Overloaded`, `Poisoned`, `Indeterminate`, `Read`, `Stopped`) that prevented it;
//!   the function's output is dropped with an error, since nothing it computed was stored.
//! - The answer goes to a callback the actor runs, not a reply message: a reply
//!   cost a task spawned here to await the write (`ResponseFuture`), a task on the caller's
//!   side to await the reply, and three channels; the coordinator's callback queues the
//!   outcome for it directly, one wake-up for all a turn finishes (25% less node CPU per
//!   three-node put, docs/BENCHMARKS.md). It runs exactly once ([`UpdateDone`]): dropped
//!   unrun, it answers `Stopped`.

use super::handlers::{lookup_error, Lookup};
use super::*;
use tokio::sync::OwnedSemaphorePermit;

/// What an update does: what to store for the key (`None`: store nothing) and what to
/// answer the caller once it is durable.
pub struct Change<T> {
    pub write: Option<NewValue>,
    pub out: T,
}

/// The key's next value: bytes, or the engine's delete (a tombstone GC purge).
pub enum NewValue {
    Put(Vec<u8>),
    Delete,
}

/// Computes the change from the key and its current value (`None`: absent or deleted),
/// handed where it lies (in a memory table, under its read lock, or in a cached block): no
/// copy of it is made for the function. Runs in the Memtable actor: keep it to CPU work on
/// the one value.
pub type UpdateFn<T> = Box<dyn FnOnce(&[u8], Option<&[u8]>) -> Change<T> + Send>;

/// Reads `key`, runs `apply` on its value and stores what it returns (see the module docs;
/// callers serialize updates per key). Sent inside an [`UpdateThen`].
pub struct Update<T> {
    pub key: Vec<u8>,
    /// `KeyHash::of(&key)`: the caller's, so the memory tables' probes and the insert
    /// once durable hash nothing.
    pub(crate) hash: KeyHash,
    /// The key's `blake3` hash when the caller took one (a coordinated put, placing the key
    /// on a ring of more than one partition): the bloom filters of a lookup answered in
    /// memory or from cached blocks probe with it instead of hashing the key again (a block
    /// read off disk, on the read queue, hashes the key itself).
    pub(crate) digest: Option<blake3::Hash>,
    pub apply: UpdateFn<T>,
}

#[cfg(test)]
impl<T> Update<T> {
    /// An update of `key`, hashing it here.
    pub fn new(key: Vec<u8>, apply: UpdateFn<T>) -> Update<T> {
        let hash = KeyHash::of(&key);
        Update {
            key,
            hash,
            digest: None,
            apply,
        }
    }
}

/// An [`Update`] and the callback the Memtable actor runs with its answer (once the write
/// is durable, or with the error that prevented it): no channel, no task on either side.
/// The coordinator's callback queues the outcome for it (`coordinator/memtable_link.rs`).
pub struct UpdateThen<T> {
    pub update: Update<T>,
    pub then: UpdateDone<T>,
}

impl<T: Send + 'static> Message for UpdateThen<T> {
    type Result = ();
}

/// Updates handed over together, run in order as if sent one by one: the coordinator
/// queues the updates of one turn of its event loop and sends them as one message (one
/// envelope and one mailbox push per batch, not per write), at most 64 at a time. A
/// `Get` or `Scan` sent after a batch's updates were queued may overtake them: memory
/// changes only once a write is durable, so such a read is concurrent with the write
/// either way.
pub struct UpdateBatch<T>(pub Vec<UpdateThen<T>>);

impl<T: Send + 'static> Message for UpdateBatch<T> {
    type Result = ();
}

/// The callback of an update, run exactly once: with the outcome, or with
/// `StorageError::Stopped` when it is dropped unrun (the actor stopped with it queued), so
/// a caller never waits for an answer that cannot come.
pub struct UpdateDone<T>(Option<Callback<T>>);

type Callback<T> = Box<dyn FnOnce(Result<T, StorageError>) + Send>;

impl<T> UpdateDone<T> {
    pub fn new(f: impl FnOnce(Result<T, StorageError>) + Send + 'static) -> Self {
        UpdateDone(Some(Box::new(f)))
    }

    pub fn call(mut self, r: Result<T, StorageError>) {
        if let Some(f) = self.0.take() {
            f(r)
        }
    }
}

impl<T> Drop for UpdateDone<T> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(StorageError::Stopped))
        }
    }
}

/// The tables' answer for an update that missed memory, back on the event loop.
struct Loaded<T> {
    update: Update<T>,
    got: crate::engine::Result<Option<Entry>>,
    done: UpdateDone<T>,
}

impl<T: Send + 'static> Message for Loaded<T> {
    type Result = ();
}

impl<T: Send + 'static> Handler<UpdateThen<T>> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: UpdateThen<T>, ctx: &mut Context<Self>) {
        self.start_update(msg.update, msg.then, ctx);
    }
}

impl<T: Send + 'static> Handler<UpdateBatch<T>> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: UpdateBatch<T>, ctx: &mut Context<Self>) {
        // As a batch of gets does (`LocalReads::prefetch`): every key's version is readied
        // in memory before the first is read, so their cache misses overlap; with the
        // hashes the updates carry, this hashes nothing.
        if msg.0.len() > 1 {
            for u in &msg.0 {
                let Update { key, hash, .. } = &u.update;
                self.memory()
                    .find_map(|t| t.with(key, *hash, super::view::prefetch_value));
            }
        }
        for u in msg.0 {
            self.start_update(u.update, u.then, ctx);
        }
    }
}

impl<T: Send + 'static> Handler<Loaded<T>> for MemtableActor {
    type Result = ();

    fn handle(&mut self, msg: Loaded<T>, _: &mut Context<Self>) {
        self.counters.received();
        let Loaded { update, got, done } = msg;
        let Update {
            key, hash, apply, ..
        } = update;
        let mut apply = Some(apply);
        // Memory is newer than the tables: a write that became durable meanwhile (a caller
        // that did not serialize) must not be lost.
        let found = self.in_memory_with(&key, hash, |_, value| {
            (apply.take().expect("called once"))(&key, value)
        });
        let change = match (found, apply) {
            (Some(change), _) => change,
            (None, Some(apply)) => match got {
                Ok(e) => apply(&key, e.as_ref().and_then(|e| e.value.as_deref())),
                Err(e) => return done.call(Err(lookup_error(e))),
            },
            (None, None) => unreachable!("in_memory_with calls its function only to answer"),
        };
        self.store_change(key, hash, change, done);
    }
}

impl MemtableActor {
    fn start_update<T: Send + 'static>(
        &mut self,
        msg: Update<T>,
        done: UpdateDone<T>,
        ctx: &mut Context<Self>,
    ) {
        // Counted as sent by the coordinator, its one sender.
        self.counters.handled();
        let Update {
            key,
            hash,
            digest,
            apply,
        } = msg;
        let mut apply = Some(apply);
        let found = self.lookup_with(&key, hash, digest.as_ref(), |v| {
            (apply.take().expect("called once"))(&key, v.and_then(|(_, value)| value))
        });
        match (found, apply) {
            (Lookup::Memory(change), _) => self.store_change(key, hash, change, done),
            (Lookup::Disk, Some(apply)) => {
                let update = Update {
                    key,
                    hash,
                    digest,
                    apply,
                };
                self.load_for_update(update, done, ctx)
            }
            (Lookup::Disk, None) => unreachable!("lookup_with reads from disk without calling"),
        }
    }

    /// Stores what an update's function decided, answering `done` once it is durable.
    fn store_change<T: Send + 'static>(
        &mut self,
        key: Vec<u8>,
        hash: KeyHash,
        change: Change<T>,
        done: UpdateDone<T>,
    ) {
        let Change { write, out } = change;
        let Some(next) = write else {
            return done.call(Ok(out));
        };
        let value = match next {
            NewValue::Put(bytes) => Some(bytes),
            NewValue::Delete => None,
        };
        let reply = WriteReply::Call(Box::new(move |r| done.call(r.map(|_seq| out))));
        self.accept(Write { key, value }, hash, reply);
    }

    fn load_for_update<T: Send + 'static>(
        &mut self,
        update: Update<T>,
        done: UpdateDone<T>,
        ctx: &mut Context<Self>,
    ) {
        let addr = ctx.address();
        let reads = self.reads.clone();
        match self.disk_reads.clone().try_acquire_owned() {
            Ok(permit) => submit(&reads, addr, update, done, permit),
            Err(_) => {
                let permits = self.disk_reads.clone();
                actix::spawn(async move {
                    match permits.acquire_owned().await {
                        Ok(permit) => submit(&reads, addr, update, done, permit),
                        Err(_) => done.call(Err(StorageError::Stopped)),
                    }
                });
            }
        }
    }
}

/// Queues the tables lookup; its answer comes back to the actor as [`Loaded`] (`do_send`:
/// a full mailbox cannot drop it; their number is bounded by the permits).
fn submit<T: Send + 'static>(
    reads: &reads::DiskReads,
    addr: Addr<MemtableActor>,
    update: Update<T>,
    done: UpdateDone<T>,
    permit: OwnedSemaphorePermit,
) {
    let key = update.key.clone();
    let reply: reads::Reply = Box::new(move |got| {
        drop(permit);
        addr.do_send(Loaded { update, got, done });
    });
    if let Err(reads::QueueFull(reply)) = reads.submit(key, reply) {
        // Holding a permit means fewer than `max_disk_reads` lookups are queued.
        reply(Err(crate::engine::EngineError::InvalidArgument(
            "BUG: disk read queue full while holding a permit".into(),
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TablesOptions;
    use crate::stats::Registry;

    /// A memtable over tables holding `k0000..k0499` = `v0..v499`, with one disk-read
    /// permit so lookups also queue for it.
    fn over_tables(dir: &Path) -> (Addr<MemtableActor>, Arc<Tables>) {
        let (tables, rec) = Tables::open(&tables_dir(dir), TablesOptions::default()).unwrap();
        let entries: Vec<Entry> = (0..500u64)
            .map(|i| Entry::put(format!("k{i:04}"), i + 1, format!("v{i}")))
            .collect();
        tables.flush(entries, None).unwrap();
        let tables = Arc::new(tables);
        // One disk-read permit: lookups queue for it.
        let cfg = MemtableConfig {
            max_disk_reads: 1,
            ..crate::memtable::tests::config(dir, 1 << 20, 64 << 20)
        };
        let reg = Registry::default();
        let (actor, _) = MemtableActor::open(
            cfg,
            tables.clone(),
            rec.retired_wal_segment,
            1000,
            reg.actor("memtable"),
        )
        .unwrap();
        (actor.start(), tables)
    }

    /// Sends `u` with a callback that forwards its answer; resolves to that answer.
    fn run_update<T: Send + 'static>(
        addr: &Addr<MemtableActor>,
        u: Update<T>,
    ) -> impl std::future::Future<Output = Result<T, StorageError>> {
        let (tx, rx) = oneshot::channel();
        addr.do_send(UpdateThen {
            update: u,
            then: UpdateDone::new(move |r| drop(tx.send(r))),
        });
        async move { rx.await.unwrap_or(Err(StorageError::Stopped)) }
    }

    /// Appends `suffix` to the value (absent: starts from "none"); answers what it saw.
    fn append(key: &str, suffix: &'static str) -> Update<Option<Vec<u8>>> {
        Update::new(
            key.as_bytes().to_vec(),
            Box::new(move |_: &[u8], v: Option<&[u8]>| {
                let v = v.map(<[u8]>::to_vec);
                let mut next = v.clone().unwrap_or_else(|| b"none".to_vec());
                next.extend_from_slice(suffix.as_bytes());
                Change {
                    write: Some(NewValue::Put(next)),
                    out: v,
                }
            }),
        )
    }

    async fn get(addr: &Addr<MemtableActor>, k: &str) -> Option<Vec<u8>> {
        let key = k.as_bytes().to_vec();
        addr.send(Get { key })
            .await
            .unwrap()
            .unwrap()
            .and_then(|v| v.value)
    }

    /// One `UpdateBatch` mixing keys only the tables hold (read off the event loop, one
    /// permit) with keys memory holds and keys absent everywhere, then, once it is
    /// answered, a second batch over the same keys: every update is answered once and sees
    /// the one before it, as if sent one by one.
    #[actix_rt::test]
    async fn a_batch_of_updates_runs_each_once_as_if_sent_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _tables) = over_tables(dir.path());
        // k0001 in memory first; k0003 and k0005 only in the tables; zz absent.
        run_update(&addr, append("k0001", "+m")).await.unwrap();
        let keys = ["k0003", "k0001", "zz", "k0005"];
        let batch = |suffix: &'static str| {
            let mut updates = Vec::new();
            let mut answers = Vec::new();
            for k in keys {
                let (tx, rx) = oneshot::channel();
                updates.push(UpdateThen {
                    update: append(k, suffix),
                    then: UpdateDone::new(move |r| drop(tx.send(r))),
                });
                answers.push(rx);
            }
            (UpdateBatch(updates), answers)
        };
        // Like the coordinator's key locks: a key's next update after its last answer.
        let mut saw = Vec::new();
        for suffix in ["+a", "+b"] {
            let (updates, answers) = batch(suffix);
            addr.do_send(updates);
            for rx in answers {
                saw.push(rx.await.expect("answered").expect("stored"));
            }
        }
        let saw: Vec<Option<String>> = saw
            .into_iter()
            .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            saw,
            vec![
                s("v3"),
                s("v1+m"),
                None,
                s("v5"),
                s("v3+a"),
                s("v1+m+a"),
                s("none+a"),
                s("v5+a"),
            ]
        );
        assert_eq!(get(&addr, "k0005").await.as_deref(), Some(&b"v5+a+b"[..]));
    }

    #[actix_rt::test]
    async fn an_update_sees_the_newest_value_wherever_it_is_and_stores_its_write() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _tables) = over_tables(dir.path());
        // In the tables only: read off the event loop.
        let saw = run_update(&addr, append("k0002", "+a")).await.unwrap();
        assert_eq!(saw.as_deref(), Some(&b"v2"[..]));
        // Now in memory: the write is seen by the next update and by a get.
        let saw = run_update(&addr, append("k0002", "+b")).await.unwrap();
        assert_eq!(saw.as_deref(), Some(&b"v2+a"[..]));
        assert_eq!(get(&addr, "k0002").await.as_deref(), Some(&b"v2+a+b"[..]));
        // Absent everywhere.
        let saw = run_update(&addr, append("zzz", "+c")).await.unwrap();
        assert_eq!(saw, None);
        assert_eq!(get(&addr, "zzz").await.as_deref(), Some(&b"none+c"[..]));
        // No write: nothing changes.
        let read_only = Update::new(
            b"k0007".to_vec(),
            Box::new(|_: &[u8], v: Option<&[u8]>| Change {
                write: None,
                out: v.map(<[u8]>::to_vec),
            }),
        );
        let saw = run_update(&addr, read_only).await.unwrap();
        assert_eq!(saw.as_deref(), Some(&b"v7"[..]));
        assert_eq!(get(&addr, "k0007").await.as_deref(), Some(&b"v7"[..]));
        // A delete (a tombstone GC purge): the key reads as absent, and the next update
        // sees nothing.
        let purge = Update::new(
            b"k0002".to_vec(),
            Box::new(|_: &[u8], v: Option<&[u8]>| Change {
                write: Some(NewValue::Delete),
                out: v.map(<[u8]>::to_vec),
            }),
        );
        let saw = run_update(&addr, purge).await.unwrap();
        assert_eq!(saw.as_deref(), Some(&b"v2+a+b"[..]));
        assert_eq!(get(&addr, "k0002").await, None);
        let saw = run_update(&addr, append("k0002", "+d")).await.unwrap();
        assert_eq!(saw, None);
    }

    #[actix_rt::test]
    async fn updates_of_distinct_keys_beyond_the_read_permits_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _tables) = over_tables(dir.path());
        let asks: Vec<_> = (0..200u64)
            .map(|i| {
                (
                    i,
                    run_update(&addr, append(&format!("k{:04}", i * 3), "+x")),
                )
            })
            .collect();
        for (i, ask) in asks {
            let saw = ask.await.unwrap();
            let want = (i * 3 < 500).then(|| format!("v{}", i * 3).into_bytes());
            assert_eq!(saw, want, "k{:04}", i * 3);
        }
        for i in (0..200u64).step_by(17) {
            let k = format!("k{:04}", i * 3);
            let base = if i * 3 < 500 {
                format!("v{}", i * 3)
            } else {
                "none".into()
            };
            assert_eq!(get(&addr, &k).await, Some(format!("{base}+x").into_bytes()));
        }
    }

    /// An update answers through its callback once durable, for memory and disk lookups
    /// alike; a callback dropped unrun answers `Stopped`.
    #[actix_rt::test]
    async fn update_then_calls_back_once_with_what_an_update_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _tables) = over_tables(dir.path());
        let ask = |key: &'static str| run_update(&addr, append(key, "+t"));
        let from_disk = ask("k0003").await.unwrap();
        assert_eq!(from_disk.as_deref(), Some(&b"v3"[..]));
        let from_memory = ask("k0003").await.unwrap();
        assert_eq!(from_memory.as_deref(), Some(&b"v3+t"[..]));
        assert_eq!(get(&addr, "k0003").await.as_deref(), Some(&b"v3+t+t"[..]));

        let (tx, rx) = std::sync::mpsc::channel();
        drop(UpdateDone::<()>::new(move |r| tx.send(r).unwrap()));
        assert!(matches!(rx.try_recv(), Ok(Err(StorageError::Stopped))));
    }

    async fn disk_lookups(addr: &Addr<MemtableActor>) -> u64 {
        addr.send(GetMemtableStats).await.unwrap().disk_lookups
    }

    /// Lookups the tables can answer from memory (bloom filters, block cache) are answered
    /// on the event loop; only a block that is not cached goes to the disk-read queue.
    #[actix_rt::test]
    async fn lookups_answered_from_filters_or_cache_skip_the_disk_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _tables) = over_tables(dir.path());
        // Inside the table's key range, so only the filter can rule them out.
        for i in 0..50 {
            assert_eq!(get(&addr, &format!("k0100-absent-{i}")).await, None);
        }
        assert_eq!(disk_lookups(&addr).await, 0, "ruled-out keys were queued");
        // A key that is there: its block is read once, then served from the cache.
        assert_eq!(get(&addr, "k0100").await.as_deref(), Some(&b"v100"[..]));
        assert_eq!(disk_lookups(&addr).await, 1);
        assert_eq!(get(&addr, "k0100").await.as_deref(), Some(&b"v100"[..]));
        assert_eq!(get(&addr, "k0101").await.as_deref(), Some(&b"v101"[..]));
        let saw = run_update(&addr, append("k0101", "+u")).await.unwrap();
        assert_eq!(saw.as_deref(), Some(&b"v101"[..]));
        assert_eq!(
            disk_lookups(&addr).await,
            1,
            "cached block read again from disk"
        );
    }

    /// A lookup tried from memory and then read from disk is counted once: the probe that
    /// found the block missing from the cache counts nothing, the disk read counts it.
    #[actix_rt::test]
    async fn a_lookup_redone_on_disk_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, tables) = over_tables(dir.path());
        let counts = || {
            let st = tables.stats();
            let c = st.cache.expect("a block cache");
            (c.hits, c.misses, st.bloom_useful, st.bloom_useless)
        };
        let before = counts();
        // Not cached: one miss (the disk read), no hit.
        assert_eq!(get(&addr, "k0100").await.as_deref(), Some(&b"v100"[..]));
        let (h, m, _, _) = counts();
        assert_eq!(
            (h - before.0, m - before.1),
            (0, 1),
            "one miss for one read"
        );
        // Same block, now cached: one hit, answered in memory.
        assert_eq!(get(&addr, "k0101").await.as_deref(), Some(&b"v101"[..]));
        let (h, m, _, _) = counts();
        assert_eq!((h - before.0, m - before.1), (1, 1));
        // Ruled out by the filter: one useful probe.
        assert_eq!(get(&addr, "k0100-absent-0").await, None);
        let (_, _, useful, useless) = counts();
        assert_eq!((useful - before.2, useless - before.3), (1, 0));
    }
}
