//! The MANIFEST: an append-only log of checksummed edit batches from which the current
//! `Version` is rebuilt at start-up.
//!
//! File format: an 8-byte magic, then records:
//!
//! ```text
//! u32 payload_len | 4-byte checksum(payload_len) | 4-byte checksum(payload) | payload
//! payload = varint edit_count, then edits (tag u8 + varint/bytes fields)
//! ```
//!
//! Replay tells a torn tail from mid-file damage: a bad record (either checksum fails, or
//! it runs past end-of-file) is a "torn" append that never completed -- dropped, and the
//! file truncated before the next append -- only if no intact record follows it anywhere
//! in the file. Otherwise it is `Corruption` naming the file and offset: we refuse to
//! start rather than silently forget tables. The length checksum keeps a flipped length
//! from swallowing the records after it. (Bit rot inside the final record is
//! indistinguishable from a torn write and is treated as torn.)
//!
//! Every append is fsynced before returning. When the file outgrows the rewrite threshold
//! it is replaced by a single-record snapshot: write `MANIFEST.tmp`, fsync it, rename over
//! `MANIFEST`, fsync the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::codec::{checksum4, put_bytes, put_varint, DecodeError, Decoder};
use crate::engine::error::{EngineError, Result, Section};
use crate::engine::io::{Io, IoFile};
use crate::engine::sstable::{fsync_dir, TableMeta};
use crate::engine::version::{Edit, Version};

pub const MANIFEST_NAME: &str = "MANIFEST";
pub const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"TRPMAN\x00\x01";
const RECORD_HEADER_LEN: usize = 12;

const TAG_ADD: u8 = 1;
const TAG_REMOVE: u8 = 2;
const TAG_RETIRE_WAL: u8 = 3;
const TAG_NEXT_IDS: u8 = 4;

fn encode_edits(edits: &[Edit]) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint(&mut b, edits.len() as u64);
    for e in edits {
        match e {
            Edit::AddTable(m) => {
                b.push(TAG_ADD);
                put_varint(&mut b, m.id);
                put_varint(&mut b, m.level as u64);
                put_bytes(&mut b, &m.smallest);
                put_bytes(&mut b, &m.largest);
                for v in [
                    m.min_seq,
                    m.max_seq,
                    m.entry_count,
                    m.tombstone_count,
                    m.file_size,
                ] {
                    put_varint(&mut b, v);
                }
            }
            Edit::RemoveTables { ids } => {
                b.push(TAG_REMOVE);
                put_varint(&mut b, ids.len() as u64);
                for id in ids {
                    put_varint(&mut b, *id);
                }
            }
            Edit::RetireWal { segment } => {
                b.push(TAG_RETIRE_WAL);
                put_varint(&mut b, *segment);
            }
            Edit::NextIds {
                next_table_id,
                last_flushed_seq,
            } => {
                b.push(TAG_NEXT_IDS);
                put_varint(&mut b, *next_table_id);
                put_varint(&mut b, *last_flushed_seq);
            }
        }
    }
    b
}

fn decode_edits(raw: &[u8]) -> std::result::Result<Vec<Edit>, DecodeError> {
    let mut d = Decoder::new(raw);
    let n = d.varint()?;
    let mut edits = Vec::new();
    for _ in 0..n {
        let at = d.pos();
        let edit = match d.u8()? {
            TAG_ADD => Edit::AddTable(TableMeta {
                id: d.varint()?,
                level: d.varint()? as usize,
                smallest: d.bytes()?.to_vec(),
                largest: d.bytes()?.to_vec(),
                min_seq: d.varint()?,
                max_seq: d.varint()?,
                entry_count: d.varint()?,
                tombstone_count: d.varint()?,
                file_size: d.varint()?,
            }),
            TAG_REMOVE => {
                let count = d.varint()?;
                let mut ids = Vec::new();
                for _ in 0..count {
                    ids.push(d.varint()?);
                }
                Edit::RemoveTables { ids }
            }
            TAG_RETIRE_WAL => Edit::RetireWal {
                segment: d.varint()?,
            },
            TAG_NEXT_IDS => Edit::NextIds {
                next_table_id: d.varint()?,
                last_flushed_seq: d.varint()?,
            },
            _ => {
                return Err(DecodeError {
                    at,
                    what: "unknown edit tag",
                })
            }
        };
        edits.push(edit);
    }
    if !d.is_empty() {
        return Err(DecodeError {
            at: d.pos(),
            what: "trailing bytes after edits",
        });
    }
    Ok(edits)
}

fn encode_record(edits: &[Edit]) -> Vec<u8> {
    let payload = encode_edits(edits);
    let len = (payload.len() as u32).to_le_bytes();
    let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    rec.extend_from_slice(&len);
    rec.extend_from_slice(&checksum4(&len));
    rec.extend_from_slice(&checksum4(&payload));
    rec.extend_from_slice(&payload);
    rec
}

/// The payload of an intact record starting at `pos`, or why there is none.
fn record_at(raw: &[u8], pos: usize) -> std::result::Result<&[u8], &'static str> {
    if raw.len().saturating_sub(pos) < RECORD_HEADER_LEN {
        return Err("truncated record header");
    }
    let len_bytes = &raw[pos..pos + 4];
    if checksum4(len_bytes) != raw[pos + 4..pos + 8] {
        return Err("record length checksum mismatch");
    }
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let body = pos + RECORD_HEADER_LEN;
    let payload = raw
        .get(body..body + len as usize)
        .ok_or("record runs past end of file")?;
    if checksum4(payload) != raw[pos + 8..pos + 12] {
        return Err("record checksum mismatch");
    }
    Ok(payload)
}

/// What replay found besides the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: usize,
    /// Length of the valid prefix of the file.
    pub valid_len: u64,
    /// Bytes of torn tail dropped (0 if the file ended cleanly).
    pub torn_tail_bytes: u64,
}

/// Rebuild the version recorded in the manifest at `path` (read-only).
pub fn replay(path: &Path, num_levels: usize) -> Result<(Version, ReplayReport)> {
    let raw = fs::read(path).map_err(|e| EngineError::io(path, e))?;
    let corrupt = |section, offset: usize, detail: String| {
        EngineError::corruption(path, section, offset as u64, detail)
    };
    if raw.len() < MAGIC.len() || &raw[..MAGIC.len()] != MAGIC {
        return Err(corrupt(Section::ManifestHeader, 0, "bad magic".into()));
    }
    let mut version = Version::empty(num_levels);
    let mut pos = MAGIC.len();
    let mut records = 0;
    while pos < raw.len() {
        let payload = match record_at(&raw, pos) {
            Ok(p) => p,
            Err(why) => {
                // A damaged record followed by an intact one cannot be a torn append.
                if (pos + 1..raw.len()).any(|p| record_at(&raw, p).is_ok()) {
                    return Err(corrupt(Section::ManifestRecord, pos, why.to_string()));
                }
                let report = ReplayReport {
                    records,
                    valid_len: pos as u64,
                    torn_tail_bytes: (raw.len() - pos) as u64,
                };
                return Ok((version, report));
            }
        };
        let body = pos + RECORD_HEADER_LEN;
        let end = body + payload.len();
        let edits = decode_edits(payload)
            .map_err(|d| corrupt(Section::ManifestRecord, body + d.at, d.what.to_string()))?;
        version = version.apply(&edits).map_err(|why| {
            corrupt(
                Section::ManifestRecord,
                pos,
                format!("edit does not apply: {why}"),
            )
        })?;
        records += 1;
        pos = end;
    }
    Ok((
        version,
        ReplayReport {
            records,
            valid_len: raw.len() as u64,
            torn_tail_bytes: 0,
        },
    ))
}

/// An open manifest, ready for appends.
pub struct Manifest {
    io: Arc<dyn Io>,
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn IoFile>,
    size: u64,
    rewrite_threshold: u64,
}

impl Manifest {
    /// Write a fresh manifest holding `version` (replacing any existing one atomically).
    pub fn create(
        io: Arc<dyn Io>,
        dir: &Path,
        version: &Version,
        rewrite_threshold: u64,
    ) -> Result<Self> {
        let path = dir.join(MANIFEST_NAME);
        write_snapshot(io.as_ref(), dir, version)?;
        let file = open_append(io.as_ref(), &path)?;
        let size = file.size().map_err(|e| EngineError::io(&path, e))?;
        Ok(Manifest {
            io,
            dir: dir.to_path_buf(),
            path,
            file,
            size,
            rewrite_threshold,
        })
    }

    /// Replay `dir/MANIFEST`, truncating a torn tail so later appends follow valid data.
    /// Returns `Ok(None)` if there is no manifest.
    pub fn open(
        io: Arc<dyn Io>,
        dir: &Path,
        num_levels: usize,
        rewrite_threshold: u64,
    ) -> Result<Option<(Self, Version, ReplayReport)>> {
        let path = dir.join(MANIFEST_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let (version, report) = replay(&path, num_levels)?;
        let mut file = open_append(io.as_ref(), &path)?;
        if report.torn_tail_bytes > 0 {
            log::warn!(
                "{}: dropping {} byte torn tail at offset {}",
                path.display(),
                report.torn_tail_bytes,
                report.valid_len
            );
            file.set_len(report.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| EngineError::io(&path, e))?;
        }
        let m = Manifest {
            io,
            dir: dir.to_path_buf(),
            path,
            file,
            size: report.valid_len,
            rewrite_threshold,
        };
        Ok(Some((m, version, report)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one atomic batch and fsync it. On error the file state is unknown and the
    /// caller must stop writing (the facade poisons itself).
    pub fn append(&mut self, edits: &[Edit]) -> Result<()> {
        let rec = encode_record(edits);
        self.file
            .write_all(&rec)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| EngineError::io(&self.path, e))?;
        self.size += rec.len() as u64;
        Ok(())
    }

    pub fn needs_rewrite(&self) -> bool {
        self.size > self.rewrite_threshold
    }

    /// Replace the log by a snapshot of `version` (which must be the replayed state).
    pub fn rewrite(&mut self, version: &Version) -> Result<()> {
        write_snapshot(self.io.as_ref(), &self.dir, version)?;
        self.file = open_append(self.io.as_ref(), &self.path)?;
        self.size = self
            .file
            .size()
            .map_err(|e| EngineError::io(&self.path, e))?;
        Ok(())
    }
}

fn open_append(io: &dyn Io, path: &Path) -> Result<Box<dyn IoFile>> {
    io.open_append(path, false)
        .map_err(|e| EngineError::io(path, e))
}

/// tmp file, fsync, atomic rename, fsync dir.
fn write_snapshot(io: &dyn Io, dir: &Path, version: &Version) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP_NAME);
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&encode_record(&version.snapshot_edits()));
    let mut f = io.create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| EngineError::io(&tmp, e))?;
    let path = dir.join(MANIFEST_NAME);
    io.rename(&tmp, &path)
        .map_err(|e| EngineError::io(&path, e))?;
    fsync_dir(io, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64, level: usize, lo: &str, hi: &str) -> TableMeta {
        TableMeta::for_test(id, level, lo, hi, 100)
    }

    /// Appends one flush-like record per id and returns the byte offset of each record.
    fn build(dir: &Path, ids: std::ops::Range<u64>) -> (Version, Vec<u64>) {
        let mut v = Version::empty(4);
        let mut m = Manifest::create(crate::engine::io::real(), dir, &v, u64::MAX).expect("create");
        let mut offsets = Vec::new();
        for id in ids {
            let edits = [
                Edit::AddTable(meta(id, 0, "a", "z")),
                Edit::RetireWal { segment: id },
            ];
            offsets.push(m.size());
            m.append(&edits).expect("append");
            v = v.apply(&edits).expect("apply");
        }
        (v, offsets)
    }

    #[test]
    fn replay_reproduces_appended_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v, _) = build(dir.path(), 1..20);
        let (_, got, report) = Manifest::open(crate::engine::io::real(), dir.path(), 4, u64::MAX)
            .expect("open")
            .expect("exists");
        assert_eq!(got.snapshot_edits(), v.snapshot_edits());
        assert_eq!(report.records, 20); // snapshot + 19 appends
        assert_eq!(report.torn_tail_bytes, 0);
        assert_eq!(got.retired_wal(), Some(19));
    }

    #[test]
    fn torn_tail_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, offsets) = build(dir.path(), 1..6);
        let path = dir.path().join(MANIFEST_NAME);
        let full = fs::read(&path).expect("read");
        // Cut the last record at every possible length; also pad it with zeros.
        let last = offsets[4] as usize;
        for cut in last + 1..full.len() {
            for zeros in [0usize, 64] {
                let mut bytes = full[..cut].to_vec();
                bytes.resize(cut + zeros, 0);
                fs::write(&path, &bytes).expect("write");
                let (mut m, v, report) =
                    Manifest::open(crate::engine::io::real(), dir.path(), 4, u64::MAX)
                        .expect("torn tail tolerated")
                        .expect("exists");
                assert_eq!(report.valid_len, last as u64, "cut {cut} zeros {zeros}");
                assert_eq!(v.retired_wal(), Some(4));
                // Appending after truncation must yield a clean log.
                m.append(&[Edit::RetireWal { segment: 99 }])
                    .expect("append");
                let (v, r) = replay(&path, 4).expect("replay");
                assert_eq!((v.retired_wal(), r.torn_tail_bytes), (Some(99), 0));
            }
        }
    }

    #[test]
    fn mid_file_corruption_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, offsets) = build(dir.path(), 1..6);
        let path = dir.path().join(MANIFEST_NAME);
        let full = fs::read(&path).expect("read");
        let rec = offsets[1] as usize;
        // A byte in the length, the length checksum, the payload checksum, the payload.
        for off in [rec, rec + 5, rec + 9, rec + 14] {
            let mut bytes = full.clone();
            bytes[off] ^= 0x10;
            fs::write(&path, &bytes).expect("write");
            match Manifest::open(crate::engine::io::real(), dir.path(), 4, u64::MAX) {
                Err(EngineError::Corruption {
                    path: p,
                    section: Section::ManifestRecord,
                    offset,
                    ..
                }) => {
                    assert_eq!(p, path);
                    assert!(
                        (rec as u64..offsets[2]).contains(&offset),
                        "offset {offset}"
                    );
                }
                other => panic!("flip at {off}: expected corruption, got {:?}", other.err()),
            }
        }
        let mut bytes = full.clone();
        bytes[0] ^= 1;
        fs::write(&path, &bytes).expect("write");
        assert!(replay(&path, 4).expect_err("bad magic").is_corruption());
    }

    #[test]
    fn rewrite_compacts_the_log_and_replays_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v = Version::empty(4);
        let mut m =
            Manifest::create(crate::engine::io::real(), dir.path(), &v, 2048).expect("create");
        let mut rewrites = 0;
        for id in 1..200u64 {
            let edits = if id % 2 == 0 {
                vec![
                    Edit::RemoveTables { ids: vec![id - 1] },
                    Edit::AddTable(meta(id, 1, "k", "m")),
                ]
            } else {
                let mut e = vec![Edit::AddTable(meta(id, 0, "a", "z"))];
                if id > 2 {
                    e.push(Edit::RemoveTables { ids: vec![id - 1] });
                }
                e
            };
            m.append(&edits).expect("append");
            v = v.apply(&edits).expect("apply");
            if m.needs_rewrite() {
                m.rewrite(&v).expect("rewrite");
                rewrites += 1;
                assert!(m.size() < 2048);
            }
        }
        assert!(rewrites > 0);
        assert!(!dir.path().join(MANIFEST_TMP_NAME).exists());
        let (got, _) = replay(&dir.path().join(MANIFEST_NAME), 4).expect("replay");
        assert_eq!(got.snapshot_edits(), v.snapshot_edits());
        assert_eq!(got.next_table_id(), 200);
    }
}
