//! Target `sstable`: the SSTable read path (`actors/src/engine/sstable`): the data block
//! decoder ([`decode_block`]), the footer, index and bloom filter decoders, and
//! [`TableReader`] on a whole table file (opened, scanned, probed), as a node does with
//! every table it finds at start-up.
//!
//! The first byte picks the mode (its low two bits): 0 a data block, 1 a table file, 2 or 3
//! the footer, index and filter decoders on the raw bytes. Bit 2 of it (`FIX`) recomputes the
//! checksums first: the block's CRC (mode 0); in a table, every data block the index names,
//! the filter's and index's checksums and the footer's own (mode 1), so that the structure
//! behind them is fuzzed. Bit 3 gives the table reader a block cache.
//!
//! Checked for any input: no panic, no hang, no allocation beyond what the file's bytes
//! justify (libFuzzer's malloc limit), and a decoded block's entries agree with its keys.
//! A table file is written to a temporary file (in `/dev/shm` when there is one, removed
//! once opened) because the reader reads with `pread`.

use crate::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use troupe_actors::engine::cache::BlockCache;
use troupe_actors::engine::codec::{block_checksum, checksum8};
use troupe_actors::engine::sstable::block::decode_block;
use troupe_actors::engine::sstable::bloom::BloomFilter;
use troupe_actors::engine::sstable::format::{decode_index, Footer, FOOTER_LEN, TABLE_MAGIC};
use troupe_actors::engine::sstable::{ReadCounters, TableReader};

const FIX: u8 = 1 << 2;
const CACHE: u8 = 1 << 3;

pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    let rest = b.rest();
    match mode & 3 {
        0 => block(rest, mode & FIX != 0),
        1 => table(rest, mode),
        _ => parts(rest),
    }
}

fn block(raw: &[u8], fix: bool) {
    let mut raw = raw.to_vec();
    if fix && raw.len() >= 8 {
        let at = raw.len() - 4;
        let sum = block_checksum(&raw[..at]);
        raw[at..].copy_from_slice(&sum);
    }
    let Ok(block) = decode_block(raw) else {
        return;
    };
    for i in 0..block.len() {
        let e = block.entry(i).expect("an entry below len()");
        assert_eq!(block.key(i), e.key.as_slice());
        let _ = block.find(&e.key);
        // Not `lower_bound(key) <= i`: the decoder does not check that a block's keys are
        // sorted (a checksum-valid unsorted block is a crafted file, not damage), and a
        // binary search over unsorted keys answers anything in range.
        assert!(block.lower_bound(&e.key) <= block.len());
    }
    assert!(block.entry(block.len()).is_none());
    let _ = block.find(b"");
}

fn parts(raw: &[u8]) {
    let _ = Footer::decode(&raw[raw.len().saturating_sub(FOOTER_LEN)..]);
    let data_end = Bytes::new(raw).u64();
    let _ = decode_index(raw, data_end % (raw.len() as u64 + 2));
    let _ = BloomFilter::decode(raw);
}

/// Recomputes every checksum in a table whose footer and index are readable enough to find
/// them; leaves the rest as the fuzzer made it.
pub fn fix_table(t: &mut [u8]) {
    let Some(footer_off) = t.len().checked_sub(FOOTER_LEN) else {
        return;
    };
    let field = |t: &[u8], i: usize| {
        let at = footer_off + 8 * i;
        u64::from_le_bytes(t[at..at + 8].try_into().expect("8 bytes"))
    };
    let section = |off: u64, len: u64| {
        let end = off.checked_add(len).filter(|&e| e <= footer_off as u64)?;
        Some(off as usize..end as usize)
    };
    let (filter_off, filter_len) = (field(t, 0), field(t, 1));
    let (index_off, index_len) = (field(t, 3), field(t, 4));
    if let Some(index) = section(index_off, index_len) {
        if let Ok((_, blocks)) = decode_index(&t[index], filter_off) {
            for h in blocks {
                // decode_index checked every block lies in [0, filter_off).
                if let Some(r) = section(h.offset, h.len) {
                    let at = r.end - 4;
                    let sum = block_checksum(&t[r.start..at]);
                    t[at..r.end].copy_from_slice(&sum);
                }
            }
        }
    }
    for (i, off, len) in [(2, filter_off, filter_len), (5, index_off, index_len)] {
        if let Some(r) = section(off, len) {
            let sum = checksum8(&t[r]);
            let at = footer_off + 8 * i;
            t[at..at + 8].copy_from_slice(&sum.to_le_bytes());
        }
    }
    t[footer_off + 48..footer_off + 52]
        .copy_from_slice(&troupe_actors::engine::sstable::format::FORMAT_VERSION.to_le_bytes());
    let sum = checksum8(&t[footer_off..footer_off + 52]);
    t[footer_off + 52..footer_off + 60].copy_from_slice(&sum.to_le_bytes());
    t[footer_off + 60..].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
}

thread_local! {
    static FILE: PathBuf = {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("troupe-fuzz-{}.sst", std::process::id()))
    };
}

fn table(raw: &[u8], mode: u8) {
    let mut bytes = raw.to_vec();
    if mode & FIX != 0 {
        fix_table(&mut bytes);
    }
    FILE.with(|path| {
        std::fs::write(path, &bytes).expect("writing the fuzz table file");
        let cache = (mode & CACHE != 0).then(|| Arc::new(BlockCache::new(1 << 20)));
        let opened = TableReader::open(path, 1, cache, Arc::new(ReadCounters::default()));
        // The reader keeps the file open; unlinked now, it leaves nothing behind.
        let _ = std::fs::remove_file(path);
        let Ok(t) = opened else {
            return;
        };
        let t = Arc::new(t);
        assert!(t.block_count() >= 1);
        let (lo, hi) = (t.smallest_key().to_vec(), t.largest_key().to_vec());
        let mut keys = Vec::new();
        for e in t.iter_range(None, None) {
            match e {
                Ok(e) => keys.push(e.key),
                Err(_) => break,
            }
        }
        for k in keys.iter().chain([&lo, &hi]) {
            let _ = t.get(k);
        }
        // A few bounded scans (one per key would make a big table's run quadratic).
        let mid = keys.get(keys.len() / 2).unwrap_or(&lo);
        for (from, to) in [(&lo, &hi), (mid, &hi), (&lo, mid), (&hi, &lo)] {
            let _ = t.iter_range(Some(from), Some(to)).count();
        }
        let _ = t.get(b"");
    });
}
