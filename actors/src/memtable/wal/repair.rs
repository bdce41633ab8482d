//! Offline repair of a damaged WAL segment (`troupe repair-wal`): keeps a copy of the
//! segment, then cuts it at an offset the operator chose (normally the one a
//! [`WalError::Corrupt`] named). The node must be stopped: the caller holds the data
//! directory's lock.
//!
//! A cut may fall at a batch boundary or at a record boundary inside a batch; in the latter
//! case the batch's header is rewritten with the shorter length (so the records before the
//! damage in that batch are kept).
//!
//! Invariants: nothing is changed before the copy is written and synced (file and directory);
//! the cut is refused unless everything before it is valid, so the repaired segment always
//! parses, as a last segment or as an older one; the copy's name does not end in `.wal`, so
//! recovery never reads it.

use super::format::{self, Damage, BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{fsync_dir, segment_path, WalError};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The exact command line that cuts `segment_file` (`<data_dir>/wal/<n>.wal`) at `offset`.
pub fn command_line(segment_file: &Path, segment: u64, offset: u64) -> String {
    let data_dir = segment_file
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    format!(
        "troupe repair-wal --data-dir {} --segment {segment} --truncate-at {offset}",
        shell_quote(&data_dir.to_string_lossy())
    )
}

/// Quotes `s` for a POSIX shell when it holds anything but plainly safe characters.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Why a repair was refused or failed. Each variant says whether anything changed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Nothing was changed (unless the copy was already written: see its path).
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Nothing was changed.
    #[error("offset {offset} is past the end of {} ({len} bytes); pass an offset inside the file", path.display())]
    PastEnd {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// Nothing was changed: cutting at the requested offset would leave damage behind.
    #[error(
        "{} is damaged before offset {offset} too: at offset {at}, {why}; run again with \
         --truncate-at {at}",
        path.display()
    )]
    DamageBefore {
        path: PathBuf,
        offset: u64,
        at: u64,
        why: Damage,
    },
    /// Nothing was changed.
    #[error("{0}; or pass --truncate-at 0 to empty the segment (a copy is kept)")]
    Wal(WalError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RepairError + '_ {
    move |source| RepairError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What cutting a segment at an offset does. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    /// The segment's length afterwards.
    pub new_len: u64,
    /// The offset was inside the segment header: the segment becomes an empty one with a
    /// fresh header.
    pub fresh_header: bool,
    /// The cut falls inside a batch: its header (at this offset) becomes this one, which
    /// ends the batch at the cut.
    pub batch_header: Option<(u64, [u8; BATCH_HEADER_LEN])>,
    pub records_kept: usize,
    /// Records after the cut that still pass their checksums (lost with the cut).
    pub records_dropped: usize,
    pub bytes_dropped: u64,
}

/// Plans cutting segment `segment` (file `path`, bytes `data`) at `offset`. Refuses unless
/// everything before `offset` is a valid segment header and whole valid batches and records.
pub fn plan(
    path: &Path,
    segment: u64,
    data: &[u8],
    offset: u64,
) -> Result<RepairPlan, RepairError> {
    let len = data.len() as u64;
    if offset > len {
        return Err(RepairError::PastEnd {
            path: path.to_path_buf(),
            offset,
            len,
        });
    }
    let cut = offset as usize;
    let records_dropped = format::salvageable_records(data, cut);
    if cut < SEGMENT_HEADER_LEN {
        return Ok(RepairPlan {
            new_len: SEGMENT_HEADER_LEN as u64,
            fresh_header: true,
            batch_header: None,
            records_kept: 0,
            records_dropped,
            bytes_dropped: len - offset,
        });
    }
    // Parsed as an older segment: no torn tail allowed, so the result is valid either way.
    let (kept, batch_header) = format::cut_segment(data, cut);
    match format::parse_segment(path, segment, &kept, false) {
        Ok(seg) => Ok(RepairPlan {
            new_len: offset,
            fresh_header: false,
            batch_header: batch_header.map(|(at, h)| (at as u64, h)),
            records_kept: seg.records.len(),
            records_dropped,
            bytes_dropped: len - offset,
        }),
        Err(WalError::Corrupt {
            offset: at, why, ..
        }) => Err(RepairError::DamageBefore {
            path: path.to_path_buf(),
            offset,
            at,
            why,
        }),
        Err(e) => Err(RepairError::Wal(e)),
    }
}

/// What [`truncate_segment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub segment: PathBuf,
    /// The untouched copy of the segment as it was.
    pub copy: PathBuf,
    pub truncated_at: u64,
    pub plan: RepairPlan,
}

/// Copies segment `segment` of `wal_dir` aside (`<file>.bad-<unix_time>`, synced with its
/// directory entry), then cuts it at `offset` (see [`plan`]) and syncs it and the
/// directory. Blocking. The caller must hold the data directory's lock (node stopped).
pub fn truncate_segment(
    wal_dir: &Path,
    segment: u64,
    offset: u64,
    unix_time: u64,
) -> Result<RepairReport, RepairError> {
    let path = segment_path(wal_dir, segment);
    let data = fs::read(&path).map_err(io_err(&path))?;
    let plan = plan(&path, segment, &data, offset)?;
    let copy = write_copy(&path, &data, unix_time)?;
    fsync_dir(&crate::engine::io::RealIo, wal_dir).map_err(|e| match e {
        WalError::Io { path, source } => RepairError::Io { path, source },
        other => RepairError::Wal(other),
    })?;
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if plan.fresh_header {
        f.set_len(0).map_err(io_err(&path))?;
        f.write_all(&format::segment_header(segment, format::new_salt()))
            .map_err(io_err(&path))?;
    } else {
        f.set_len(plan.new_len).map_err(io_err(&path))?;
        if let Some((at, header)) = &plan.batch_header {
            f.write_all_at(header, *at).map_err(io_err(&path))?;
        }
    }
    f.sync_all().map_err(io_err(&path))?;
    // The length change is file metadata (synced above); the directory sync is belt and
    // braces for file systems that tie the two together.
    fsync_dir(&crate::engine::io::RealIo, wal_dir).map_err(|e| match e {
        WalError::Io { path, source } => RepairError::Io { path, source },
        other => RepairError::Wal(other),
    })?;
    Ok(RepairReport {
        segment: path,
        copy,
        truncated_at: offset,
        plan,
    })
}

/// Writes `data` to a new `<path>.bad-<unix_time>[-k]` beside `path` and syncs it.
fn write_copy(path: &Path, data: &[u8], unix_time: u64) -> Result<PathBuf, RepairError> {
    let base = path.as_os_str().to_string_lossy().into_owned();
    for k in 0..1000u32 {
        let copy = PathBuf::from(if k == 0 {
            format!("{base}.bad-{unix_time}")
        } else {
            format!("{base}.bad-{unix_time}-{k}")
        });
        let mut f = match OpenOptions::new().write(true).create_new(true).open(&copy) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&copy)(e)),
        };
        f.write_all(data).map_err(io_err(&copy))?;
        f.sync_all().map_err(io_err(&copy))?;
        return Ok(copy);
    }
    Err(io_err(path)(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "a thousand copies of this segment exist already; move some aside",
    )))
}

#[cfg(test)]
mod tests {
    use super::super::{recover, Recovered};
    use super::*;
    use format::{encode_segment, record_offsets, WalRecord};

    /// Segment `n` with `count` records from `first_seq` on, one batch each.
    fn segment(n: u64, count: u64, first_seq: u64) -> Vec<u8> {
        let batches: Vec<_> = (first_seq..first_seq + count)
            .map(|s| {
                vec![WalRecord {
                    seq: s,
                    key: format!("k{s}").into_bytes(),
                    value: Some(b"value".to_vec()),
                }]
            })
            .collect();
        encode_segment(n, 0xa5a5, &batches)
    }

    /// Bytes of one batch of one record.
    fn batch_len() -> usize {
        segment(1, 1, 1).len() - SEGMENT_HEADER_LEN
    }

    #[test]
    fn the_command_line_names_the_data_dir_and_quotes_it() {
        assert_eq!(
            command_line(
                Path::new("/var/lib/troupe/wal/00000000000000000003.wal"),
                3,
                40
            ),
            "troupe repair-wal --data-dir /var/lib/troupe --segment 3 --truncate-at 40"
        );
        assert_eq!(
            command_line(Path::new("/my data/it's/wal/1.wal"), 1, 0),
            r"troupe repair-wal --data-dir '/my data/it'\''s' --segment 1 --truncate-at 0"
        );
        assert_eq!(
            command_line(Path::new("wal/1.wal"), 1, 0),
            "troupe repair-wal --data-dir . --segment 1 --truncate-at 0"
        );
    }

    #[test]
    fn a_cut_is_refused_unless_everything_before_it_is_valid() {
        let p = Path::new("/d/wal/1.wal");
        let data = segment(1, 4, 1);
        let b = batch_len();
        let at = SEGMENT_HEADER_LEN + 2 * b;
        let ok = plan(p, 1, &data, at as u64).unwrap();
        assert_eq!((ok.records_kept, ok.records_dropped), (2, 2));
        assert_eq!(ok.bytes_dropped as usize, 2 * b);
        assert_eq!(ok.batch_header, None, "a batch boundary");
        // At the record inside that batch: the batch is kept, empty.
        let ok = plan(p, 1, &data, (at + BATCH_HEADER_LEN) as u64).unwrap();
        assert_eq!((ok.records_kept, ok.records_dropped), (2, 2));
        assert_eq!(ok.batch_header.map(|(o, _)| o as usize), Some(at));
        // Mid-record: cut at the record's start instead.
        let record = record_offsets(&data)[2];
        match plan(p, 1, &data, record as u64 + 5) {
            Err(RepairError::DamageBefore { at: a, .. }) => assert_eq!(a as usize, record),
            other => panic!("expected DamageBefore, got {other:?}"),
        }
        // Mid-batch-header: cut at the batch's start instead.
        match plan(p, 1, &data, at as u64 + 5) {
            Err(RepairError::DamageBefore { at: a, .. }) => assert_eq!(a as usize, at),
            other => panic!("expected DamageBefore, got {other:?}"),
        }
        assert!(matches!(
            plan(p, 1, &data, data.len() as u64 + 1),
            Err(RepairError::PastEnd { .. })
        ));
        let fresh = plan(p, 1, &data, 0).unwrap();
        assert!(fresh.fresh_header);
        assert_eq!((fresh.records_kept, fresh.records_dropped), (0, 4));
    }

    /// The story an operator lives through: a flipped length bit in an older segment stops
    /// the node with a message naming the command; the command keeps a copy and cuts the
    /// segment; the node then starts with every record but the cut ones.
    #[test]
    fn a_corrupt_wal_refuses_then_repair_wal_lets_recovery_start() {
        let data_dir = tempfile::tempdir().unwrap();
        let wal_dir = data_dir.path().join("wal");
        fs::create_dir_all(&wal_dir).unwrap();
        let b = batch_len();
        let mut first = segment(1, 5, 1);
        let damaged_at = record_offsets(&first)[3];
        first[damaged_at + 3] ^= 0x80;
        fs::write(segment_path(&wal_dir, 1), &first).unwrap();
        fs::write(segment_path(&wal_dir, 2), segment(2, 3, 6)).unwrap();

        let err = recover(&crate::engine::io::RealIo, &wal_dir).unwrap_err();
        let msg = err.to_string();
        let WalError::Corrupt {
            segment, offset, ..
        } = err
        else {
            panic!("expected corruption, got {msg}");
        };
        assert_eq!((segment, offset as usize), (1, damaged_at));
        let cmd = format!(
            "troupe repair-wal --data-dir {} --segment 1 --truncate-at {damaged_at}",
            data_dir.path().display()
        );
        assert!(msg.contains(&cmd), "{msg}");
        assert!(msg.contains("00000000000000000001.wal"), "{msg}");
        assert_eq!(fs::read(segment_path(&wal_dir, 1)).unwrap(), first);

        let report = truncate_segment(&wal_dir, 1, offset, 1_700_000_000).unwrap();
        assert_eq!(
            report.copy,
            wal_dir.join("00000000000000000001.wal.bad-1700000000")
        );
        assert_eq!(
            fs::read(&report.copy).unwrap(),
            first,
            "the copy is the original"
        );
        assert_eq!(report.plan.records_kept, 3);
        assert_eq!(
            report.plan.records_dropped, 1,
            "the damaged record is not counted"
        );
        // The damaged record's batch is kept, empty.
        assert_eq!(report.plan.bytes_dropped as usize, 2 * b - BATCH_HEADER_LEN);

        let Recovered {
            records, segments, ..
        } = recover(&crate::engine::io::RealIo, &wal_dir).unwrap();
        assert_eq!(segments, vec![1, 2], "the copy is not a segment");
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 6, 7, 8]);
        // A second copy the same second gets its own name.
        let again = truncate_segment(&wal_dir, 1, offset, 1_700_000_000).unwrap();
        assert_eq!(
            again.copy,
            wal_dir.join("00000000000000000001.wal.bad-1700000000-1")
        );
    }

    #[test]
    fn a_damaged_segment_header_is_repaired_with_a_fresh_one() {
        let data_dir = tempfile::tempdir().unwrap();
        let wal_dir = data_dir.path().join("wal");
        fs::create_dir_all(&wal_dir).unwrap();
        let mut first = segment(1, 2, 1);
        first[3] ^= 1;
        fs::write(segment_path(&wal_dir, 1), &first).unwrap();
        fs::write(segment_path(&wal_dir, 2), segment(2, 1, 3)).unwrap();
        let err = recover(&crate::engine::io::RealIo, &wal_dir).unwrap_err();
        assert!(
            err.to_string().contains("--segment 1 --truncate-at 0"),
            "{err}"
        );
        let report = truncate_segment(&wal_dir, 1, 0, 5).unwrap();
        assert!(report.plan.fresh_header);
        let rec = recover(&crate::engine::io::RealIo, &wal_dir).unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.records[0].seq, 3);
    }
}
