//! The recording `Io`: performs each operation on the real file system and logs it.
//!
//! The log lock is held across the real operation and its log entry, so the log order is
//! the order in which the effects happened (and a test's mark recorded after an
//! acknowledgement arrived comes after the fsync that made the write durable).

use crate::engine::io::{Io, IoFile};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file, by identity (an inode): names come and go, the file stays.
pub type Ino = usize;
/// A directory, by identity; 0 is the recorder's root, durable from the start.
pub type DirId = usize;

/// One recorded operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new empty file `ino` linked as `name` in `parent`.
    Create {
        parent: DirId,
        name: String,
        ino: Ino,
    },
    /// A new empty directory.
    Mkdir {
        parent: DirId,
        name: String,
        dir: DirId,
    },
    /// Bytes added at the end of the file.
    Append {
        ino: Ino,
        bytes: Vec<u8>,
    },
    /// Bytes written at an offset (over old bytes, or past the end with a hole of zeros).
    WriteAt {
        ino: Ino,
        offset: u64,
        bytes: Vec<u8>,
    },
    SetLen {
        ino: Ino,
        len: u64,
    },
    /// `sync_data` or `sync_all`: both make data and size durable.
    SyncFile {
        ino: Ino,
    },
    /// Rename within one directory (replacing `to`).
    Rename {
        dir: DirId,
        from: String,
        to: String,
    },
    Remove {
        parent: DirId,
        name: String,
    },
    SyncDir {
        dir: DirId,
    },
    /// A test event (a write submitted or acknowledged); no effect on disk.
    Mark(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(Ino),
    Dir(DirId),
}

#[derive(Debug)]
struct Log {
    ops: Vec<Op>,
    /// The current namespace under the root, by full path.
    names: HashMap<PathBuf, Node>,
    dir_paths: Vec<PathBuf>,
    next_ino: Ino,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    log: Mutex<Log>,
}

/// An [`Io`] that records everything it does under `root`. Clones share one log.
#[derive(Debug, Clone)]
pub struct RecordingIo(Arc<Shared>);

fn lock(m: &Mutex<Log>) -> MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RecordingIo {
    /// Records operations under `root`, an existing directory taken as durable.
    pub fn new(root: &Path) -> RecordingIo {
        RecordingIo(Arc::new(Shared {
            root: root.to_path_buf(),
            log: Mutex::new(Log {
                ops: Vec::new(),
                names: HashMap::new(),
                dir_paths: vec![root.to_path_buf()],
                next_ino: 0,
            }),
        }))
    }

    /// Records operations under `root`, an existing directory whose whole tree is taken as
    /// durable: the log starts with operations (creates, writes, fsyncs) rebuilding it, and
    /// the second value is their count, the first cut that lies after them.
    pub fn adopt(root: &Path) -> io::Result<(RecordingIo, usize)> {
        let io = RecordingIo::new(root);
        {
            let mut log = lock(&io.0.log);
            io.adopt_dir(&mut log, root, 0)?;
        }
        let base = io.ops().len();
        Ok((io, base))
    }

    fn adopt_dir(&self, log: &mut Log, path: &Path, dir: DirId) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let (parent, name) = self.entry(log, &p);
            if e.file_type()?.is_dir() {
                let sub = log.dir_paths.len();
                log.dir_paths.push(p.clone());
                log.names.insert(p.clone(), Node::Dir(sub));
                log.ops.push(Op::Mkdir {
                    parent,
                    name,
                    dir: sub,
                });
                self.adopt_dir(log, &p, sub)?;
            } else {
                let ino = log.next_ino;
                log.next_ino += 1;
                log.names.insert(p.clone(), Node::File(ino));
                log.ops.push(Op::Create { parent, name, ino });
                let bytes = fs::read(&p)?;
                log.ops.push(Op::Append { ino, bytes });
                log.ops.push(Op::SyncFile { ino });
            }
        }
        log.ops.push(Op::SyncDir { dir });
        Ok(())
    }

    /// Appends a test event to the log and returns its index.
    pub fn mark(&self, tag: u64) -> usize {
        let mut log = lock(&self.0.log);
        log.ops.push(Op::Mark(tag));
        log.ops.len() - 1
    }

    /// A copy of the log so far.
    pub fn ops(&self) -> Vec<Op> {
        lock(&self.0.log).ops.clone()
    }

    /// The path directory `dir` had when it was created (for messages).
    pub fn dir_path(&self, dir: DirId) -> PathBuf {
        lock(&self.0.log).dir_paths[dir].clone()
    }

    fn node(&self, log: &Log, path: &Path) -> Option<Node> {
        if path == self.0.root {
            return Some(Node::Dir(0));
        }
        log.names.get(path).copied()
    }

    /// The directory holding `path` and the entry's name in it.
    fn entry(&self, log: &Log, path: &Path) -> (DirId, String) {
        let parent = path
            .parent()
            .unwrap_or_else(|| panic!("{path:?} has no parent"));
        let Some(Node::Dir(dir)) = self.node(log, parent) else {
            panic!(
                "crash_sim: {} is outside the recorded tree {}",
                path.display(),
                self.0.root.display()
            );
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{path:?} has no UTF-8 file name"));
        (dir, name.to_owned())
    }

    fn new_file(&self, log: &mut Log, path: &Path) -> Ino {
        let (parent, name) = self.entry(log, path);
        let ino = log.next_ino;
        log.next_ino += 1;
        log.names.insert(path.to_path_buf(), Node::File(ino));
        log.ops.push(Op::Create { parent, name, ino });
        ino
    }

    /// Opens an existing (or, with `create`, new) file for appending or for writing at
    /// offsets.
    fn open(&self, path: &Path, create: bool, append: bool) -> io::Result<Box<dyn IoFile>> {
        let mut log = lock(&self.0.log);
        let file = OpenOptions::new()
            .append(append)
            .write(true)
            .create(create)
            .open(path)?;
        let ino = match self.node(&log, path) {
            Some(Node::File(ino)) => ino,
            Some(Node::Dir(_)) => panic!("crash_sim: {} is a directory", path.display()),
            None if create => self.new_file(&mut log, path),
            None => panic!(
                "crash_sim: {} exists but was not created through the recorder",
                path.display()
            ),
        };
        Ok(self.file(file, ino))
    }

    fn file(&self, file: File, ino: Ino) -> Box<dyn IoFile> {
        Box::new(RecFile {
            file,
            ino,
            io: self.clone(),
            nowait_calls: 0,
        })
    }
}

impl Io for RecordingIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let mut log = lock(&self.0.log);
        let file = File::create(path)?;
        let ino = match self.node(&log, path) {
            Some(Node::File(ino)) => {
                log.ops.push(Op::SetLen { ino, len: 0 });
                ino
            }
            _ => self.new_file(&mut log, path),
        };
        Ok(self.file(file, ino))
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
        self.open(path, create, true)
    }

    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoFile>> {
        self.open(path, create, false)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut log = lock(&self.0.log);
        fs::rename(from, to)?;
        let (dir, from_name) = self.entry(&log, from);
        let (to_dir, to_name) = self.entry(&log, to);
        assert_eq!(dir, to_dir, "crash_sim: renames across directories");
        match log.names.remove(from) {
            Some(node @ Node::File(_)) => log.names.insert(to.to_path_buf(), node),
            other => panic!("crash_sim: rename of {} ({other:?})", from.display()),
        };
        log.ops.push(Op::Rename {
            dir,
            from: from_name,
            to: to_name,
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut log = lock(&self.0.log);
        fs::remove_file(path)?;
        let (parent, name) = self.entry(&log, path);
        log.names.remove(path);
        log.ops.push(Op::Remove { parent, name });
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut log = lock(&self.0.log);
        fs::create_dir(path)?;
        let (parent, name) = self.entry(&log, path);
        let dir = log.dir_paths.len();
        log.dir_paths.push(path.to_path_buf());
        log.names.insert(path.to_path_buf(), Node::Dir(dir));
        log.ops.push(Op::Mkdir { parent, name, dir });
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut log = lock(&self.0.log);
        File::open(path)?.sync_all()?;
        match self.node(&log, path) {
            Some(Node::Dir(dir)) => log.ops.push(Op::SyncDir { dir }),
            other => panic!("crash_sim: sync_dir of {} ({other:?})", path.display()),
        }
        Ok(())
    }
}

/// A file opened through the recorder.
struct RecFile {
    file: File,
    ino: Ino,
    io: RecordingIo,
    /// `write_at_nowait` calls so far: they cycle through a partial write, two whole ones
    /// and a would-block, so that a relaxed-mode run takes every path of the WAL's appends
    /// from the event loop (as a file system that takes non-blocking writes would).
    nowait_calls: u64,
}

impl RecFile {
    fn record<T>(&mut self, f: impl FnOnce(&mut File) -> io::Result<(T, Op)>) -> io::Result<T> {
        let mut log = lock(&self.io.0.log);
        let (out, op) = f(&mut self.file)?;
        log.ops.push(op);
        Ok(out)
    }
}

impl Write for RecFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let ino = self.ino;
        self.record(|f| {
            let n = f.write(buf)?;
            let bytes = buf[..n].to_vec();
            Ok((n, Op::Append { ino, bytes }))
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // unbuffered
    }
}

impl IoFile for RecFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let ino = self.ino;
        self.record(|f| {
            std::os::unix::fs::FileExt::write_all_at(f, buf, offset)?;
            let bytes = buf.to_vec();
            Ok(((), Op::WriteAt { ino, offset, bytes }))
        })
    }

    fn write_at_nowait(&mut self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.nowait_calls += 1;
        let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = match self.nowait_calls % 4 {
            0 => return Err(io::ErrorKind::WouldBlock.into()),
            1 => bytes.len() / 2,
            _ => bytes.len(),
        };
        self.write_at(&bytes[..n], offset)?;
        Ok(n)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let ino = self.ino;
        self.record(|f| f.sync_data().map(|()| ((), Op::SyncFile { ino })))
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let ino = self.ino;
        self.record(|f| f.sync_all().map(|()| ((), Op::SyncFile { ino })))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let ino = self.ino;
        self.record(|f| f.set_len(len).map(|()| ((), Op::SetLen { ino, len })))
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
