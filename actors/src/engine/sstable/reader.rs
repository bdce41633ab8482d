//! Table reader: validates footer, filter and index at `open` and keeps the index and
//! bloom filter in memory; data blocks are read on demand (through the block cache if one
//! is given) and checksum-verified on every read from disk.
//!
//! A point lookup consults the bloom filter, binary-searches the sparse index for the one
//! block whose range can hold the key and reads only that block. Reads use positional I/O
//! (`pread`), so one reader is shared by any number of threads without a lock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::block::{decode_block, Block, EntryRef};
use super::bloom::{key_hash, BloomFilter};
use super::format::{decode_index, BlockHandle, Footer, TableProps, FOOTER_LEN};
use super::search::Windows;
use crate::engine::cache::BlockCache;
use crate::engine::codec::{checksum8, DecodeError};
use crate::engine::entry::Entry;
use crate::engine::error::{EngineError, Result, Section};

/// Read-path counters, shared by all readers of one engine.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Data blocks read from disk (cache misses or uncached reads).
    pub block_reads: AtomicU64,
    /// Lookups the bloom filter answered "absent" (a block read saved).
    pub bloom_useful: AtomicU64,
    /// Lookups the filter let through but the key was not there (false positives).
    pub bloom_useless: AtomicU64,
}

/// What one table's probe adds to the read counters (see [`TableReader::count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The bloom filter said absent.
    BloomUseful,
    /// The filter said maybe and the table had nothing; `cached`: its block came from the
    /// cache.
    BloomUseless { cached: bool },
    /// The key was there.
    Found { cached: bool },
}

/// A key found in a cached block: the block, held, and the entry's index in it.
pub struct Hit {
    block: Arc<Block>,
    index: usize,
}

impl Hit {
    /// The entry where it lies in the block.
    pub fn entry(&self) -> EntryRef<'_> {
        self.block.entry_ref(self.index)
    }
}

/// Where a key could be in one table.
enum Located {
    RuledOut,
    NotHere,
    Block(usize),
}

pub struct TableReader {
    id: u64,
    path: PathBuf,
    file: File,
    file_size: u64,
    index: Vec<BlockHandle>,
    /// The index's last keys as search windows (see `search`).
    search: Windows,
    filter: BloomFilter,
    props: TableProps,
    cache: Option<Arc<BlockCache>>,
    counters: Arc<ReadCounters>,
}

impl std::fmt::Debug for TableReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableReader")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TableReader {
    /// Open and validate a table. Any checksum or structure failure in the footer, filter
    /// or index is a `Corruption` naming the file and section.
    pub fn open(
        path: &Path,
        id: u64,
        cache: Option<Arc<BlockCache>>,
        counters: Arc<ReadCounters>,
    ) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_size = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let corrupt = |section, offset, what: &str| {
            EngineError::corruption(path, section, offset, what.to_string())
        };
        if file_size < FOOTER_LEN as u64 {
            return Err(corrupt(Section::Footer, 0, "file shorter than a footer"));
        }
        let footer_off = file_size - FOOTER_LEN as u64;
        let mut raw = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut raw, footer_off)
            .map_err(|e| EngineError::io(path, e))?;
        let footer = Footer::decode(&raw)
            .map_err(|d| corrupt(Section::Footer, footer_off + d.at as u64, d.what))?;

        let section_ok = |off: u64, len: u64| off.checked_add(len).is_some_and(|e| e <= footer_off);
        if !section_ok(footer.filter_offset, footer.filter_len)
            || !section_ok(footer.index_offset, footer.index_len)
            || footer.filter_offset + footer.filter_len != footer.index_offset
            || footer.index_offset + footer.index_len != footer_off
        {
            return Err(corrupt(
                Section::Footer,
                footer_off,
                "filter/index sections out of bounds",
            ));
        }
        let read_section = |off: u64, len: u64, section, sum: u64| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, off)
                .map_err(|e| EngineError::io(path, e))?;
            if checksum8(&buf) != sum {
                return Err(corrupt(section, off, "checksum mismatch"));
            }
            Ok(buf)
        };
        let filter_raw = read_section(
            footer.filter_offset,
            footer.filter_len,
            Section::Filter,
            footer.filter_checksum,
        )?;
        let filter = BloomFilter::decode(&filter_raw)
            .map_err(|d| corrupt(Section::Filter, footer.filter_offset + d.at as u64, d.what))?;
        let index_raw = read_section(
            footer.index_offset,
            footer.index_len,
            Section::Index,
            footer.index_checksum,
        )?;
        let (props, index) = decode_index(&index_raw, footer.filter_offset)
            .map_err(|d| corrupt(Section::Index, footer.index_offset + d.at as u64, d.what))?;
        Ok(TableReader {
            id,
            path: path.to_path_buf(),
            file,
            file_size,
            search: Windows::new(index.iter().map(|b| b.last_key.as_slice())),
            index,
            filter,
            props,
            cache,
            counters,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub fn props(&self) -> &TableProps {
        &self.props
    }

    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    pub fn smallest_key(&self) -> &[u8] {
        &self.index[0].first_key
    }

    pub fn largest_key(&self) -> &[u8] {
        &self.index[self.index.len() - 1].last_key
    }

    pub fn counters(&self) -> &Arc<ReadCounters> {
        &self.counters
    }

    /// Newest version of `key` in this table (tombstones included), reading at most one
    /// data block.
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry>> {
        self.get_hashed(key, key_hash(key))
    }

    /// `get` with the key's bloom hash computed once by the caller (one hash per lookup,
    /// however many tables it probes).
    pub fn get_hashed(&self, key: &[u8], hash: (u64, u64)) -> Result<Option<Entry>> {
        let (found, probe) = match self.locate(key, hash) {
            Located::RuledOut => (None, Probe::BloomUseful),
            Located::NotHere => (None, Probe::BloomUseless { cached: false }),
            Located::Block(idx) => {
                let found = self.read_block(idx, true)?.find(key);
                let probe = match found {
                    Some(_) => Probe::Found { cached: false },
                    None => Probe::BloomUseless { cached: false },
                };
                (found, probe)
            }
        };
        self.count(probe);
        Ok(found)
    }

    /// `get_hashed` from memory alone, counting nothing yet: `None` when the answer needs
    /// a data block that is not in the block cache (the caller then redoes the lookup off
    /// the event loop with `get_hashed`, which counts it). Otherwise where the entry lies
    /// (read it with [`Hit::entry`], no copy) and what the probe adds to the read counters,
    /// for [`count`](Self::count) once the lookup is final.
    pub fn get_cached(&self, key: &[u8], hash: (u64, u64)) -> Option<(Option<Hit>, Probe)> {
        Some(match self.locate(key, hash) {
            Located::RuledOut => (None, Probe::BloomUseful),
            Located::NotHere => (None, Probe::BloomUseless { cached: false }),
            Located::Block(idx) => {
                let block = self
                    .cache
                    .as_ref()?
                    .peek((self.id, self.index[idx].offset))?;
                match block.position(key) {
                    Some(index) => (Some(Hit { block, index }), Probe::Found { cached: true }),
                    None => (None, Probe::BloomUseless { cached: true }),
                }
            }
        })
    }

    /// Adds a finished probe to the read counters (and a block it took from the cache to
    /// the cache's hits).
    pub fn count(&self, probe: Probe) {
        let cached = match probe {
            Probe::BloomUseful => {
                self.counters.bloom_useful.fetch_add(1, Ordering::Relaxed);
                false
            }
            Probe::BloomUseless { cached } => {
                self.counters.bloom_useless.fetch_add(1, Ordering::Relaxed);
                cached
            }
            Probe::Found { cached } => cached,
        };
        if cached {
            if let Some(c) = &self.cache {
                c.record_hit();
            }
        }
    }

    /// The first block whose last key is >= `key`.
    fn block_for(&self, key: &[u8]) -> usize {
        self.search.lower_bound(key, |i| &self.index[i].last_key)
    }

    /// The bloom probe, then the one block that can hold `key`: entries are sorted (key
    /// asc, seq desc) across blocks, so it is the first block whose last key >= key.
    fn locate(&self, key: &[u8], hash: (u64, u64)) -> Located {
        if !self.filter.may_contain_hash(hash) {
            return Located::RuledOut;
        }
        let idx = self.block_for(key);
        match self.index.get(idx) {
            Some(h) if h.first_key.as_slice() <= key => Located::Block(idx),
            _ => Located::NotHere,
        }
    }

    /// Read block `idx`, via the cache when present. `fill_cache` is false for scans and
    /// compaction so a one-off pass does not flush the hot set out of the cache.
    pub fn read_block(&self, idx: usize, fill_cache: bool) -> Result<Arc<Block>> {
        let h = &self.index[idx];
        if let Some(c) = &self.cache {
            if let Some(b) = c.get((self.id, h.offset)) {
                return Ok(b);
            }
        }
        let mut raw = vec![0u8; h.len as usize];
        self.file
            .read_exact_at(&mut raw, h.offset)
            .map_err(|e| EngineError::io(&self.path, e))?;
        self.counters.block_reads.fetch_add(1, Ordering::Relaxed);
        let block = decode_block(raw).map_err(|d: DecodeError| {
            EngineError::corruption(
                &self.path,
                Section::DataBlock,
                h.offset + d.at as u64,
                format!("block #{idx}: {}", d.what),
            )
        })?;
        let block = Arc::new(block);
        if fill_cache {
            if let Some(c) = &self.cache {
                c.insert((self.id, h.offset), block.clone());
            }
        }
        Ok(block)
    }

    /// Stream every entry (all versions, tombstones included) with `start <= key < end`;
    /// `None` bounds are open.
    pub fn iter_range(self: &Arc<Self>, start: Option<&[u8]>, end: Option<&[u8]>) -> TableIter {
        let block_idx = match start {
            Some(s) => self.block_for(s),
            None => 0,
        };
        TableIter {
            table: self.clone(),
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            block_idx,
            block: None,
            pos: 0,
            done: false,
        }
    }
}

/// Streaming iterator over a table; holds the reader alive. Yields `Err` once on failure
/// and then ends.
pub struct TableIter {
    table: Arc<TableReader>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    block_idx: usize,
    block: Option<Arc<Block>>,
    pos: usize,
    done: bool,
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(b) = &self.block {
                if let Some(e) = b.entry(self.pos) {
                    self.pos += 1;
                    if self
                        .end
                        .as_deref()
                        .is_some_and(|end| e.key.as_slice() >= end)
                    {
                        self.done = true;
                        return None;
                    }
                    return Some(Ok(e));
                }
                self.block = None;
                self.block_idx += 1;
            }
            if self.block_idx >= self.table.index.len() {
                self.done = true;
                return None;
            }
            if let Some(end) = &self.end {
                if self.table.index[self.block_idx].first_key >= *end {
                    self.done = true;
                    return None;
                }
            }
            match self.table.read_block(self.block_idx, false) {
                Ok(b) => {
                    self.pos = match self.start.take() {
                        Some(s) => b.lower_bound(&s),
                        None => 0,
                    };
                    self.block = Some(b);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
