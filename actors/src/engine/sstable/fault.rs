//! Test-only fault injection for table writes: makes `TableWriter` see an I/O error (a real
//! errno such as ENOSPC) on its data writes or its fsync, for tables of chosen levels in one
//! directory, so flush (level 0) and compaction (levels >= 1) failures can be staged apart.
//!
//! Faults are keyed by directory, so tests running in parallel threads do not see each
//! other's; a fault outlives a reopen of the same directory (a "restart" with the disk still
//! full) and ends when its [`FaultGuard`] drops.

use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// Which writer step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultOp {
    /// Writing table bytes (the file is left partially written).
    Write,
    /// The fsync of the complete temp file.
    Sync,
}

struct Fault {
    dir: PathBuf,
    levels: RangeInclusive<usize>,
    op: FaultOp,
    errno: i32,
    /// Fail this many more times, then pass; `None` = until the guard drops.
    remaining: Option<u64>,
    hits: Arc<AtomicU64>,
    /// The hit count again, for tests that wait on it (`FaultGuard::hit`).
    hit_tx: tokio::sync::watch::Sender<u64>,
    id: u64,
}

static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn faults() -> std::sync::MutexGuard<'static, Vec<Fault>> {
    FAULTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes its fault when dropped; counts how often it fired.
pub(crate) struct FaultGuard {
    id: u64,
    hits: Arc<AtomicU64>,
    hit_rx: tokio::sync::watch::Receiver<u64>,
}

impl FaultGuard {
    /// How many writer calls this fault has failed so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(SeqCst)
    }

    /// Resolves once the fault has fired `n` times.
    pub(crate) async fn hit(&self, n: u64) {
        let mut rx = self.hit_rx.clone();
        rx.wait_for(|&h| h >= n)
            .await
            .expect("BUG: the sender lives in the registry while the guard lives");
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        faults().retain(|f| f.id != self.id);
    }
}

/// From now on, `op` fails with `errno` for tables of `levels` written in `dir` (`times`
/// times, or until the guard drops).
pub(crate) fn inject(
    dir: &Path,
    levels: RangeInclusive<usize>,
    op: FaultOp,
    errno: i32,
    times: Option<u64>,
) -> FaultGuard {
    let id = NEXT_ID.fetch_add(1, SeqCst);
    let hits = Arc::new(AtomicU64::new(0));
    let (hit_tx, hit_rx) = tokio::sync::watch::channel(0);
    faults().push(Fault {
        dir: dir.to_path_buf(),
        levels,
        op,
        errno,
        remaining: times,
        hits: hits.clone(),
        hit_tx,
        id,
    });
    FaultGuard { id, hits, hit_rx }
}

/// Called by the writer before `op` on `path` (a table of `level`).
pub(crate) fn check(path: &Path, level: usize, op: FaultOp) -> io::Result<()> {
    let mut faults = faults();
    let hit = faults.iter_mut().find(|f| {
        f.op == op
            && f.levels.contains(&level)
            && path.parent() == Some(f.dir.as_path())
            && f.remaining != Some(0)
    });
    match hit {
        Some(f) => {
            if let Some(n) = &mut f.remaining {
                *n -= 1;
            }
            let n = f.hits.fetch_add(1, SeqCst) + 1;
            f.hit_tx.send_replace(n);
            Err(io::Error::from_raw_os_error(f.errno))
        }
        None => Ok(()),
    }
}
