//! The storage's mutating file-system calls, behind one small trait.
//!
//! The WAL, the SSTable writer, the MANIFEST and file deletion (GC, orphan cleanup, retired
//! WAL segments) create, append, fsync, truncate, rename and remove files only through
//! [`Io`]; reads go to `std::fs` directly. [`RealIo`] is plain `std::fs` (one virtual call
//! per operation). The crash simulator (`crate::crash_sim`, tests only) implements it too:
//! it performs every operation on a real directory and records it, so that a power cut at
//! any point can be reconstructed and recovered from.
//!
//! Invariant the trait makes checkable: anything the engine relies on after a power cut
//! reaches the disk through an explicit `sync_data`/`sync_all` of the file, and every
//! directory entry (create, rename, remove, `mkdir`) through a `sync_dir` of its parent.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A file opened for writing. `Write` writes are sequential (append, or from the start of a
/// file opened with [`Io::open_write`]); [`IoFile::write_at`] writes at an offset.
pub trait IoFile: Write + Send {
    /// `pwrite` of all of `buf` at `offset`, leaving the file position alone. Only for a file
    /// opened with [`Io::open_write`] (on an append-mode file Linux appends instead).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// One `pwritev2(RWF_NOWAIT)` of `bufs` at `offset`: a write the kernel promises not to
    /// block on (no waiting for page-cache locks, memory, or dirty-page throttling), safe on
    /// an event loop. Returns how much it wrote (possibly less than all); `WouldBlock` when
    /// it would have blocked this time; `Unsupported` when the file system never takes such
    /// writes for buffered files (ext4 and tmpfs on Linux 6.18; XFS takes them). The default
    /// is `Unsupported`.
    fn write_at_nowait(&mut self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let _ = (bufs, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// `fdatasync`: the file's data and size are durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// `fsync`: as `sync_data`, plus the rest of the inode's metadata.
    fn sync_all(&mut self) -> io::Result<()>;
    /// `ftruncate`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Current size in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// The mutating file-system operations of the storage engine.
pub trait Io: Send + Sync + Debug {
    /// Creates `path` (truncating an existing file) for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Opens `path` for appending; creates it if missing and `create` is set.
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>>;
    /// Opens `path` for writing at offsets (position 0, not truncated, not append mode);
    /// creates it if missing and `create` is set.
    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory (its parent must exist).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs a directory: creations, renames and removals in it become durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The `Io` the node runs with: `std::fs`, nothing added.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

/// A shared handle to [`RealIo`].
pub fn real() -> Arc<dyn Io> {
    Arc::new(RealIo)
}

impl IoFile for File {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    #[cfg(target_os = "linux")]
    fn write_at_nowait(&mut self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let (Ok(count), Ok(offset)) = (i32::try_from(bufs.len()), libc::off_t::try_from(offset))
        else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix), and
        // the slices outlive the call; the descriptor is this open file's.
        let n = unsafe {
            libc::pwritev2(
                self.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                count,
                offset,
                libc::RWF_NOWAIT,
            )
        };
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // Not for this file (EOPNOTSUPP), or a kernel without pwritev2 (ENOSYS).
                    Some(libc::EOPNOTSUPP | libc::ENOSYS) => Err(io::ErrorKind::Unsupported.into()),
                    _ => Err(e),
                }
            }
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Io for RealIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        Ok(Box::new(File::create(path)?))
    }
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
        let f = OpenOptions::new().append(true).create(create).open(path)?;
        Ok(Box::new(f))
    }
    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
        let f = OpenOptions::new().write(true).create(create).open(path)?;
        Ok(Box::new(f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Real files with test hooks on some of their operations (tests only): a [`hooked::Hooks`]
/// decides what a file's syncs and non-blocking writes do; everything else is [`RealIo`]'s.
#[cfg(test)]
pub(crate) mod hooked {
    use super::*;

    pub(crate) trait Hooks: Debug + Send + Sync + 'static {
        /// Runs before each `sync_data` / `sync_all` of a file; an error fails the sync.
        fn before_sync(&self) -> io::Result<()> {
            Ok(())
        }
        /// A file's `write_at_nowait`; by default the real file's.
        fn write_at_nowait(
            &self,
            file: &mut dyn IoFile,
            bufs: &[io::IoSlice<'_>],
            offset: u64,
        ) -> io::Result<usize> {
            file.write_at_nowait(bufs, offset)
        }
    }

    /// [`RealIo`] whose files go through `H`'s hooks.
    #[derive(Debug)]
    pub(crate) struct HookedIo<H>(pub(crate) Arc<H>);

    struct HookedFile<H>(Box<dyn IoFile>, Arc<H>);

    impl<H: Hooks> HookedIo<H> {
        fn wrap(&self, file: Box<dyn IoFile>) -> Box<dyn IoFile> {
            Box::new(HookedFile(file, self.0.clone()))
        }
    }

    impl<H> Write for HookedFile<H> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl<H: Hooks> IoFile for HookedFile<H> {
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_at(buf, offset)
        }
        fn write_at_nowait(&mut self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
            self.1.write_at_nowait(&mut *self.0, bufs, offset)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            self.1.before_sync()?;
            self.0.sync_data()
        }
        fn sync_all(&mut self) -> io::Result<()> {
            self.1.before_sync()?;
            self.0.sync_all()
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn size(&self) -> io::Result<u64> {
            self.0.size()
        }
    }

    impl<H: Hooks> Io for HookedIo<H> {
        fn create(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
            Ok(self.wrap(RealIo.create(path)?))
        }
        fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
            Ok(self.wrap(RealIo.open_append(path, create)?))
        }
        fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
            Ok(self.wrap(RealIo.open_write(path, create)?))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealIo.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            RealIo.remove_file(path)
        }
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            RealIo.create_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            RealIo.sync_dir(path)
        }
    }
}

/// Creates `path` and any missing ancestors so that they survive a power cut: each
/// directory created is followed by an fsync of its parent. The parent of `path` is
/// fsynced even when nothing was missing, because a previous boot may have created `path`
/// and been killed before its parent's fsync (the entry is then only in the page cache).
pub fn create_dir_durable(io: &dyn Io, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = path;
    while !p.as_os_str().is_empty() && !p.is_dir() {
        missing.push(p);
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    for dir in missing.iter().rev() {
        match io.create_dir(dir) {
            Ok(()) => {}
            // Someone else created it meanwhile; its parent is fsynced below anyway.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = parent_dir(dir) {
            io.sync_dir(parent)?;
        }
    }
    if missing.is_empty() {
        if let Some(parent) = parent_dir(path) {
            match io.sync_dir(parent) {
                // An operator-made directory under a parent we may not read (say, mode 0711):
                // this boot created nothing there, so there is nothing of ours to persist.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare relative name).
fn parent_dir(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_durable_creates_every_missing_component_and_is_idempotent() {
        let root = tempfile::tempdir().expect("tempdir");
        let deep = root.path().join("a/b/c");
        create_dir_durable(&RealIo, &deep).expect("create");
        assert!(deep.is_dir());
        create_dir_durable(&RealIo, &deep).expect("again");
    }

    #[test]
    fn each_created_directory_is_followed_by_an_fsync_of_its_parent() {
        use crate::crash_sim::{Op, RecordingIo};
        let root = tempfile::tempdir().expect("tempdir");
        let io = RecordingIo::new(root.path());
        create_dir_durable(&io, &root.path().join("a/b")).expect("create");
        let shape: Vec<String> = io
            .ops()
            .iter()
            .map(|op| match op {
                Op::Mkdir { parent, name, .. } => format!("mkdir {parent}/{name}"),
                Op::SyncDir { dir } => format!("fsync {dir}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shape, ["mkdir 0/a", "fsync 0", "mkdir 1/b", "fsync 1"]);
    }
}
