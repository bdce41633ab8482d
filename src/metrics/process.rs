//! Figures read from the file system at scrape time, on the blocking pool: the standard
//! Prometheus process collector's families (from `/proc/self`, Linux only; elsewhere they
//! are left out) and the bytes the WAL and the tables take on disk.
//!
//! The parsers are pure functions of the files' text, unit-tested below.

use std::path::Path;

/// The process collector's figures (names as Prometheus' own client libraries use).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub start_time_seconds: f64,
}

/// Bytes of the files in the data directory's `wal` and `tables` directories.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiskBytes {
    pub wal: u64,
    pub data: u64,
}

/// `/proc/self/stat` after the `(comm)` field, split on spaces: field 3 of the man page is
/// index 0 here.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // comm may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// CPU seconds (utime + stime) and start time in ticks after boot, from `/proc/self/stat`.
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let f = stat_fields(stat)?;
    // Fields 14, 15 (utime, stime) and 22 (starttime) of proc(5); index = field - 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start: u64 = f.get(19)?.parse().ok()?;
    Some((utime + stime, start))
}

/// Boot time in seconds since the epoch: the `btime` line of `/proc/stat`.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident pages: the second field of `/proc/self/statm`.
pub fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// Reads this process's figures; `None` where `/proc` is not there.
pub fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (cpu_ticks, start_ticks) = parse_stat(&stat)?;
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let pages = parse_statm_resident(&std::fs::read_to_string("/proc/self/statm").ok()?)?;
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = u64::try_from(page).unwrap_or(4096);
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / ticks,
        resident_bytes: pages * page,
        open_fds,
        start_time_seconds: btime as f64 + start_ticks as f64 / ticks,
    })
}

/// Sum of the sizes of the regular files directly in `dir` (0 if it cannot be listed; a
/// file deleted while listing is skipped).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The WAL's and the tables' bytes for the node whose tables live in `tables_dir`.
pub fn read_disk(tables_dir: &Path) -> DiskBytes {
    let wal = tables_dir
        .parent()
        .map(|d| dir_bytes(&troupe_actors::memtable::wal_dir(d)))
        .unwrap_or(0);
    DiskBytes {
        wal,
        data: dir_bytes(tables_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_name_with_spaces() {
        let stat = "4242 (troupe (a b)) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 123456 1000 200";
        assert_eq!(parse_stat(stat), Some((300, 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn btime_and_resident_pages_parse() {
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_statm_resident("5000 1234 300 1 0 900 0\n"),
            Some(1234)
        );
    }

    #[test]
    fn this_process_reads_sensibly_on_linux() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let p = read_process().expect("proc is readable");
        assert!(p.resident_bytes > 0 && p.open_fds > 0, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        assert!(
            p.start_time_seconds > 0.0 && p.start_time_seconds <= now + 1.0,
            "{p:?}"
        );
    }

    #[test]
    fn disk_bytes_sum_the_wal_and_table_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, tables) = (dir.path().join("wal"), dir.path().join("tables"));
        std::fs::create_dir_all(&wal).expect("mkdir");
        std::fs::create_dir_all(&tables).expect("mkdir");
        std::fs::write(wal.join("wal-1.log"), [0u8; 100]).expect("write");
        std::fs::write(wal.join("wal-2.log"), [0u8; 20]).expect("write");
        std::fs::write(tables.join("1.sst"), [0u8; 7]).expect("write");
        assert_eq!(read_disk(&tables), DiskBytes { wal: 120, data: 7 });
    }
}
