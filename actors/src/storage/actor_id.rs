//! The replica's actor id: a random 64-bit number created once with the data directory and
//! kept in `<data_dir>/ACTOR_ID`. Every version this replica issues carries it.
//!
//! Invariants:
//! - It never changes for a data directory, and a wiped directory gets a new one, so a dot
//!   (actor id, counter) is never issued twice for different writes (riak_kv#679: a node
//!   that lost its data and reused its id would issue counters already seen elsewhere,
//!   and its new writes would be silently dominated).
//! - The file is durable before the id is used: written to a temporary file, fsynced,
//!   renamed into place, and the directory fsynced.
//! - A file that exists but does not parse is an error naming it, never silently
//!   replaced (that would be a wiped identity with the data still there).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "ACTOR_ID";

#[derive(Debug, thiserror::Error)]
pub enum ActorIdError {
    #[error("cannot read or create {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} does not hold an actor id (16 hex digits): {found:?}; restore it from a backup of this data directory, or remove the whole directory to start this replica afresh")]
    Garbled { path: PathBuf, found: String },
}

/// Reads the actor id of `data_dir`, creating it (durably) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<u64, ActorIdError> {
    let path = data_dir.join(FILE);
    let io = |source| ActorIdError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let t = text.trim();
            return match u64::from_str_radix(t, 16) {
                Ok(id) if t.len() == 16 => Ok(id),
                _ => Err(ActorIdError::Garbled {
                    path,
                    found: t.chars().take(40).collect(),
                }),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let id: u64 = rand::random();
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{id:016x}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(io)?;
    log::info!(
        "new replica: actor id {id:016x} written to {}",
        path.display()
    );
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_kept_and_a_new_directory_gets_another() {
        let a = tempfile::tempdir().unwrap();
        let id = load_or_create(a.path()).unwrap();
        assert_eq!(
            load_or_create(a.path()).unwrap(),
            id,
            "kept across restarts"
        );
        assert!(!a.path().join("ACTOR_ID.tmp").exists());
        let b = tempfile::tempdir().unwrap();
        assert_ne!(
            load_or_create(b.path()).unwrap(),
            id,
            "a wiped replica is new"
        );
    }

    #[test]
    fn a_garbled_file_is_an_error_not_a_new_identity() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(FILE), "not hex\n").unwrap();
        let e = load_or_create(d.path()).unwrap_err();
        assert!(e.to_string().contains("ACTOR_ID"), "{e}");
        assert_eq!(
            fs::read_to_string(d.path().join(FILE)).unwrap(),
            "not hex\n"
        );
    }
}
