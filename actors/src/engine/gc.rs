//! Garbage collection of table files.
//!
//! Two rules, both about never deleting a file someone may still need:
//! * Start-up: with the manifest replayed, any `<id>.sst` the version does not reference is
//!   an orphan (output of a flush/compaction that crashed before its manifest edit, or a
//!   retired table whose deletion did not complete), and any `*.sst.tmp` / `MANIFEST.tmp`
//!   is an interrupted write. Nobody can reference them, so they go. Files this module
//!   does not recognise (WAL segments, operator notes) are never touched.
//! * Runtime: a table retired by compaction is deleted only when
//!   `VersionSet::obsolete_files_ready_to_delete` says no version pins it any more
//!   (the facade's `collect_garbage`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::engine::error::{EngineError, Result};
use crate::engine::io::Io;
use crate::engine::manifest::{MANIFEST_NAME, MANIFEST_TMP_NAME};
use crate::engine::sstable::{fsync_dir, parse_table_file_name};
use crate::engine::version::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Table(u64),
    TempTable,
    Manifest,
    ManifestTemp,
    /// Not ours; left alone.
    Foreign,
}

pub fn classify(name: &str) -> FileKind {
    if let Some(id) = parse_table_file_name(name) {
        return FileKind::Table(id);
    }
    if name == MANIFEST_NAME {
        return FileKind::Manifest;
    }
    if name == MANIFEST_TMP_NAME {
        return FileKind::ManifestTemp;
    }
    if name
        .strip_suffix(".sst.tmp")
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    {
        return FileKind::TempTable;
    }
    FileKind::Foreign
}

/// Files in `dir` that `version` does not reference and that are ours to delete.
pub fn find_orphans(dir: &Path, version: &Version) -> Result<Vec<PathBuf>> {
    let mut orphans = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let orphan = match classify(&name) {
            FileKind::Table(id) => !version.contains(id),
            FileKind::TempTable | FileKind::ManifestTemp => true,
            FileKind::Manifest | FileKind::Foreign => false,
        };
        if orphan {
            orphans.push(entry.path());
        }
    }
    orphans.sort();
    Ok(orphans)
}

/// Table files present in `dir` (used to refuse starting without a manifest).
pub fn table_files(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        if let Some(FileKind::Table(id)) = entry.file_name().to_str().map(classify) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Remove `paths` (already-missing files are fine) and fsync `dir` once.
pub fn delete_files(io: &dyn Io, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for p in paths {
        match io.remove_file(p) {
            Ok(()) => log::debug!("deleted {}", p.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(p, e)),
        }
    }
    fsync_dir(io, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sstable::{table_file_name, TableMeta};
    use crate::engine::version::Edit;

    #[test]
    fn orphans_are_unreferenced_tables_and_temp_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            table_file_name(1),
            table_file_name(2),
            "0000000000000003.sst.tmp".into(),
            MANIFEST_NAME.into(),
            MANIFEST_TMP_NAME.into(),
            "wal-000001.log".into(),
            "notes.sst.tmp".into(),
        ] {
            fs::write(dir.path().join(name), b"x").expect("write");
        }
        let v = Version::empty(4)
            .apply(&[Edit::AddTable(TableMeta::for_test(1, 0, "a", "b", 1))])
            .expect("apply");
        let orphans = find_orphans(dir.path(), &v).expect("scan");
        let names: Vec<String> = orphans
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            [
                table_file_name(2),
                "0000000000000003.sst.tmp".into(),
                MANIFEST_TMP_NAME.into()
            ]
        );
        let io = crate::engine::io::RealIo;
        delete_files(&io, dir.path(), &orphans).expect("delete");
        delete_files(&io, dir.path(), &orphans).expect("idempotent");
        assert!(dir.path().join("wal-000001.log").exists());
        assert!(dir.path().join(table_file_name(1)).exists());
        assert_eq!(table_files(dir.path()).expect("list"), [1]);
    }
}
