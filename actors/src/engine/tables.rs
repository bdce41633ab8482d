//! `Tables`: the synchronous facade over the on-disk half of the LSM tree. The Memtable,
//! Flusher, Compactor and GC actors call it from blocking threads; it is `Sync` and every
//! method takes `&self`.
//!
//! Flush, step by step (each fsync named):
//! 1. write `<id>.sst.tmp`, fsync it, rename to `<id>.sst` (`TableWriter::finish`);
//! 2. fsync the directory (the rename is now durable);
//! 3. open the table (validates what we just wrote);
//! 4. append `AddTable` (+ `RetireWal`) to the MANIFEST and fsync it -- the commit point;
//! 5. install the new version; maybe rewrite the MANIFEST as a snapshot.
//!
//! A crash before 4 leaves an orphan file that start-up GC deletes; the WAL still has the
//! data because the segment is retired only in 4. Compaction follows the same steps with
//! a `RemoveTables` + `AddTable`s batch.
//!
//! What a failure does, step by step (the argument sits at each decision point below):
//! * 1 and 3 fail (say ENOSPC, or EIO from the table's fsync): the table is not committed
//!   and holds nothing acknowledged -- a flush's entries are still in the memtable and the
//!   WAL, a compaction's inputs are still live. The output (`.tmp`, or the renamed `.sst`)
//!   is removed, the error is returned and the caller retries later with a fresh table id
//!   (a file whose fsync failed is never reused). No poison.
//! * 2 fails: poison. The directory is shared: its fsync error may belong to another
//!   committer's rename, and once reported the kernel will not report it again, so no later
//!   commit could trust its own directory fsync.
//! * 4 fails: poison. The record may or may not be on disk; the in-memory and on-disk
//!   MANIFEST may disagree. The outputs stay on disk (the record may reference them);
//!   start-up GC deletes them if it does not.
//! * 5 (the rewrite) fails: poison; the edit is committed, so its outputs stay.
//!
//! Poisoning: the facade refuses all later writes instead of acknowledging data it may not
//! have. Reads keep working.
//!
//! Locks: `state` (version set + manifest) is held to commit an edit (across the MANIFEST
//! fsync), never across table I/O; reads take the installed version from `current` and
//! open readers from `readers` (both read-mostly `RwLock`s, written under `state`), so a
//! lookup never waits for a commit's fsync; `compaction` serialises compactions.
//! Order: state -> readers -> current.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::engine::cache::BlockCache;
use crate::engine::compaction::{
    self, AlwaysSafe, CompactionOptions, CompactionTask, MergeParams, TombstonePolicy,
};
use crate::engine::entry::Entry;
use crate::engine::error::{EngineError, Result, Section};
use crate::engine::gc;
use crate::engine::io::{self, Io};
use crate::engine::manifest::{Manifest, MANIFEST_NAME};
use crate::engine::rate_limit::{RateLimiter, SystemClock};
use crate::engine::read::{self, EntryIter, MergeIter, TableSource};
use crate::engine::sstable::bloom::{key_hash, key_hash_of};
use crate::engine::sstable::{
    fsync_dir, table_path, EntryRef, ReadCounters, TableMeta, TableReader, TableWriter,
    TableWriterOptions,
};
use crate::engine::stats::{bump, read as load, EngineStats, LevelStats, WriteCounters};
use crate::engine::version::{Edit, Version, VersionSet, DEFAULT_NUM_LEVELS};
use crate::idmap::IdMap;

#[derive(Clone)]
pub struct TablesOptions {
    pub writer: TableWriterOptions,
    /// 0 disables the block cache.
    pub block_cache_bytes: usize,
    pub compaction: CompactionOptions,
    pub num_levels: usize,
    /// Rewrite the MANIFEST as a snapshot once it grows past this.
    pub manifest_rewrite_bytes: u64,
    /// Throttle flush/compaction output (bytes/s); `None` = unthrottled.
    pub write_bytes_per_sec: Option<u64>,
    pub tombstone_policy: Arc<dyn TombstonePolicy>,
    /// Every mutating file-system call of the tables and the WAL goes through this.
    pub io: Arc<dyn Io>,
}

impl Default for TablesOptions {
    fn default() -> Self {
        TablesOptions {
            writer: TableWriterOptions::default(),
            block_cache_bytes: 8 << 20,
            compaction: CompactionOptions::default(),
            num_levels: DEFAULT_NUM_LEVELS,
            manifest_rewrite_bytes: 4 << 20,
            write_bytes_per_sec: None,
            tombstone_policy: Arc::new(AlwaysSafe),
            io: io::real(),
        }
    }
}

/// What `open` found on disk.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// WAL segments `<=` this are fully in tables; the WAL may delete them and replay the rest.
    pub retired_wal_segment: Option<u64>,
    /// Highest seq in any flushed table; the memtable must assign larger seqs.
    pub last_flushed_seq: u64,
    pub tables: usize,
    pub orphans_deleted: Vec<PathBuf>,
    pub manifest_torn_tail_bytes: u64,
    /// True if the directory had no MANIFEST and a fresh one was created.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct CompactionReport {
    pub input_level: usize,
    pub output_level: usize,
    pub inputs: Vec<u64>,
    pub outputs: Vec<TableMeta>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub tombstones_dropped: u64,
    pub shadowed_dropped: u64,
}

/// Readers of freshly written tables, to install once their edit is committed.
type OpenedTables = Vec<(u64, Arc<TableReader>)>;

struct State {
    versions: VersionSet,
    manifest: Manifest,
}

pub struct Tables {
    dir: PathBuf,
    opts: TablesOptions,
    state: Mutex<State>,
    /// The installed version, readable without `state` (which a commit holds across the
    /// MANIFEST fsync): replaced under `state` right after every install.
    current: RwLock<Arc<Version>>,
    readers: RwLock<IdMap<u64, Arc<TableReader>>>,
    cache: Option<Arc<BlockCache>>,
    counters: Arc<ReadCounters>,
    writes: WriteCounters,
    next_id: AtomicU64,
    limiter: Option<Arc<RateLimiter>>,
    /// Serialises compactions so a task's overlap check stays true while it runs.
    compaction: Mutex<()>,
    poison: Mutex<Option<String>>,
}

/// A user-view range scan; pins the version it reads so its files outlive compaction.
pub struct RangeIter {
    inner: MergeIter,
    _version: Arc<Version>,
}

impl Iterator for RangeIter {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave a half-applied edit: versions
    // are swapped whole, maps are updated by single inserts/removes.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Tables {
    /// Open (or create) the tables in `dir`: replay the MANIFEST, delete orphans, open
    /// every live table (validating footer, index and filter).
    pub fn open(dir: &Path, opts: TablesOptions) -> Result<(Self, Recovered)> {
        io::create_dir_durable(opts.io.as_ref(), dir).map_err(|e| EngineError::io(dir, e))?;
        let (manifest, version, torn, created) = match Manifest::open(
            opts.io.clone(),
            dir,
            opts.num_levels,
            opts.manifest_rewrite_bytes,
        )? {
            Some((m, v, report)) => (m, v, report.torn_tail_bytes, false),
            None => {
                let existing = gc::table_files(dir)?;
                if !existing.is_empty() {
                    // Deleting them as orphans would destroy data: refuse instead.
                    return Err(EngineError::corruption(
                        dir.join(MANIFEST_NAME),
                        Section::ManifestHeader,
                        0,
                        format!("MANIFEST missing but {} table files exist", existing.len()),
                    ));
                }
                let v = Version::empty(opts.num_levels);
                (
                    Manifest::create(opts.io.clone(), dir, &v, opts.manifest_rewrite_bytes)?,
                    v,
                    0,
                    true,
                )
            }
        };
        let orphans = gc::find_orphans(dir, &version)?;
        if !orphans.is_empty() {
            log::info!("{}: deleting {} orphan files", dir.display(), orphans.len());
        }
        gc::delete_files(opts.io.as_ref(), dir, &orphans)?;

        let cache =
            (opts.block_cache_bytes > 0).then(|| Arc::new(BlockCache::new(opts.block_cache_bytes)));
        let counters = Arc::new(ReadCounters::default());
        let mut readers = IdMap::default();
        for t in version.tables() {
            let r = TableReader::open(
                &table_path(dir, t.id),
                t.id,
                cache.clone(),
                counters.clone(),
            )?;
            if r.file_size() != t.file_size {
                return Err(EngineError::corruption(
                    r.path(),
                    Section::Footer,
                    r.file_size(),
                    format!(
                        "file is {} bytes, manifest says {}",
                        r.file_size(),
                        t.file_size
                    ),
                ));
            }
            readers.insert(t.id, Arc::new(r));
        }
        let recovered = Recovered {
            retired_wal_segment: version.retired_wal(),
            last_flushed_seq: version.last_flushed_seq(),
            tables: readers.len(),
            orphans_deleted: orphans,
            manifest_torn_tail_bytes: torn,
            created,
        };
        let limiter = opts.write_bytes_per_sec.map(|r| {
            Arc::new(RateLimiter::new(
                r,
                (r / 10).max(64 << 10),
                Arc::new(SystemClock::default()),
            ))
        });
        let next_id = AtomicU64::new(version.next_table_id());
        let versions = VersionSet::new(version);
        let tables = Tables {
            dir: dir.to_path_buf(),
            next_id,
            current: RwLock::new(versions.current()),
            state: Mutex::new(State { versions, manifest }),
            readers: RwLock::new(readers),
            cache,
            counters,
            writes: WriteCounters::default(),
            limiter,
            compaction: Mutex::new(()),
            poison: Mutex::new(None),
            opts,
        };
        Ok((tables, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file-system layer the tables (and the WAL beside them) write through.
    pub fn io(&self) -> &Arc<dyn Io> {
        &self.opts.io
    }

    /// The installed version; holding it pins its tables (GC waits for it to drop).
    pub fn current_version(&self) -> Arc<Version> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the facade refuses writes, if an earlier durability step failed.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.poison).clone()
    }

    fn check_poison(&self) -> Result<()> {
        match &*lock(&self.poison) {
            Some(reason) => Err(EngineError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Run a durability step; on failure poison the facade and pass the error on.
    fn durable<T>(&self, what: &str, r: Result<T>) -> Result<T> {
        r.inspect_err(|e| {
            log::error!(
                "{}: {what} failed, refusing further writes: {e}",
                self.dir.display()
            );
            lock(&self.poison).get_or_insert_with(|| format!("{what}: {e}"));
        })
    }

    /// Open `metas` and commit `edits` to the manifest and the version set. For a flush,
    /// `metas` must hold only seqs above everything flushed before (checked under the
    /// lock, so two racing flushes cannot both pass).
    ///
    /// On an error before the MANIFEST append the tables of `metas` are removed (they were
    /// never committed); from the append on they are left alone (see the module docs).
    fn commit(
        &self,
        what: &str,
        edits: &[Edit],
        metas: &[TableMeta],
        is_flush: bool,
    ) -> Result<()> {
        let (mut st, opened) = match self.prepare_commit(what, edits, metas, is_flush) {
            Ok(ready) => ready,
            Err(e) => {
                self.remove_files(metas);
                return Err(e);
            }
        };
        // From here on the outputs must stay on disk: a failed append may still have put
        // the record (which references them) on disk, and after a successful append they
        // are committed.
        self.durable(what, st.manifest.append(edits))?;
        write(&self.readers).extend(opened);
        let installed = st.versions.apply(edits).map_err(|why| {
            EngineError::InvalidArgument(format!("BUG: {what} applied once but not twice: {why}"))
        });
        let v = self.durable(what, installed)?;
        *write(&self.current) = v.clone();
        if st.manifest.needs_rewrite() {
            let st = &mut *st;
            self.durable("manifest rewrite", st.manifest.rewrite(&v))?;
        }
        Ok(())
    }

    /// Everything of a commit before the MANIFEST append: make the renames durable, open
    /// the new tables, check the edit against the current version. Returns the state lock
    /// to append under.
    fn prepare_commit(
        &self,
        what: &str,
        edits: &[Edit],
        metas: &[TableMeta],
        is_flush: bool,
    ) -> Result<(MutexGuard<'_, State>, OpenedTables)> {
        // Poison, although the tables themselves are uncommitted: see step 2 in the module
        // docs (another committer may have lost its rename to this fsync's error).
        self.durable(what, fsync_dir(self.opts.io.as_ref(), &self.dir))?;
        let mut opened = Vec::new();
        for m in metas {
            let r = TableReader::open(
                &table_path(&self.dir, m.id),
                m.id,
                self.cache.clone(),
                self.counters.clone(),
            )?;
            opened.push((m.id, Arc::new(r)));
        }
        let st = lock(&self.state);
        let floor = st.versions.current().last_flushed_seq();
        if let Some(m) = metas
            .iter()
            .find(|m| is_flush && floor > 0 && m.min_seq <= floor)
        {
            return Err(EngineError::InvalidArgument(format!(
                "flush holds seq {} but seqs <= {floor} were already flushed",
                m.min_seq
            )));
        }
        if let Err(why) = st.versions.current().apply(edits) {
            return Err(EngineError::InvalidArgument(format!("{what}: {why}")));
        }
        Ok((st, opened))
    }

    /// Delete uncommitted tables (best effort: start-up GC removes what is left).
    fn remove_files(&self, metas: &[TableMeta]) {
        let paths: Vec<PathBuf> = metas.iter().map(|m| table_path(&self.dir, m.id)).collect();
        if let Err(e) = gc::delete_files(self.opts.io.as_ref(), &self.dir, &paths) {
            log::warn!("cleanup of uncommitted tables failed (start-up GC will retry): {e}");
        }
    }

    /// Write `entries` (stream order: key asc, seq desc; all seqs above every earlier
    /// flush) as a new L0 table and record it, retiring WAL segments `<= wal_segment_retired`
    /// in the same atomic manifest record. Returns `None` if `entries` was empty.
    ///
    /// An error with the facade not poisoned (`poisoned()` is `None`) changed nothing: the
    /// table was removed, the WAL segment is not retired, and the caller retries later.
    pub fn flush<I>(
        &self,
        entries: I,
        wal_segment_retired: Option<u64>,
    ) -> Result<Option<TableMeta>>
    where
        I: IntoIterator<Item = Entry>,
    {
        self.check_poison()?;
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Flushes are not rate limited: a slow flush stalls foreground writes, while the
        // limiter exists to keep background compaction from starving them.
        let mut w = TableWriter::create(
            self.opts.io.clone(),
            &self.dir,
            id,
            0,
            self.opts.writer.clone(),
            None,
        )?;
        for e in entries {
            w.add(&e)?;
        }
        // Not a durability step of acknowledged data: until the commit below, the memtable
        // and the WAL hold every entry, so a failed write, fsync or rename only fails this
        // attempt. `finish` removes its temp file on error (dropping an unfinished writer
        // does too) and the retry gets a fresh id, so a file whose fsync failed is never
        // read or reused.
        let meta = if w.entry_count() == 0 {
            None
        } else {
            Some(w.finish()?)
        };
        let mut edits: Vec<Edit> = meta.iter().cloned().map(Edit::AddTable).collect();
        if let Some(segment) = wal_segment_retired {
            edits.push(Edit::RetireWal { segment });
        }
        if edits.is_empty() {
            return Ok(None);
        }
        let metas: Vec<TableMeta> = meta.iter().cloned().collect();
        self.commit("flush", &edits, &metas, true)?;
        if let Some(m) = &meta {
            bump(&self.writes.flushes, 1);
            bump(&self.writes.flush_bytes, m.file_size);
            bump(
                &self.writes.flush_micros,
                started.elapsed().as_micros() as u64,
            );
            log::debug!(
                "flushed table {} ({} entries, {} bytes)",
                m.id,
                m.entry_count,
                m.file_size
            );
        }
        Ok(meta)
    }

    /// Newest version of `key` in the tables, tombstones included (the caller checks the
    /// memtables first and treats a tombstone as "deleted").
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry>> {
        let v = self.current_version();
        read::get(&v, self, key)
    }

    /// [`get`](Self::get) without I/O (see [`read::get_cached_with`]), handing `f` the
    /// entry where it lies in its cached block: `None` when a data block would have to be
    /// read from a file. The Memtable actor answers the rest on its own event loop, sparing
    /// them a trip through the disk-read queue.
    /// `digest` is the key's `blake3` hash when the caller has it (`None`: hashed here).
    pub fn get_cached_with<R>(
        &self,
        key: &[u8],
        digest: Option<&blake3::Hash>,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> Option<Result<R>> {
        let v = self.current_version();
        let hash = digest.map_or_else(|| key_hash(key), key_hash_of);
        read::get_cached_with(&v, self, key, hash, f)
    }

    /// User-view scan of `[start, end)` merging `extra` (memtable iterators, newest first)
    /// over the tables; newest version per key, tombstones hidden.
    pub fn range(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        extra: Vec<EntryIter>,
    ) -> Result<RangeIter> {
        self.scan(start, end, extra, false)
    }

    /// Like `range` but keeps tombstones (anti-entropy, debugging).
    pub fn range_with_tombstones(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        extra: Vec<EntryIter>,
    ) -> Result<RangeIter> {
        self.scan(start, end, extra, true)
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        mut extra: Vec<EntryIter>,
        keep: bool,
    ) -> Result<RangeIter> {
        let v = self.current_version();
        extra.extend(read::version_sources(&v, self, start, end)?);
        Ok(RangeIter {
            inner: MergeIter::new(extra, keep),
            _version: v,
        })
    }

    /// The most urgent compaction, if any (none once poisoned).
    pub fn pick_compaction(&self) -> Option<CompactionTask> {
        if self.check_poison().is_err() {
            return None;
        }
        compaction::pick(&self.current_version(), &self.opts.compaction)
    }

    /// Force `level` down one level (admin `compact`, tests).
    pub fn pick_level_compaction(&self, level: usize) -> Option<CompactionTask> {
        compaction::pick_level(&self.current_version(), level)
    }

    /// Merge a task's inputs into its output level and commit the swap. The replaced
    /// files stay on disk until `collect_garbage` finds them unpinned.
    pub fn run_compaction(&self, task: &CompactionTask) -> Result<CompactionReport> {
        self.check_poison()?;
        let _serial = lock(&self.compaction);
        let started = Instant::now();
        let v = self.current_version();
        for t in task.inputs.iter().chain(&task.overlapping) {
            if !v.contains(t.id) {
                return Err(EngineError::StaleCompaction { table_id: t.id });
            }
        }
        // The output level may have gained tables since the pick; they would overlap.
        let lo = task.inputs.iter().map(|t| &t.smallest).min();
        let hi = task.inputs.iter().map(|t| &t.largest).max();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let now: Vec<u64> = v
                .overlapping(task.output_level, lo, hi)
                .iter()
                .map(|t| t.id)
                .collect();
            let then: Vec<u64> = task.overlapping.iter().map(|t| t.id).collect();
            if let Some(&id) = now.iter().find(|id| !then.contains(id)) {
                return Err(EngineError::StaleCompaction { table_id: id });
            }
        }
        let params = MergeParams {
            io: &self.opts.io,
            dir: &self.dir,
            version: &v,
            tables: self,
            writer_opts: self.opts.writer.clone(),
            target_table_bytes: self.opts.compaction.target_table_bytes,
            policy: self.opts.tombstone_policy.as_ref(),
            limiter: self.limiter.clone(),
        };
        let out = compaction::execute(task, &params, &mut || {
            self.next_id.fetch_add(1, Ordering::Relaxed)
        });
        // A failed merge (ENOSPC on an output, EIO from its fsync, a corrupt input block) is
        // not poison: the outputs are uncommitted and `execute` has removed them, the inputs
        // are still live and unchanged. The compactor retries with backoff.
        let out = out?;
        self.commit("compaction", &out.edits, &out.outputs, false)?;
        bump(&self.writes.compactions, 1);
        bump(&self.writes.compaction_bytes_read, out.bytes_read);
        bump(&self.writes.compaction_bytes_written, out.bytes_written);
        bump(
            &self.writes.compaction_micros,
            started.elapsed().as_micros() as u64,
        );
        bump(&self.writes.tombstones_dropped, out.tombstones_dropped);
        Ok(CompactionReport {
            input_level: task.input_level,
            output_level: task.output_level,
            inputs: task.input_ids(),
            outputs: out.outputs,
            bytes_read: out.bytes_read,
            bytes_written: out.bytes_written,
            tombstones_dropped: out.tombstones_dropped,
            shadowed_dropped: out.shadowed_dropped,
        })
    }

    /// Delete retired tables no reader pins any more. Returns the deleted ids.
    pub fn collect_garbage(&self) -> Result<Vec<u64>> {
        let ready = lock(&self.state).versions.obsolete_files_ready_to_delete();
        if ready.is_empty() {
            return Ok(ready);
        }
        {
            let mut readers = write(&self.readers);
            for id in &ready {
                readers.remove(id);
            }
        }
        if let Some(c) = &self.cache {
            ready.iter().for_each(|id| c.evict_table(*id));
        }
        let paths: Vec<PathBuf> = ready.iter().map(|id| table_path(&self.dir, *id)).collect();
        // A failure here only leaves orphans, which start-up GC removes.
        gc::delete_files(self.opts.io.as_ref(), &self.dir, &paths)?;
        bump(&self.writes.files_deleted, ready.len() as u64);
        Ok(ready)
    }

    pub fn stats(&self) -> EngineStats {
        let (v, pinned, manifest_bytes) = {
            let st = lock(&self.state);
            (
                st.versions.current(),
                st.versions.pinned_retired().len(),
                st.manifest.size(),
            )
        };
        let levels = (0..v.num_levels())
            .map(|l| LevelStats {
                tables: v.level(l).len(),
                bytes: v.level_bytes(l),
                entries: v.level(l).iter().map(|t| t.entry_count).sum(),
            })
            .collect();
        let cache = self.cache.as_ref().map(|c| c.stats());
        let w = &self.writes;
        EngineStats {
            levels,
            flushes: load(&w.flushes),
            flush_bytes: load(&w.flush_bytes),
            flush_micros: load(&w.flush_micros),
            compactions: load(&w.compactions),
            compaction_bytes_read: load(&w.compaction_bytes_read),
            compaction_bytes_written: load(&w.compaction_bytes_written),
            compaction_micros: load(&w.compaction_micros),
            tombstones_dropped: load(&w.tombstones_dropped),
            bloom_useful: load(&self.counters.bloom_useful),
            bloom_useless: load(&self.counters.bloom_useless),
            block_reads: load(&self.counters.block_reads),
            cache_hit_rate: cache.map_or(0.0, |c| c.hit_rate()),
            cache,
            pinned_retired_tables: pinned,
            files_deleted: load(&w.files_deleted),
            manifest_bytes,
            poisoned: lock(&self.poison).clone(),
        }
    }

    #[cfg(test)]
    pub(crate) fn poison_for_test(&self, reason: &str) {
        *lock(&self.poison) = Some(reason.to_string());
    }
}

impl TableSource for Tables {
    fn table(&self, id: u64) -> Result<Arc<TableReader>> {
        let readers = self.readers.read().unwrap_or_else(|p| p.into_inner());
        readers.get(&id).cloned().ok_or_else(|| {
            EngineError::InvalidArgument(format!("BUG: live table {id} has no open reader"))
        })
    }
}
