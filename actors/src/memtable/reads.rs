//! Point lookups that missed memory, run against the SSTables off the event loop.
//!
//! Lookups queue here; up to `workers` tasks on the blocking pool drain the queue, each
//! taking up to `BATCH` lookups at a time. A worker is started only when a lookup arrives
//! and fewer than `workers` are running, and it exits when it finds the queue empty. So an
//! idle node holds no thread, a single lookup costs one blocking-pool hand-off, and under
//! load many lookups share one hand-off instead of waking a thread each (that wake-up was
//! a third of a read's cost).
//!
//! Invariants: the queue holds at most `max_queued` lookups (the Memtable actor's
//! `max_disk_reads` semaphore admits no more, and `submit` refuses beyond it anyway); every
//! queued lookup is answered exactly once, or its reply channel is dropped if the runtime
//! is shutting down; `running <= workers`.

use crate::engine::{Entry, Result as EngineResult, Tables};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Lookups a worker takes per trip to the queue.
const BATCH: usize = 32;

type Reply = oneshot::Sender<EngineResult<Option<Entry>>>;

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

/// Handle to the lookup queue; cheap to clone.
#[derive(Clone)]
pub struct DiskReads(Arc<Shared>);

/// `submit` found `max_queued` lookups already waiting.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

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

    /// Queue a lookup of `key`; the receiver gets the newest entry in the tables (a
    /// tombstone included), or the read error.
    pub fn submit(
        &self,
        key: Vec<u8>,
    ) -> Result<oneshot::Receiver<EngineResult<Option<Entry>>>, QueueFull> {
        let (tx, rx) = oneshot::channel();
        let start_worker = {
            let mut q = self.lock();
            if q.jobs.len() >= self.0.max_queued {
                return Err(QueueFull);
            }
            q.jobs.push_back((key, tx));
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
        Ok(rx)
    }

    fn work(&self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            {
                let mut q = self.lock();
                if q.jobs.is_empty() {
                    q.running -= 1;
                    return;
                }
                let n = q.jobs.len().min(BATCH);
                batch.extend(q.jobs.drain(..n));
            }
            for (key, reply) in batch.drain(..) {
                // The caller may have gone away; its answer is simply dropped.
                let _ = reply.send(self.0.tables.get(&key));
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
            .map(|i| {
                (
                    i,
                    reads.submit(format!("k{i:05}").into_bytes()).expect("room"),
                )
            })
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
        assert_eq!(
            reads.lock().running,
            0,
            "workers exit when the queue is empty"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_costs_nothing() {
        let (_d, t) = tables_with(10);
        let reads = DiskReads::new(t, 1, 4);
        // Pretend the one worker is busy, so submit starts none and the queue fills.
        reads.lock().running = 1;
        let rxs: Vec<_> = (0..4)
            .map(|i| reads.submit(format!("k{i:05}").into_bytes()).expect("room"))
            .collect();
        assert_eq!(reads.submit(b"k00001".to_vec()).err(), Some(QueueFull));
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
}
