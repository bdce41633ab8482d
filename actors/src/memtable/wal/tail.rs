//! The open segment's end ([`Tail`]): its file and where the log ends in it. The
//! `wal-writer` thread does all the blocking work on it (batches, fdatasyncs, preallocation,
//! rotations); in relaxed mode the Memtable's event loop may append a group itself, with a
//! write the kernel promises not to block on ([`Tail::append_now`]), and acknowledge it in
//! the same turn, as Redis does with its AOF, without the hop to the thread and back.
//!
//! Invariants:
//! - Every change to the segment happens under the tail's mutex. The event loop only
//!   `try_lock`s it ([`super::WalWriter::append_now`]), so it never waits for the thread's
//!   I/O: a group that finds the tail busy goes to the thread as before.
//! - The log is `[0, end)`; `[end, alloc)` holds the preallocated zeros, except that
//!   `[end, scrawl)` may hold part of a batch the kernel took only some bytes of (never
//!   acknowledged). No append is made from the loop until the writer thread has written
//!   its next batch over them and zeroed what that batch did not cover
//!   ([`Tail::write_batch`]); a rotation cuts them off with the zeros.
//! - `synced <= end`, and `synced` only moves after an fdatasync returned, to the `end` it
//!   covered: a batch header's `synced_before` never claims bytes no fdatasync covered.
//! - An append from the loop never extends the file: it fits in the preallocated zeros
//!   (growing the file is the thread's, which writes the zeros).

use super::*;
use std::io::IoSlice;

/// What `preallocate` writes: zeros that are never written to, so their pages are the
/// kernel's shared zero page (a fresh zeroed buffer per preallocation was a page fault per
/// 4 KiB written, each zeroing a new page, on this thread).
static ZEROS: [u8; PREALLOC_MAX as usize] = [0; PREALLOC_MAX as usize];

pub(super) struct Tail {
    pub(super) file: Box<dyn IoFile>,
    pub(super) path: PathBuf,
    pub(super) segment: u64,
    /// The current segment's salt (seeds its batch header checksums).
    pub(super) salt: u64,
    /// Bytes written to the current segment (the log ends here).
    pub(super) end: u64,
    /// The current segment's file size: `end`, then zeros up to here (see `preallocate`).
    pub(super) alloc: u64,
    /// Whether to preallocate the current segment (off after a preallocation failed).
    pub(super) prealloc: bool,
    /// Bytes of the current segment covered by a completed fdatasync.
    pub(super) synced: u64,
    /// Bytes written since the last sync.
    pub(super) dirty: bool,
    /// Whether appends from the loop are tried (off once the file system refused one).
    pub(super) nowait: bool,
    /// The end of a partial append from the loop, past `end` (see the module docs).
    pub(super) scrawl: u64,
}

/// What [`super::WalWriter::append_now`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendNow {
    /// The records are in the log (written to the OS, as a relaxed-mode batch of the
    /// writer thread's would be): acknowledge them.
    Written,
    /// Nothing was written: not possible without waiting this time. Queue the records
    /// with [`super::WalWriter::append`].
    NotNow,
    /// The kernel took only part of the batch, past the log's end: queue the records with
    /// [`super::WalWriter::append`], whose batch goes over those bytes. Until it has, they
    /// are in the file: should the queue refuse the records, their fate is unknown (a
    /// batch whose missing tail happened to be zeros would replay).
    Partial,
}

impl Tail {
    pub(super) fn open(path: PathBuf, segment: u64, open: OpenSegment) -> Tail {
        let OpenSegment {
            file,
            salt,
            format,
            len,
        } = open;
        // Records are sealed in this build's format only (`format::seal_records`).
        assert_eq!(
            format,
            super::format::FORMAT_VERSION,
            "appending to an older segment"
        );
        Tail {
            file,
            path,
            segment,
            salt,
            end: len,
            alloc: len,
            prealloc: true,
            synced: len,
            dirty: false,
            nowait: true,
            scrawl: 0,
        }
    }

    /// Writes `records` (whole records, sealed here) as one batch at the log's end with one
    /// `pwritev2(RWF_NOWAIT)`, when that needs no waiting: the batch fits in the
    /// preallocated zeros, no partial append is left to clear, and the kernel takes all of
    /// it now.
    pub(super) fn append_now(&mut self, records: &mut [u8]) -> AppendNow {
        let total = (format::BATCH_HEADER_LEN + records.len()) as u64;
        if !self.nowait || self.scrawl > self.end || self.end + total > self.alloc {
            return AppendNow::NotNow;
        }
        let Ok(body_len) = u32::try_from(records.len()) else {
            return AppendNow::NotNow;
        };
        if !format::seal_records(records) {
            // A bug upstream; the writer thread refuses the group and poisons the log.
            return AppendNow::NotNow;
        }
        let header = format::batch_header(self.salt, body_len, self.synced);
        let at = self.end;
        let bufs = [IoSlice::new(&header), IoSlice::new(records)];
        match self.file.write_at_nowait(&bufs, at) {
            Ok(n) if n as u64 == total => {
                self.end += total;
                self.dirty = true;
                AppendNow::Written
            }
            Ok(n) => {
                self.scrawl = at + n as u64;
                AppendNow::Partial
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                AppendNow::NotNow
            }
            Err(e) => {
                // A failed pwritev2 wrote nothing, so nothing is lost and the log stays
                // healthy: the writer thread's blocking write decides. Unsupported (ext4,
                // tmpfs), refused (EINVAL) or failing, this file system is not asked again.
                self.nowait = false;
                log::info!(
                    "WAL {}: non-blocking writes refused ({e}); every group commit goes \
                     through the writer thread",
                    self.path.display()
                );
                AppendNow::NotNow
            }
        }
    }

    /// Writes `buf` (a batch: room for its header, then its records) and, in sync mode,
    /// syncs it.
    pub(super) fn write_batch(
        &mut self,
        buf: &mut [u8],
        durability: Durability,
        fsyncs: &AtomicU64,
    ) -> Result<(), WalError> {
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
        self.clear_scrawl()?;
        match durability {
            Durability::Sync => self.sync(fsyncs),
            Durability::Relaxed { .. } => Ok(()),
        }
    }

    /// Zeros what a partial append from the loop left past the log's end and this batch did
    /// not write over, so that only zeros follow the log again.
    fn clear_scrawl(&mut self) -> Result<(), WalError> {
        while self.scrawl > self.end {
            let n = (self.scrawl - self.end).min(ZEROS.len() as u64);
            let at = self.scrawl - n;
            self.file
                .write_at(&ZEROS[..n as usize], at)
                .map_err(io_err(&self.path))?;
            self.scrawl = at;
        }
        self.scrawl = 0;
        Ok(())
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
                // Part of the zeros may be in the file; the log's writes go over them
                // (appends from the loop too, within them: they never extend the file).
                self.alloc = self.file.size().unwrap_or(self.end).max(self.end);
            }
        }
        Ok(())
    }

    pub(super) fn sync(&mut self, fsyncs: &AtomicU64) -> Result<(), WalError> {
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.synced = self.end;
        self.dirty = false;
        fsyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Syncs the current segment and starts the next; returns its number.
    pub(super) fn rotate(
        &mut self,
        io: &dyn Io,
        dir: &Path,
        fsyncs: &AtomicU64,
    ) -> Result<u64, WalError> {
        self.sync(fsyncs)?;
        // Only the last segment may end in anything but a whole batch: cut the zeros off
        // (durably) before the next segment exists.
        if self.alloc > self.end {
            // Also after a failed preallocation (part of its zeros may be in the file), and
            // over a partial append from the loop (it lies below `alloc`).
            self.file.set_len(self.end).map_err(io_err(&self.path))?;
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        let next = self.segment + 1;
        let path = segment_path(dir, next);
        let open = open_segment(io, &path, next)?;
        let nowait = self.nowait;
        *self = Tail::open(path, next, open);
        self.nowait = nowait;
        fsync_dir(io, dir)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::hooked::{HookedIo, Hooks};
    use std::collections::VecDeque;
    use std::sync::mpsc;

    /// What the next `write_at_nowait` does; with none scripted it writes everything.
    #[derive(Debug, Clone, Copy)]
    enum Nowait {
        Part(usize),
        Block,
        Unsupported,
        Fail,
    }

    /// Hooks whose files answer `write_at_nowait` as scripted, counting the calls.
    #[derive(Debug, Default, Clone)]
    struct Script(Arc<Mutex<(VecDeque<Nowait>, usize)>>);

    impl Script {
        fn push(&self, n: Nowait) {
            lock(&self.0).0.push_back(n);
        }
        fn calls(&self) -> usize {
            lock(&self.0).1
        }
    }

    impl Hooks for Script {
        fn write_at_nowait(
            &self,
            file: &mut dyn IoFile,
            bufs: &[IoSlice<'_>],
            offset: u64,
        ) -> io::Result<usize> {
            let next = {
                let mut s = lock(&self.0);
                s.1 += 1;
                s.0.pop_front()
            };
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = match next {
                None => all.len(),
                Some(Nowait::Part(n)) => n,
                Some(Nowait::Block) => return Err(io::ErrorKind::WouldBlock.into()),
                Some(Nowait::Unsupported) => return Err(io::ErrorKind::Unsupported.into()),
                Some(Nowait::Fail) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            };
            file.write_at(&all[..n], offset)?;
            Ok(n)
        }
    }

    /// Records `seqs` as one group, as the Memtable encodes them.
    fn group(seqs: std::ops::Range<u64>) -> Vec<u8> {
        let mut b = Vec::new();
        for seq in seqs {
            let r = WalRecord {
                seq,
                key: format!("k{seq}").into_bytes(),
                value: Some(vec![b'v'; 90]),
            };
            encode_record_unsealed(&r, &mut b);
        }
        b
    }

    /// A writer on segment 1 of `dir` with scripted non-blocking writes; its sink forwards
    /// each token with whether its batch succeeded.
    fn started(
        dir: &Path,
        durability: Durability,
    ) -> (WalWriter<u64>, Script, mpsc::Receiver<(u64, bool)>) {
        let script = Script::default();
        let (tx, rx) = mpsc::channel();
        let sink: DurableSink<u64> = Box::new(move |tokens, r| {
            for t in tokens {
                let _ = tx.send((t, r.is_ok()));
            }
        });
        let io = Arc::new(HookedIo(Arc::new(script.clone())));
        let wal = WalWriter::start(io, dir, 1, durability, 64, sink).unwrap();
        (wal, script, rx)
    }

    /// Relaxed mode whose scheduled syncs (under the tail's lock) do not interleave with a
    /// test's steps: one after the first batch, none for an hour after.
    const RELAXED: Durability = Durability::Relaxed {
        interval: Duration::from_secs(3600),
    };

    /// Queues `group(seq..seq + 1)` on the thread and waits until the thread is done with
    /// it and idle (a queued sync came back), so the next `append_now` finds the tail free.
    fn through_thread(wal: &WalWriter<u64>, rx: &mpsc::Receiver<(u64, bool)>, seq: u64) -> bool {
        wal.append(group(seq..seq + 1), seq).unwrap();
        let (token, ok) = rx.recv().unwrap();
        assert_eq!(token, seq);
        let (tx, synced) = mpsc::channel();
        wal.sync(Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        let _ = synced.recv().unwrap();
        ok
    }

    fn seqs(r: &Recovered) -> Vec<u64> {
        r.records.iter().map(|r| r.seq).collect()
    }

    /// The writer thread's scheduled sync covers appends from the loop: with nothing else
    /// dirty, a write from the loop is what makes it sync.
    #[test]
    fn scheduled_syncs_cover_appends_from_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let interval = Duration::from_millis(5);
        let (wal, _, rx) = started(dir.path(), Durability::Relaxed { interval });
        // The first batch goes through the thread (it preallocates room for the loop's),
        // then an explicit sync: nothing is dirty after it.
        assert!(through_thread(&wal, &rx, 0));
        let deadline = Instant::now() + Duration::from_secs(10);
        let fsyncs = wal.fsyncs();
        // `NotNow` while the thread holds the tail (it does not sync: nothing is dirty).
        while wal.append_now(&mut group(1..2)) != AppendNow::Written {
            assert!(Instant::now() < deadline, "the tail stayed busy");
        }
        while wal.fsyncs() == fsyncs {
            assert!(Instant::now() < deadline, "the scheduled sync never came");
            std::thread::yield_now();
        }
        drop(wal);
        let rec = recover(&fsio::RealIo, dir.path()).unwrap();
        assert_eq!(seqs(&rec), vec![0, 1]);
    }

    /// Appends written from the loop and batches of the writer thread make one log, in the
    /// order of the calls: after a partial write (which is not acknowledged) the thread's
    /// next batch goes over it, and what that batch did not cover is zeroed, so the log is
    /// followed by zeros only.
    #[test]
    fn appends_from_the_loop_and_the_thread_make_one_log_in_call_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, script, rx) = started(dir.path(), RELAXED);
        // The first batch goes through the thread: it preallocates room for the loop's.
        assert!(through_thread(&wal, &rx, 0));
        assert!(matches!(
            wal.append_now(&mut group(1..3)),
            AppendNow::Written
        ));
        // A partial write of a large group; the thread is then handed a smaller one (as
        // when the queue refused the rest): its batch does not cover all the partial bytes.
        let mut large = group(3..13);
        script.push(Nowait::Part(large.len() - 10));
        assert_eq!(wal.append_now(&mut large), AppendNow::Partial);
        // Nothing more from the loop until the thread has cleaned up after it.
        assert!(matches!(
            wal.append_now(&mut group(3..4)),
            AppendNow::NotNow
        ));
        assert_eq!(script.calls(), 2, "a partial write leaves the loop out");
        assert!(through_thread(&wal, &rx, 3));
        script.push(Nowait::Block);
        assert!(matches!(
            wal.append_now(&mut group(4..5)),
            AppendNow::NotNow
        ));
        assert!(through_thread(&wal, &rx, 4));
        assert!(matches!(
            wal.append_now(&mut group(5..7)),
            AppendNow::Written
        ));
        drop(wal);
        let bytes = fs::read(segment_path(dir.path(), 1)).unwrap();
        let rec = recover(&fsio::RealIo, dir.path()).unwrap();
        assert_eq!(seqs(&rec), (0..7).collect::<Vec<_>>());
        assert_eq!(rec.torn_bytes, 0, "nothing but zeros after the log");
        let log_end = fs::metadata(segment_path(dir.path(), 1)).unwrap().len() as usize;
        assert!(bytes.len() > log_end, "the preallocated zeros were there");
        assert!(bytes[log_end..].iter().all(|&b| b == 0));
    }

    /// A file system that refuses non-blocking writes is asked once; sync mode never
    /// writes from the loop; a rotation's new segment takes appends from the loop again.
    #[test]
    fn the_loop_writes_only_when_it_can_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, script, rx) = started(dir.path(), Durability::Sync);
        assert!(through_thread(&wal, &rx, 0));
        assert!(matches!(
            wal.append_now(&mut group(1..2)),
            AppendNow::NotNow
        ));
        assert_eq!(script.calls(), 0, "sync mode: no write from the loop");
        drop(wal);

        let dir = tempfile::tempdir().unwrap();
        let (wal, script, rx) = started(dir.path(), RELAXED);
        assert!(
            matches!(wal.append_now(&mut group(0..1)), AppendNow::NotNow),
            "no preallocated room yet"
        );
        assert_eq!(script.calls(), 0);
        assert!(through_thread(&wal, &rx, 0));
        script.push(Nowait::Unsupported);
        assert!(matches!(
            wal.append_now(&mut group(1..2)),
            AppendNow::NotNow
        ));
        assert!(matches!(
            wal.append_now(&mut group(1..2)),
            AppendNow::NotNow
        ));
        assert_eq!(script.calls(), 1, "asked once");
        assert!(wal.poisoned().is_none());
        drop(wal);

        let dir = tempfile::tempdir().unwrap();
        let (wal, _, rx) = started(dir.path(), RELAXED);
        assert!(through_thread(&wal, &rx, 0));
        let (tx, rotated) = mpsc::channel();
        wal.rotate(Box::new(move |r| tx.send(r.unwrap()).unwrap()))
            .unwrap();
        assert_eq!(rotated.recv().unwrap(), 2);
        assert!(through_thread(&wal, &rx, 1));
        assert!(matches!(
            wal.append_now(&mut group(2..3)),
            AppendNow::Written
        ));
        drop(wal);
        let rec = recover(&fsio::RealIo, dir.path()).unwrap();
        assert_eq!(
            (rec.segments.clone(), seqs(&rec)),
            (vec![1, 2], vec![0, 1, 2])
        );
    }

    /// A write from the loop that fails (not "would block") wrote nothing: the log stays
    /// healthy, the file is not asked again, and the writer thread writes the group.
    #[test]
    fn a_failed_write_from_the_loop_leaves_the_group_to_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, script, rx) = started(dir.path(), RELAXED);
        assert!(through_thread(&wal, &rx, 0));
        script.push(Nowait::Fail);
        assert_eq!(wal.append_now(&mut group(1..2)), AppendNow::NotNow);
        assert!(wal.poisoned().is_none());
        assert!(through_thread(&wal, &rx, 1));
        assert_eq!(wal.append_now(&mut group(2..3)), AppendNow::NotNow);
        assert_eq!(script.calls(), 1, "not asked again");
        assert!(through_thread(&wal, &rx, 2));
        drop(wal);
        let rec = recover(&fsio::RealIo, dir.path()).unwrap();
        assert_eq!(seqs(&rec), vec![0, 1, 2]);
    }

    /// A rotation after a partial write (its group refused by the queue) cuts the partial
    /// bytes off with the zeros: the closed segment ends at its last whole batch, and the
    /// new one takes appends from the loop (the file system's answer carries over).
    #[test]
    fn a_rotation_cuts_off_a_partial_write() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, script, rx) = started(dir.path(), RELAXED);
        assert!(through_thread(&wal, &rx, 0));
        let preallocated = fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
        let mut partial = group(1..4);
        script.push(Nowait::Part(partial.len() / 2));
        assert_eq!(wal.append_now(&mut partial), AppendNow::Partial);
        let (tx, rotated) = mpsc::channel();
        wal.rotate(Box::new(move |r| tx.send(r.unwrap()).unwrap()))
            .unwrap();
        assert_eq!(rotated.recv().unwrap(), 2);
        assert!(through_thread(&wal, &rx, 4));
        assert_eq!(wal.append_now(&mut group(5..6)), AppendNow::Written);
        drop(wal);
        let rec = recover(&fsio::RealIo, dir.path()).unwrap();
        assert_eq!(
            (rec.segments.clone(), seqs(&rec)),
            (vec![1, 2], vec![0, 4, 5])
        );
        assert_eq!(rec.torn_bytes, 0);
        assert!(
            fs::metadata(segment_path(dir.path(), 1)).unwrap().len() < preallocated,
            "segment 1 cut at its last batch (its preallocated zeros included)"
        );
    }

    /// A batch refused because the log was poisoned earlier was never written, so its
    /// writes hear `Poisoned`, unless a partial write from the loop left part of its first
    /// group in the file: then their fate is unknown (`Indeterminate`).
    #[test]
    fn a_refused_batch_after_a_partial_write_is_indeterminate() {
        for partial in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let script = Script::default();
            let (tx, rx) = mpsc::channel();
            let sink: DurableSink<u64> = Box::new(move |tokens, r| {
                let _ = tx.send((tokens, r.err()));
            });
            let io = Arc::new(HookedIo(Arc::new(script.clone())));
            let wal = WalWriter::start(io, dir.path(), 1, RELAXED, 64, sink).unwrap();
            wal.append(group(0..1), 0).unwrap();
            assert!(matches!(rx.recv().unwrap(), (t, None) if t == vec![0]));
            let (done, synced) = mpsc::channel();
            wal.sync(Box::new(move |r| done.send(r.is_ok()).unwrap()))
                .unwrap();
            assert!(synced.recv().unwrap());
            if partial {
                let mut g = group(1..2);
                script.push(Nowait::Part(g.len() / 2));
                assert_eq!(wal.append_now(&mut g), AppendNow::Partial);
            }
            *lock(&wal.health()) = Some("a failed sync (test)".into());
            wal.append(group(1..2), 1).unwrap();
            let (tokens, err) = rx.recv().unwrap();
            assert_eq!(tokens, vec![1]);
            match (partial, err) {
                (false, Some(WalError::Poisoned(_))) | (true, Some(WalError::Indeterminate(_))) => {
                }
                other => panic!("partial write {partial}: {other:?}"),
            }
        }
    }
}
