//! The `wal-writer` thread: takes queued jobs, writes each group commit as one batch with
//! one `write(2)` and (in sync mode) one fdatasync, rotates segments, and hands every
//! batch's outcome to the sink. A failed blocking write or sync poisons the log for good. The
//! segment itself is the shared [`Tail`]: the thread locks it for each piece of I/O (never
//! while holding the health lock, which appends from the loop take under the tail's).

use super::*;

/// The batch buffer is kept for the next batch up to this capacity (a larger one, from a
/// burst, is freed).
const KEEP_BATCH_BYTES: usize = 4 << 20;

pub(super) struct WriterThread<T> {
    pub(super) io: Arc<dyn Io>,
    pub(super) dir: PathBuf,
    /// The open segment, shared with appends from the Memtable's loop ([`Tail`]).
    pub(super) tail: Arc<Mutex<Tail>>,
    pub(super) durability: Durability,
    pub(super) health: Health,
    pub(super) fsyncs: Arc<AtomicU64>,
    pub(super) sink: DurableSink<T>,
    /// Where each append's buffer goes once copied into the batch.
    pub(super) spares: Arc<Spares>,
    /// The batch being written, kept from batch to batch (its capacity is reused).
    pub(super) buf: Vec<u8>,
}

impl<T> WriterThread<T> {
    pub(super) fn run(mut self, rx: Receiver<Job<T>>) {
        let mut next_sync = Instant::now();
        loop {
            // An idle writer blocks (parks on the channel); it never yields in a loop. A
            // spin here once saved a wake-up per batch for a single synchronous writer
            // (engine-bench --concurrency 1), but under load the yields took CPU from the
            // threads doing the work, and at low load they burned a core for nothing.
            let first = match self.durability {
                Durability::Sync => match rx.recv() {
                    Ok(j) => j,
                    Err(_) => break,
                },
                Durability::Relaxed { interval } => {
                    let wait = next_sync.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(j) => j,
                        Err(RecvTimeoutError::Timeout) => {
                            if self.dirty() {
                                let r = self.sync();
                                let _ = self.finish(r); // a failure is recorded as poison
                            }
                            next_sync = Instant::now() + interval;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.handle_batch(first, &rx);
            // Relaxed mode: sync on schedule even when jobs never stop coming (a queue that
            // is never empty would otherwise never time out).
            if let Durability::Relaxed { interval } = self.durability {
                if Instant::now() >= next_sync && self.dirty() {
                    let r = self.sync();
                    let _ = self.finish(r); // a failure is recorded as poison
                    next_sync = Instant::now() + interval;
                }
            }
        }
        if self.dirty() {
            let r = self.sync();
            let _ = self.finish(r); // a failure is recorded as poison
        }
    }

    /// Takes `first` plus whatever else is queued, writes all appends as one batch with one
    /// write(2) and one fdatasync, then completes every job in order.
    fn handle_batch(&mut self, first: Job<T>, rx: &Receiver<Job<T>>) {
        // Room for the batch header, filled in by `write_batch`.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(format::BATCH_HEADER_LEN, 0);
        let mut appends: Vec<T> = Vec::new();
        let mut control: Option<Job<T>> = None;
        let mut job = Some(first);
        let mut unsealed = false;
        while let Some(j) = job.take() {
            match j {
                Job::Append { bytes, token } => {
                    let start = buf.len();
                    buf.extend_from_slice(&bytes);
                    // The Memtable leaves the checksums to this thread (`encode_record_unsealed`).
                    unsealed |= !format::seal_records(&mut buf[start..]);
                    self.spares.give(bytes);
                    appends.push(token);
                }
                other => {
                    control = Some(other);
                    break;
                }
            }
            if buf.len() < MAX_BATCH_BYTES {
                job = rx.try_recv().ok();
            }
        }
        if !appends.is_empty() {
            // Refused before a byte was written (poisoned earlier): certainly not applied,
            // unless a partial write from the loop left part of its first group in the file
            // (`Tail::scrawl`). Failed while writing or syncing this batch: part of it may
            // be in the file.
            let in_file = {
                let tail = lock(&self.tail);
                tail.scrawl > tail.end
            };
            let poisoned_before = lock(&self.health).is_some() && !in_file;
            // A run cut inside a record (a bug upstream) is never written: recovery would
            // drop it as a torn tail after its writes were acknowledged. It poisons the log.
            let res = match unsealed {
                true => Err("BUG: a WAL append does not end on a record boundary".to_string()),
                false => self.write_batch(&mut buf).map_err(|e| e.to_string()),
            };
            let res = self.finish(res).map_err(|reason| match poisoned_before {
                true => WalError::Poisoned(reason),
                false => WalError::Indeterminate(reason),
            });
            (self.sink)(appends, res);
        }
        if buf.capacity() <= KEEP_BATCH_BYTES {
            self.buf = buf;
        }
        match control {
            Some(Job::Sync { done }) => {
                let r = self.sync();
                done(self.finish(r).map_err(WalError::Poisoned));
            }
            Some(Job::Rotate { done }) => {
                let r = self.rotate();
                let segment = *r.as_ref().unwrap_or(&0); // used only when `r` is Ok
                done(
                    self.finish(r.map(drop))
                        .map(|()| segment)
                        .map_err(WalError::Poisoned),
                );
            }
            _ => {}
        }
    }

    /// Records a failure as poison; returns the outcome as a string error for cloning.
    fn finish<E: ToString>(&mut self, r: Result<(), E>) -> Result<(), String> {
        if let Some(reason) = lock(&self.health).clone() {
            return Err(reason);
        }
        r.map_err(|e| {
            let reason = e.to_string();
            log::error!("WAL poisoned: {reason}; refusing all further writes");
            *lock(&self.health) = Some(reason.clone());
            reason
        })
    }

    fn poisoned(&self) -> bool {
        lock(&self.health).is_some()
    }

    fn dirty(&self) -> bool {
        lock(&self.tail).dirty
    }

    fn write_batch(&mut self, buf: &mut [u8]) -> Result<(), WalError> {
        if self.poisoned() {
            return Ok(()); // finish() reports the poison
        }
        lock(&self.tail).write_batch(buf, self.durability, &self.fsyncs)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned() {
            return Ok(());
        }
        lock(&self.tail).sync(&self.fsyncs)
    }

    fn rotate(&mut self) -> Result<u64, WalError> {
        lock(&self.tail).rotate(self.io.as_ref(), &self.dir, &self.fsyncs)
    }
}
