//! `troupe repair-wal`: the way out when start-up refuses a damaged WAL segment. Takes the
//! data directory's lock (so the node must be stopped), keeps a copy of the segment, cuts it
//! at the offset the error named, and says what was dropped. The work itself is
//! `troupe_actors::memtable::wal::repair`.

use crate::node::lock_data_dir;
use anyhow::Context as _;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use troupe_actors::memtable::wal::{self, repair};
use troupe_actors::memtable::wal_dir;

#[derive(clap::Args)]
pub struct RepairWalArgs {
    /// The stopped node's data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The segment: its number (e.g. 12) or its file (DIR/wal/00000000000000000012.wal).
    #[arg(long)]
    pub segment: String,
    /// Keep the bytes before this offset (the one the start-up error named); every record
    /// from it on in this segment is dropped. 0 empties the segment (fresh header).
    #[arg(long)]
    pub truncate_at: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads `--segment` as a number or as a segment file inside `wal_dir`.
fn segment_number(arg: &str, wal_dir: &Path) -> anyhow::Result<u64> {
    if let Ok(n) = arg.parse::<u64>() {
        return Ok(n);
    }
    let path = Path::new(arg);
    let n = path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_suffix(".wal"))
        .and_then(|s| s.parse::<u64>().ok())
        .with_context(|| {
            format!("--segment {arg:?} is neither a segment number nor a <number>.wal file")
        })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let same = match (parent.canonicalize(), wal_dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        anyhow::ensure!(
            same,
            "{arg} is not in {} (the WAL of --data-dir); pass the data directory it belongs to",
            wal_dir.display()
        );
    }
    Ok(n)
}

pub fn run(args: RepairWalArgs) -> anyhow::Result<()> {
    let wal_dir = wal_dir(&args.data_dir);
    anyhow::ensure!(
        wal_dir.is_dir(),
        "{} is not a directory: is --data-dir the node's data directory?",
        wal_dir.display()
    );
    let n = segment_number(&args.segment, &wal_dir)?;
    let segment = wal::segment_path(&wal_dir, n);
    anyhow::ensure!(
        segment.is_file(),
        "there is no WAL segment {n} ({} does not exist)",
        segment.display()
    );
    // Held until we return: a node cannot start on this directory meanwhile.
    let _lock = lock_data_dir(&args.data_dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = repair::truncate_segment(&wal_dir, n, args.truncate_at, now)?;
    let plan = &report.plan;
    if args.json {
        println!(
            "{}",
            json!({
                "segment": report.segment.display().to_string(),
                "copy": report.copy.display().to_string(),
                "truncated_at": report.truncated_at,
                "new_len": plan.new_len,
                "fresh_header": plan.fresh_header,
                "bytes_dropped": plan.bytes_dropped,
                "records_dropped": plan.records_dropped,
                "records_kept": plan.records_kept,
            })
        );
    } else {
        println!(
            "kept a copy of {} at {}",
            report.segment.display(),
            report.copy.display()
        );
        let how = if plan.fresh_header {
            " and wrote a fresh segment header"
        } else {
            ""
        };
        println!(
            "cut it at offset {}{how}: dropped {} bytes holding {} record(s) that still pass \
             their checksums; kept {} record(s)",
            report.truncated_at, plan.bytes_dropped, plan.records_dropped, plan.records_kept
        );
        println!(
            "start the node again; the dropped writes are restored only from replicas (or \
             from the copy, by hand)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actors::memtable::wal::{Durability, WalError};
    use troupe_actors::memtable::MemtableConfig;
    use troupe_actors::stats::Registry;
    use troupe_actors::storage::{self, EngineConfig, OpenError};

    #[test]
    fn a_segment_is_a_number_or_a_file_in_the_wal_directory() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        assert_eq!(segment_number("12", &wal).unwrap(), 12);
        let file = wal.join("00000000000000000007.wal");
        assert_eq!(segment_number(&file.to_string_lossy(), &wal).unwrap(), 7);
        assert_eq!(segment_number("00000000000000000009.wal", &wal).unwrap(), 9);
        let other = dir.path().join("elsewhere");
        std::fs::create_dir_all(&other).unwrap();
        let err = segment_number(&other.join("3.wal").to_string_lossy(), &wal).unwrap_err();
        assert!(err.to_string().contains("is not in"), "{err}");
        assert!(segment_number("nope", &wal).is_err());
    }

    fn config(dir: &Path) -> MemtableConfig {
        MemtableConfig {
            data_dir: dir.to_path_buf(),
            durability: Durability::Sync,
            wal_queue_jobs: 1024,
            max_queued_bytes: 1 << 20,
            mailbox: 1024,
            memtable_bytes: 1 << 20,
            wal_bytes: 1 << 20,
            max_sealed: 2,
            max_stalled_writes: 1024,
            max_disk_reads: 8,
            read_workers: 2,
        }
    }

    fn engine() -> EngineConfig {
        EngineConfig {
            block_cache_bytes: 16 << 10,
            compaction_bytes_per_sec: 0,
            l0_compaction_trigger: 2,
            l0_stop_tables: 6,
            level1_bytes: 8 << 10,
            target_table_bytes: 4 << 10,
        }
    }

    /// Segment `n` holding `seqs`, one batch each, and the records' offsets.
    fn segment(n: u64, seqs: std::ops::Range<u64>) -> (Vec<u8>, Vec<usize>) {
        let batches: Vec<_> = seqs
            .map(|seq| {
                vec![wal::WalRecord {
                    seq,
                    key: format!("key{seq}").into_bytes(),
                    value: Some(b"acknowledged".to_vec()),
                }]
            })
            .collect();
        let out = wal::format::encode_segment(n, 7, &batches);
        let offsets = wal::format::record_offsets(&out);
        (out, offsets)
    }

    /// Issue 8, end to end: a flipped length bit in an older WAL segment stops storage from
    /// opening (instead of truncating acknowledged writes); the command the error names
    /// keeps a copy, cuts the segment, and storage opens with every other write.
    #[test]
    fn storage_refuses_a_damaged_wal_until_repair_wal_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = wal_dir(dir.path());
        std::fs::create_dir_all(&wal_dir).unwrap();
        let (mut first, offsets) = segment(1, 1..11);
        let damaged_at = offsets[6];
        first[damaged_at + 3] ^= 0x80;
        let seg1 = wal::segment_path(&wal_dir, 1);
        std::fs::write(&seg1, &first).unwrap();
        std::fs::write(wal::segment_path(&wal_dir, 2), segment(2, 11..16).0).unwrap();

        let open = || storage::open(config(dir.path()), &engine(), &Registry::default());
        let err = match open() {
            Ok(_) => panic!("storage opened on a damaged WAL"),
            Err(e) => e,
        };
        let msg = err.to_string();
        let (segment_no, offset) = match err {
            OpenError::Wal(WalError::Corrupt {
                segment, offset, ..
            }) => (segment, offset),
            other => panic!("expected WAL corruption, got {other}"),
        };
        assert_eq!((segment_no, offset as usize), (1, damaged_at));
        assert!(msg.contains("troupe repair-wal --data-dir"), "{msg}");
        assert_eq!(
            std::fs::read(&seg1).unwrap(),
            first,
            "start-up changed the file"
        );

        run(RepairWalArgs {
            data_dir: dir.path().to_path_buf(),
            segment: seg1.to_string_lossy().into_owned(),
            truncate_at: offset,
            json: false,
        })
        .unwrap();
        let copies: Vec<_> = std::fs::read_dir(&wal_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".wal.bad-"))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(std::fs::read(&copies[0]).unwrap(), first);

        let opened = match open() {
            Ok(o) => o,
            Err(e) => panic!("storage still refuses after the repair: {e}"),
        };
        // Records 1..=6 of segment 1 and all 5 of segment 2; 7..=10 were cut.
        assert_eq!(opened.report.records, 11);
        assert_eq!(opened.report.torn_bytes, 0);
    }

    #[test]
    fn repair_refuses_while_the_node_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(
            wal::segment_path(&wal, 1),
            wal::format::segment_header(1, 7),
        )
        .unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let args = |at| RepairWalArgs {
            data_dir: dir.path().to_path_buf(),
            segment: "1".into(),
            truncate_at: at,
            json: true,
        };
        let err = run(args(24)).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        run(args(24)).unwrap();
    }
}
