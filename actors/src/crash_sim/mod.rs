//! Power-loss crash simulation for the storage engine (tests only), in the style of ALICE
//! and CrashMonkey: record, then replay up to a cut.
//!
//! 1. [`RecordingIo`] implements [`crate::engine::io::Io`]: every mutating operation really
//!    happens on a real directory (so the storage runs and reads normally) and is appended,
//!    with its bytes, to one totally ordered op log. Tests add their own [`Op::Mark`]s to the
//!    same log (a write submitted, a write acknowledged).
//! 2. [`CrashModel`] replays `ops[..k]` into durable and volatile state. A file's bytes are
//!    durable up to its last `sync_data`/`sync_all`; a directory's entries (file creation,
//!    `mkdir`, rename, remove) up to its last directory fsync. At the cut, each file keeps
//!    its synced bytes plus nothing, all, or a random prefix of its later changes
//!    (optionally followed by zeros: the size reached the disk, the data did not); each
//!    directory keeps its durable entries plus a random prefix of its later entry
//!    operations. A directory whose own entry did not survive takes its subtree with it.
//! 3. [`CrashModel::materialise`] writes that state into a fresh directory, on which the
//!    test runs the real recovery code.
//!
//! With [`CrashModel::reorder_pages`] a file's unsynced appends may also reach the disk
//! sector by sector in any order (zeroed sectors before intact ones); the power-loss tests
//! run with it on and off.
//!
//! [`RecordingIo::adopt`] starts a log from an existing tree (taken as durable), so a crash
//! during recovery can be simulated the same way. Not modelled: renames across directories
//! (the engine does none).

mod model;
mod recorder;

pub use model::CrashModel;
pub use recorder::{Op, RecordingIo};

/// Seed for this run: `$var` if set (to replay a failure), else a fresh one.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{var}={s:?} is not a u64 seed")),
        Err(_) => rand::random(),
    }
}
