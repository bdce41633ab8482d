//! The layout file, `<data_dir>/LAYOUT` (format: `ring::layout`). Blocking: called at start-up
//! before the actors run, and by the layout actor on a blocking thread.
//!
//! Invariants: a write is atomic and durable before `save` returns (temporary file, fsync,
//! rename, directory fsync), so a crash leaves the previous layout or the new one; a file
//! that exists but does not decode is an error naming it and what to do, never silently
//! replaced.

use crate::ring::layout::LayoutFileError;
use crate::ring::Layout;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "LAYOUT";

#[derive(Debug, thiserror::Error)]
pub enum LayoutStoreError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Bad {
        path: PathBuf,
        source: LayoutFileError,
    },
}

/// The layout the data directory holds, if any.
pub fn load(data_dir: &Path) -> Result<Option<Layout>, LayoutStoreError> {
    let path = data_dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => Layout::decode_file(&bytes)
            .map(Some)
            .map_err(|source| LayoutStoreError::Bad { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LayoutStoreError::Io { path, source }),
    }
}

/// Replaces the data directory's layout, durably.
pub fn save(data_dir: &Path, layout: &Layout) -> io::Result<()> {
    replace_file(data_dir, FILE, &layout.encode_file())
}

/// Replaces `data_dir/name` with `bytes` atomically and durably: a temporary file,
/// fsync, rename, directory fsync (a crash leaves the old file or the new one). Shared by
/// the small state files (`LAYOUT`, `TRANSFERS`).
pub fn replace_file(data_dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = data_dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, data_dir.join(name))?;
    File::open(data_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::PartitionConfig;
    use troupe_protocol::swim::NodeId;

    #[test]
    fn saved_layouts_load_back_and_damage_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            load(d.path()).unwrap().is_none(),
            "a fresh directory has none"
        );
        let cfg = PartitionConfig {
            partitions: 16,
            n: 3,
        };
        let l = Layout::initial([NodeId("a".into())], cfg)
            .unwrap()
            .next([NodeId("a".into()), NodeId("b".into())], cfg)
            .unwrap();
        save(d.path(), &l).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(l.clone()));
        assert!(!d.path().join("LAYOUT.tmp").exists());

        let mut bytes = fs::read(d.path().join(FILE)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(d.path().join(FILE), &bytes).unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("LAYOUT") && e.contains("checksum"), "{e}");
    }
}
