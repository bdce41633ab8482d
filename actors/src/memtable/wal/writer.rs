//! The `wal-writer` thread: takes queued jobs, writes each group commit as one batch with
//! one `write(2)` and (in sync mode) one fdatasync, rotates segments, and hands every
//! batch's outcome to the sink. A failed write or sync poisons the log for good.

use super::*;

/// The batch buffer is kept for the next batch up to this capacity (a larger one, from a
/// burst, is freed).
const KEEP_BATCH_BYTES: usize = 4 << 20;

/// What `preallocate` writes: zeros that are never written to, so their pages are the
/// kernel's shared zero page (a fresh zeroed buffer per preallocation was a page fault per
/// 4 KiB written, each zeroing a new page, on this thread).
static ZEROS: [u8; PREALLOC_MAX as usize] = [0; PREALLOC_MAX as usize];

pub(super) struct WriterThread<T> {
    pub(super) io: Arc<dyn Io>,
    pub(super) dir: PathBuf,
    pub(super) segment: u64,
    pub(super) path: PathBuf,
    pub(super) file: Box<dyn IoFile>,
    /// The current segment's salt (seeds its batch header checksums).
    pub(super) salt: u64,
    /// Bytes written to the current segment (the log ends here).
    pub(super) end: u64,
    /// The current segment's file size: `end`, then zeros up to here (see
    /// `preallocate`).
    pub(super) alloc: u64,
    /// Whether to preallocate the current segment (off after a preallocation failed).
    pub(super) prealloc: bool,
    /// Bytes of the current segment covered by a completed fdatasync.
    pub(super) synced: u64,
    pub(super) durability: Durability,
    pub(super) health: Health,
    /// Bytes written since the last sync (relaxed mode).
    pub(super) dirty: bool,
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
                            if self.dirty {
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
                if self.dirty && Instant::now() >= next_sync {
                    let r = self.sync();
                    let _ = self.finish(r); // a failure is recorded as poison
                    next_sync = Instant::now() + interval;
                }
            }
        }
        if self.dirty {
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
            // Refused before a byte was written (poisoned earlier): certainly not applied.
            // Failed while writing or syncing this batch: part of it may be in the file.
            let poisoned_before = lock(&self.health).is_some();
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
                match self.finish(r.as_ref().map(|_| ()).map_err(|e| e.to_string())) {
                    Ok(()) => done(Ok(self.segment)),
                    Err(e) => done(Err(WalError::Poisoned(e))),
                }
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

    /// Writes `buf` (a batch: room for its header, then its records) and, in sync mode,
    /// syncs it.
    fn write_batch(&mut self, buf: &mut [u8]) -> Result<(), WalError> {
        if lock(&self.health).is_some() {
            return Ok(()); // finish() reports the poison
        }
        let (header, body) = buf.split_at_mut(format::BATCH_HEADER_LEN);
        let body_len = u32::try_from(body.len()).map_err(|_| WalError::Io {
            path: self.path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "a WAL batch over 4 GiB"),
        })?;
        header.copy_from_slice(&format::batch_header(self.salt, body_len, self.synced));
        self.preallocate(buf.len() as u64)?;
        self.file
            .write_at(buf, self.end)
            .map_err(io_err(&self.path))?;
        self.end += buf.len() as u64;
        self.dirty = true;
        match self.durability {
            Durability::Sync => self.sync(),
            Durability::Relaxed { .. } => Ok(()),
        }
    }

    /// Makes room for `len` more bytes of log: when they would pass the file's end, writes
    /// zeros past them, growing the file by its own size (at least [`PREALLOC_MIN`], at
    /// most [`PREALLOC_MAX`] at a time, so a small segment wastes little). The batch's own
    /// fdatasync makes them durable with it; the fdatasyncs of the batches after it then
    /// write data blocks only (the file's size and blocks are already on disk), which cost
    /// a quarter to a third less time and CPU on ext4 (docs/BENCHMARKS.md). Recovery reads
    /// the zeros after the last batch like a torn tail of nothing (no batch header: it ends
    /// the log) and cuts them off; a rotation cuts them off before the next segment exists.
    ///
    /// Best effort: if the zeros cannot be written (a file size limit, a full disk), this
    /// segment is written without preallocation, as it would have been without it; only a
    /// failure of the log's own bytes poisons the log.
    fn preallocate(&mut self, len: u64) -> Result<(), WalError> {
        let need = self.end + len;
        if need <= self.alloc || !self.prealloc {
            return Ok(());
        }
        let step = self.alloc.clamp(PREALLOC_MIN, PREALLOC_MAX);
        let to = need.div_ceil(step) * step;
        let mut written = Ok(());
        let mut at = self.alloc;
        while at < to && written.is_ok() {
            let n = (to - at).min(ZEROS.len() as u64);
            written = self.file.write_at(&ZEROS[..n as usize], at);
            at += n;
        }
        match written {
            Ok(()) => self.alloc = to,
            Err(e) => {
                log::info!(
                    "WAL {}: cannot preallocate to {to} bytes ({e}); writing this segment without",
                    self.path.display()
                );
                self.prealloc = false;
                // Part of the zeros may be in the file; the log's writes go over them.
                self.alloc = self.file.size().unwrap_or(self.end).max(self.end);
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if lock(&self.health).is_some() {
            return Ok(());
        }
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.synced = self.end;
        self.dirty = false;
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync()?;
        // Only the last segment may end in anything but a whole batch: cut the zeros off
        // (durably) before the next segment exists.
        if self.alloc > self.end {
            // Also after a failed preallocation (part of its zeros may be in the file).
            self.file.set_len(self.end).map_err(io_err(&self.path))?;
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.alloc = self.end;
        }
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        let OpenSegment { file, salt, len } = open_segment(self.io.as_ref(), &path, next)?;
        (self.file, self.salt, self.end, self.synced) = (file, salt, len, len);
        self.alloc = len;
        self.prealloc = true;
        fsync_dir(self.io.as_ref(), &self.dir)?;
        self.segment = next;
        self.path = path;
        Ok(())
    }
}
