//! Point lookups that missed memory, run against the SSTables off the event loop.
//!
//! Lookups queue here; up to `workers` tasks on the blocking pool drain the queue, each
//! taking a fair share of it (at most `BATCH`) per trip and calling each lookup's reply with
//! the result (the Memtable actor passes its caller's reply channel, so the answer goes
//! straight to the caller). A worker is started when a lookup arrives and fewer than
//! `workers` run; a worker that finds the queue empty exits at once (tokio keeps its thread
//! parked for reuse). No worker spins: lookups that memory, the bloom filters or the block
//! cache can answer never come here (the Memtable actor answers them on its event loop), so
//! what does come is a file read, and a yield loop waiting for the next one only took CPU
//! from the threads doing the work (a tenth of a 3-node cluster's CPU on 2 cores).
//!
//! Invariants: the queue holds at most `max_queued` lookups (the Memtable actor's
//! `max_disk_reads` semaphore admits no more, and `submit` refuses beyond it anyway);
//! `running <= workers`, and `running` counts live workers (a worker that unwinds gives its
//! slot back or hands it to a replacement). Every queued lookup is answered exactly once (a
//! panicking lookup is answered with an error), except when the runtime shuts down, when
//! the unanswered replies are dropped with the queue and callers see a closed channel.

use crate::engine::{EngineError, Entry, Result as EngineResult, Tables};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default for `storage.read_workers`: the read I/O depth on a disk that is not in the
/// page cache.
pub const DEFAULT_READ_WORKERS: usize = 32;

/// Lookups a worker takes per trip to the queue.
const BATCH: usize = 16;

/// Called on the worker thread with the lookup's result; sends it to whoever asked.
pub type Reply = Box<dyn FnOnce(EngineResult<Option<Entry>>) + Send>;

struct Queue {
    jobs: VecDeque<(Vec<u8>, Reply)>,
    running: usize,
}

struct Shared {
    tables: Arc<Tables>,
    queue: Mutex<Queue>,
    workers: usize,
    max_queued: usize,
}

/// Keeps `running` true to the workers actually alive if a worker unwinds anyway (a reply
/// closure panicking): the count is given back and, if lookups are still queued, a new
/// worker takes over, so they are never stranded.
struct WorkerGuard<'a>(&'a DiskReads);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        let restart = {
            let mut q = self.0.lock();
            if q.jobs.is_empty() {
                q.running -= 1;
                false
            } else {
                true // the replacement inherits this worker's slot in `running`
            }
        };
        if restart {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let this = self.0.clone();
                rt.spawn_blocking(move || this.work());
            } else {
                self.0.lock().running -= 1;
            }
        }
    }
}

/// Handle to the lookup queue; cheap to clone.
#[derive(Clone)]
pub struct DiskReads(Arc<Shared>);

/// `submit` found `max_queued` lookups already waiting; the reply is handed back unused.
pub struct QueueFull(pub Reply);

impl DiskReads {
    pub fn new(tables: Arc<Tables>, workers: usize, max_queued: usize) -> Self {
        DiskReads(Arc::new(Shared {
            tables,
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(max_queued.min(1024)),
                running: 0,
            }),
            workers: workers.max(1),
            max_queued: max_queued.max(1),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Pushes and pops leave the queue consistent; a poisoned lock still guards it.
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a lookup of `key`; a worker calls `reply` with the newest entry in the tables
    /// (a tombstone included) or the read error.
    pub fn submit(&self, key: Vec<u8>, reply: Reply) -> Result<(), QueueFull> {
        let start_worker = {
            let mut q = self.lock();
            if q.jobs.len() >= self.0.max_queued {
                return Err(QueueFull(reply));
            }
            q.jobs.push_back((key, reply));
            // A burst spreads over up to `workers` threads: the read I/O depth on a cold disk.
            let start = q.running < self.0.workers;
            if start {
                q.running += 1;
            }
            start
        };
        if start_worker {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.work());
        }
        Ok(())
    }

    fn work(&self) {
        let guard = WorkerGuard(self);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            {
                let mut q = self.lock();
                if q.jobs.is_empty() {
                    q.running -= 1;
                    std::mem::forget(guard); // exited normally: slot given back above
                    return;
                }
                // A fair share, so another worker finds work too (I/O parallelism on a disk
                // that is not in the page cache), at most BATCH.
                let share = q.jobs.len().div_ceil(self.0.workers);
                let n = share.clamp(1, BATCH);
                batch.extend(q.jobs.drain(..n));
            }
            for (key, reply) in batch.drain(..) {
                // A panic in a lookup (a bug) answers that caller with an error and costs
                // nothing else: the worker, its batch and the `running` count go on.
                let got = catch_unwind(AssertUnwindSafe(|| self.0.tables.get(&key)))
                    .unwrap_or_else(|_| {
                        Err(EngineError::InvalidArgument(format!(
                            "BUG: the lookup of a {}-byte key panicked",
                            key.len()
                        )))
                    });
                reply(got);
            }
        }
    }

    /// Lookups waiting for a worker (not counting those being served).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Entry, TablesOptions};
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<EngineResult<Option<Entry>>>;

    /// A worker exits right after its last answer; wait for that, bounded at 5 s.
    async fn wait_for_workers_to_exit(reads: &DiskReads) {
        for _ in 0..5000 {
            if reads.lock().running == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(reads.lock().running, 0, "workers left");
    }

    fn ask(reads: &DiskReads, key: &str) -> Result<Answer, ()> {
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |got| drop(tx.send(got)));
        reads
            .submit(key.as_bytes().to_vec(), reply)
            .map(|()| rx)
            .map_err(|_| ())
    }

    fn tables_with(n: u64) -> (tempfile::TempDir, Arc<Tables>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (t, _) = Tables::open(dir.path(), TablesOptions::default()).expect("open");
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry::put(format!("k{i:05}"), i + 1, format!("v{i}")))
            .collect();
        t.flush(entries, None).expect("flush");
        (dir, Arc::new(t))
    }

    #[tokio::test]
    async fn many_concurrent_lookups_each_get_their_own_answer() {
        let (_d, t) = tables_with(2000);
        let reads = DiskReads::new(t, 2, 4096);
        let rxs: Vec<_> = (0..3000u64)
            .map(|i| (i, ask(&reads, &format!("k{i:05}")).expect("room")))
            .collect();
        for (i, rx) in rxs {
            let got = rx.await.expect("answered").expect("read ok");
            match got {
                Some(e) if i < 2000 => assert_eq!(e.value, Some(format!("v{i}").into_bytes())),
                None if i >= 2000 => {}
                other => panic!("key {i}: {other:?}"),
            }
        }
        assert_eq!(reads.queued(), 0);
        wait_for_workers_to_exit(&reads).await;
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_costs_nothing() {
        let (_d, t) = tables_with(10);
        let reads = DiskReads::new(t, 1, 4);
        // Pretend the one worker is busy, so submit starts none and the queue fills.
        reads.lock().running = 1;
        let rxs: Vec<_> = (0..4)
            .map(|i| ask(&reads, &format!("k{i:05}")).expect("room"))
            .collect();
        assert!(ask(&reads, "k00001").is_err(), "a fifth lookup is refused");
        assert_eq!(reads.queued(), 4, "the refused lookup was not queued");
        // The "busy" worker comes round and drains everything that was admitted.
        let r = reads.clone();
        tokio::task::spawn_blocking(move || r.work())
            .await
            .expect("worker");
        for (i, rx) in rxs.into_iter().enumerate() {
            let e = rx.await.expect("answered").expect("ok").expect("present");
            assert_eq!(e.value, Some(format!("v{i}").into_bytes()));
        }
        assert_eq!(reads.lock().running, 0);
    }

    #[tokio::test]
    async fn a_panicking_reply_strands_no_lookup() {
        let (_d, t) = tables_with(20);
        let reads = DiskReads::new(t, 1, 32);
        reads.lock().running = 1; // hold the worker back while the queue fills
        let boom: Reply = Box::new(|_| panic!("reply closure bug (expected by this test)"));
        assert!(reads.submit(b"k00000".to_vec(), boom).is_ok());
        let rxs: Vec<_> = (1..20)
            .map(|i| ask(&reads, &format!("k{i:05}")).expect("room"))
            .collect();
        let r = reads.clone();
        let died = tokio::task::spawn_blocking(move || r.work()).await;
        assert!(died.is_err(), "the first reply panicked the worker");
        // The panicking worker's own batch (BATCH lookups) sees a closed channel: an error,
        // never a hang. The lookups still queued are served by its replacement.
        for (i, rx) in rxs.into_iter().enumerate() {
            let k = i + 1;
            let waited = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
            match waited.unwrap_or_else(|_| panic!("k{k} stranded: nobody answers it")) {
                Ok(got) => {
                    let v = got.expect("ok").expect("present").value;
                    assert_eq!(v, Some(format!("v{k}").into_bytes()));
                }
                Err(_) => assert!(k < BATCH, "k{k} was queued, not in the lost batch"),
            }
        }
        wait_for_workers_to_exit(&reads).await;
        let rx = ask(&reads, "k00003").expect("room");
        assert!(rx.await.expect("answered").expect("ok").is_some());
    }

    #[tokio::test]
    async fn a_burst_spreads_over_at_most_the_configured_workers() {
        let (_d, t) = tables_with(10);
        let reads = DiskReads::new(t, 2, 16);
        {
            // Pretend one worker runs (busy with a lookup of its own).
            reads.lock().running = 1;
        }
        let rx = ask(&reads, "k00004").expect("room");
        assert_eq!(reads.lock().running, 2, "a second worker for the lookup");
        let rx2 = ask(&reads, "k00005").expect("room");
        assert_eq!(reads.lock().running, 2, "never more than `workers`");
        // The pretend worker comes round and drains what is left.
        let r = reads.clone();
        tokio::task::spawn_blocking(move || r.work())
            .await
            .expect("worker");
        let e = rx.await.expect("answered").expect("ok").expect("present");
        assert_eq!(e.value, Some(b"v4".to_vec()));
        let e = rx2.await.expect("answered").expect("ok").expect("present");
        assert_eq!(e.value, Some(b"v5".to_vec()));
        wait_for_workers_to_exit(&reads).await;
    }
}
