//! Streaming table writer.
//!
//! Entries must arrive in stream order (key asc, seq desc, no duplicate (key, seq)); the
//! writer checks this rather than trusting the caller, because an out-of-order table would
//! silently break every lookup. The file is written as `<id>.sst.tmp`; `finish` writes the
//! filter, index and footer, fsyncs the file and renames it to `<id>.sst`. The caller must
//! then `fsync_dir` before recording the table in the manifest. A writer dropped without
//! `finish` removes its temp file.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::BlockBuilder;
use super::bloom::{key_hash, BloomFilter};
use super::format::{encode_index, BlockHandle, Footer, TableProps};
use super::{table_path, temp_table_path, TableMeta};
use crate::engine::codec::checksum8;
use crate::engine::entry::{stream_order, Entry};
use crate::engine::error::{EngineError, Result};
use crate::engine::io::{Io, IoFile};
use crate::engine::rate_limit::RateLimiter;

#[derive(Debug, Clone)]
pub struct TableWriterOptions {
    /// Target uncompressed data block size; a block is cut once it reaches this.
    pub block_size: usize,
    pub bloom_bits_per_key: usize,
    pub prefix_compression: bool,
}

impl Default for TableWriterOptions {
    fn default() -> Self {
        TableWriterOptions {
            block_size: 4096,
            bloom_bits_per_key: 10,
            prefix_compression: true,
        }
    }
}

pub struct TableWriter {
    id: u64,
    level: usize,
    tmp_path: PathBuf,
    final_path: PathBuf,
    out: BufWriter<Box<dyn IoFile>>,
    io: Arc<dyn Io>,
    opts: TableWriterOptions,
    limiter: Option<Arc<RateLimiter>>,
    block: BlockBuilder,
    block_first: Option<Vec<u8>>,
    last: Option<(Vec<u8>, u64)>,
    index: Vec<BlockHandle>,
    hashes: Vec<(u64, u64)>,
    offset: u64,
    props: TableProps,
    smallest: Option<Vec<u8>>,
    finished: bool,
}

impl TableWriter {
    /// Create `<dir>/<id>.sst.tmp` (truncating a leftover from a crashed attempt).
    pub fn create(
        io: Arc<dyn Io>,
        dir: &Path,
        id: u64,
        level: usize,
        opts: TableWriterOptions,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Result<Self> {
        let tmp_path = temp_table_path(dir, id);
        let file = io
            .create(&tmp_path)
            .map_err(|e| EngineError::io(&tmp_path, e))?;
        Ok(TableWriter {
            id,
            level,
            final_path: table_path(dir, id),
            tmp_path,
            out: BufWriter::with_capacity(64 * 1024, file),
            io,
            block: BlockBuilder::new(opts.prefix_compression),
            opts,
            limiter,
            block_first: None,
            last: None,
            index: Vec::new(),
            hashes: Vec::new(),
            offset: 0,
            props: TableProps {
                min_seq: u64::MAX,
                ..TableProps::default()
            },
            smallest: None,
            finished: false,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn entry_count(&self) -> u64 {
        self.props.entry_count
    }

    /// Bytes written so far plus the open block: what the file would roughly weigh now.
    pub fn estimated_size(&self) -> u64 {
        self.offset + self.block.encoded_len() as u64
    }

    pub fn add(&mut self, e: &Entry) -> Result<()> {
        let new_key = match &self.last {
            Some((k, s)) => {
                if stream_order(k, *s, &e.key, e.seq) != std::cmp::Ordering::Less {
                    return Err(EngineError::InvalidArgument(format!(
                        "table {}: entry (key {:?}, seq {}) not after (key {:?}, seq {})",
                        self.id, e.key, e.seq, k, s
                    )));
                }
                k != &e.key
            }
            None => true,
        };
        if new_key {
            self.hashes.push(key_hash(&e.key));
        }
        if self.smallest.is_none() {
            self.smallest = Some(e.key.clone());
        }
        if self.block_first.is_none() {
            self.block_first = Some(e.key.clone());
        }
        self.block.add(e);
        self.props.entry_count += 1;
        self.props.tombstone_count += u64::from(e.is_tombstone());
        self.props.min_seq = self.props.min_seq.min(e.seq);
        self.props.max_seq = self.props.max_seq.max(e.seq);
        match &mut self.last {
            Some((k, s)) => {
                k.clone_from(&e.key);
                *s = e.seq;
            }
            None => self.last = Some((e.key.clone(), e.seq)),
        }
        if self.block.encoded_len() >= self.opts.block_size {
            self.cut_block()?;
        }
        Ok(())
    }

    fn cut_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let raw = self.block.finish();
        let (first, last) = match (self.block_first.take(), &self.last) {
            (Some(f), Some((l, _))) => (f, l.clone()),
            _ => {
                return Err(EngineError::InvalidArgument(
                    "BUG: non-empty block without keys".into(),
                ))
            }
        };
        self.index.push(BlockHandle {
            first_key: first,
            last_key: last,
            offset: self.offset,
            len: raw.len() as u64,
        });
        self.write(&raw)
    }

    fn write(&mut self, raw: &[u8]) -> Result<()> {
        if let Some(l) = &self.limiter {
            l.acquire(raw.len() as u64);
        }
        #[cfg(test)]
        super::fault::check(&self.tmp_path, self.level, super::fault::FaultOp::Write)
            .map_err(|e| EngineError::io(&self.tmp_path, e))?;
        self.out
            .write_all(raw)
            .map_err(|e| EngineError::io(&self.tmp_path, e))?;
        self.offset += raw.len() as u64;
        Ok(())
    }

    /// Complete the table: filter, index, footer, fsync, rename to its final name.
    /// The directory is NOT fsynced here (see `fsync_dir`).
    pub fn finish(mut self) -> Result<TableMeta> {
        self.cut_block()?;
        let (Some(smallest), Some((largest, _))) = (self.smallest.clone(), self.last.clone())
        else {
            return Err(EngineError::InvalidArgument(format!(
                "table {}: refusing to write an empty table",
                self.id
            )));
        };
        let mut filter = Vec::new();
        BloomFilter::build(&self.hashes, self.opts.bloom_bits_per_key).encode(&mut filter);
        let index = encode_index(&self.props, &self.index);
        let footer = Footer {
            filter_offset: self.offset,
            filter_len: filter.len() as u64,
            filter_checksum: checksum8(&filter),
            index_offset: self.offset + filter.len() as u64,
            index_len: index.len() as u64,
            index_checksum: checksum8(&index),
        };
        self.write(&filter)?;
        self.write(&index)?;
        self.write(&footer.encode())?;
        self.out
            .flush()
            .map_err(|e| EngineError::io(&self.tmp_path, e))?;
        #[cfg(test)]
        super::fault::check(&self.tmp_path, self.level, super::fault::FaultOp::Sync)
            .map_err(|e| EngineError::io(&self.tmp_path, e))?;
        self.out
            .get_mut()
            .sync_all()
            .map_err(|e| EngineError::io(&self.tmp_path, e))?;
        self.io
            .rename(&self.tmp_path, &self.final_path)
            .map_err(|e| EngineError::io(&self.final_path, e))?;
        self.finished = true;
        Ok(TableMeta {
            id: self.id,
            level: self.level,
            smallest,
            largest,
            min_seq: self.props.min_seq,
            max_seq: self.props.max_seq,
            entry_count: self.props.entry_count,
            tombstone_count: self.props.tombstone_count,
            file_size: self.offset,
        })
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: start-up GC removes any temp file we fail to remove here.
            let _ = self.io.remove_file(&self.tmp_path);
        }
    }
}
