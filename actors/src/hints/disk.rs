//! The hint files: recovery at start-up, and the one thread that appends, reads and deletes
//! them, so no hint I/O runs on an actor's event loop.
//!
//! Layout: `<data_dir>/hints/<hex of the primary's node id>/<seq, 20 digits>.hint`, each an
//! append-only segment of [`super::record`] records.
//!
//! Group commit: the thread takes every job queued (up to `MAX_GROUP`), writes all the
//! appends, then fsyncs each file it wrote once (and each directory in which it created a
//! file, so the new file's name is durable too), and only then answers the appends. A hint
//! is acknowledged only after that fsync. A failed write or fsync answers every append of
//! that file with the error (the actor closes the segment; recovery cuts what is torn).
//!
//! Deletes are not fsynced: a segment that comes back after a crash only delivers its hints
//! again, and delivery is a join at the primary, so a second delivery changes nothing.

use super::record::{self, HintData, RecordMeta};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Jobs taken per group commit at most.
const MAX_GROUP: usize = 1024;

/// One recovered segment: its sequence number, intact records and intact length.
pub type RecoveredSegment = (u64, Vec<RecordMeta>, u64);

/// What recovery found: per primary, its segments in order, and how many torn bytes were
/// cut.
#[derive(Debug, Default)]
pub struct Recovered {
    pub primaries: Vec<(String, Vec<RecoveredSegment>)>,
    pub torn_bytes: u64,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

pub fn primary_dir(root: &Path, primary: &str) -> PathBuf {
    root.join(hex(primary))
}

fn segment_path(root: &Path, primary: &str, seq: u64) -> PathBuf {
    primary_dir(root, primary).join(format!("{seq:020}.hint"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads every primary's segments under `root` (created if missing), cuts torn tails
/// (truncating the file, fsynced) and deletes segments with no intact record. Blocking:
/// run it before the actor starts, or off any event loop.
pub fn recover(root: &Path) -> io::Result<Recovered> {
    if !root.exists() {
        fs::create_dir_all(root)?;
        if let Some(parent) = root.parent() {
            sync_dir(parent)?;
        }
    }
    let mut out = Recovered::default();
    for dir in fs::read_dir(root)? {
        let dir = dir?;
        let name = dir.file_name().to_string_lossy().to_string();
        let Some(primary) = unhex(&name) else {
            log::warn!(
                "hints: ignoring {} (not a primary's directory)",
                dir.path().display()
            );
            continue;
        };
        let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .filter_map(|f| {
                let n = f.file_name().to_string_lossy().to_string();
                let seq = n.strip_suffix(".hint")?.parse::<u64>().ok()?;
                Some((seq, f.path()))
            })
            .collect();
        segs.sort();
        let mut found = Vec::new();
        for (seq, path) in segs {
            let bytes = fs::read(&path)?;
            let (records, good) = record::scan(&bytes);
            if good < bytes.len() as u64 {
                out.torn_bytes += bytes.len() as u64 - good;
                log::warn!(
                    "hints: cut a torn tail of {} bytes from {}",
                    bytes.len() as u64 - good,
                    path.display()
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(good)?;
                f.sync_all()?;
            }
            if records.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            found.push((seq, records, good));
        }
        if !found.is_empty() {
            out.primaries.push((primary, found));
        }
    }
    Ok(out)
}

/// One job for the disk thread.
pub enum Job {
    /// Write `bytes` at `offset` of the segment; answered after the fsync.
    Append {
        primary: String,
        segment: u64,
        offset: u64,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Read these (segment, offset, len) records back, in order.
    Read {
        primary: String,
        records: Vec<(u64, u64, u64)>,
        done: oneshot::Sender<Result<Vec<HintData>, String>>,
    },
    /// Delete these segments of a primary.
    Delete { primary: String, segments: Vec<u64> },
}

/// The handle of the disk thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Disk {
    tx: mpsc::Sender<Job>,
}

impl Disk {
    pub fn start(root: PathBuf) -> io::Result<Disk> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("hints-disk".into())
            .spawn(move || run(&root, &rx))?;
        Ok(Disk { tx })
    }

    /// Queues a job; `false` if the thread is gone (its answers then never come).
    pub fn send(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

type AppendDone = oneshot::Sender<Result<(), String>>;

fn run(root: &Path, rx: &mpsc::Receiver<Job>) {
    let mut open: HashMap<PathBuf, File> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // (file, whom to answer, the write's own error): answered after the fsyncs.
        let mut acks: Vec<(PathBuf, AppendDone, Option<String>)> = Vec::new();
        let mut new_dirs: HashSet<PathBuf> = HashSet::new();
        for job in jobs {
            match job {
                Job::Append {
                    primary,
                    segment,
                    offset,
                    bytes,
                    done,
                } => {
                    let path = segment_path(root, &primary, segment);
                    let res = append(
                        root,
                        &primary,
                        &path,
                        offset,
                        &bytes,
                        &mut open,
                        &mut new_dirs,
                    );
                    acks.push((path, done, res.err().map(|e| e.to_string())));
                }
                Job::Read {
                    primary,
                    records,
                    done,
                } => {
                    let _ = done.send(read(root, &primary, &records));
                }
                Job::Delete { primary, segments } => {
                    for seq in segments {
                        let path = segment_path(root, &primary, seq);
                        open.remove(&path);
                        if let Err(e) = fs::remove_file(&path) {
                            if e.kind() != io::ErrorKind::NotFound {
                                log::warn!("hints: cannot delete {}: {e}", path.display());
                            }
                        }
                    }
                }
            }
        }
        // One fsync per file written in this group, then one per directory that got a new
        // file; only then are the appends answered.
        let mut synced: HashMap<PathBuf, Option<String>> = HashMap::new();
        for (path, _, err) in &acks {
            if err.is_none() && !synced.contains_key(path) {
                let res = open
                    .get(path)
                    .map_or(Ok(()), File::sync_data)
                    .err()
                    .map(|e| format!("fsync {}: {e}", path.display()));
                synced.insert(path.clone(), res);
            }
        }
        let mut dir_err = None;
        for d in &new_dirs {
            if let Err(e) = sync_dir(d) {
                dir_err = Some(format!("fsync {}: {e}", d.display()));
            }
        }
        for (path, done, err) in acks {
            let err = err
                .or_else(|| synced.get(&path).cloned().flatten())
                .or_else(|| dir_err.clone());
            if err.is_some() {
                // The segment is closed by the actor; drop the handle so a later delete is clean.
                open.remove(&path);
            }
            let _ = done.send(err.map_or(Ok(()), Err));
        }
    }
}

fn append(
    root: &Path,
    primary: &str,
    path: &Path,
    offset: u64,
    bytes: &[u8],
    open: &mut HashMap<PathBuf, File>,
    new_dirs: &mut HashSet<PathBuf>,
) -> io::Result<()> {
    if !open.contains_key(path) {
        let dir = primary_dir(root, primary);
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            new_dirs.insert(root.to_path_buf());
        }
        let existed = path.exists();
        // Never truncated: appends write at the offsets the book reserved.
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        if !existed {
            new_dirs.insert(dir);
        }
        open.insert(path.to_path_buf(), f);
    }
    let f = open
        .get(path)
        .ok_or_else(|| io::Error::other("BUG: file just opened is gone"))?;
    f.write_all_at(bytes, offset)
}

fn read(root: &Path, primary: &str, records: &[(u64, u64, u64)]) -> Result<Vec<HintData>, String> {
    let mut files: HashMap<u64, File> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for &(seq, offset, len) in records {
        let path = segment_path(root, primary, seq);
        let f = match files.entry(seq) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?)
            }
        };
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("read {} at {offset}: {e}", path.display()))?;
        let hint = record::decode(&buf)
            .ok_or_else(|| format!("{} at {offset}: checksum mismatch", path.display()))?;
        out.push(hint);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::book::{HintBook, Limits};

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_age_ms: 1 << 40,
            segment_bytes: 200,
        }
    }

    /// Appends hints through the disk thread as the actor does, one group at a time.
    fn append_all(disk: &Disk, book: &mut HintBook, primary: &str, keys: &[&str]) {
        let mut waits = Vec::new();
        for k in keys {
            let bytes = record::encode(k.as_bytes(), b"object", 1);
            let r = book.reserve(primary, bytes.len() as u64).unwrap();
            let (tx, rx) = oneshot::channel();
            assert!(disk.send(Job::Append {
                primary: primary.into(),
                segment: r.segment,
                offset: r.offset,
                bytes,
                done: tx,
            }));
            waits.push((r, k, rx));
        }
        for (r, k, rx) in waits {
            rx.blocking_recv().unwrap().expect("durable");
            book.committed(primary, r, 1, record::key_hash(k.as_bytes()));
        }
    }

    #[test]
    fn hints_survive_a_restart_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hints");
        assert!(recover(&root).unwrap().primaries.is_empty());
        let disk = Disk::start(root.clone()).unwrap();
        let mut book = HintBook::new(limits());
        let keys: Vec<String> = (0..10).map(|i| format!("key{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        append_all(&disk, &mut book, "n3", &keys);
        drop(disk);

        // A crash mid-append: half a record at the end of the newest segment.
        let pdir = primary_dir(&root, "n3");
        let mut segs: Vec<PathBuf> = fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        assert!(segs.len() > 1, "segments rolled at 200 bytes");
        let last = segs.last().unwrap();
        let before = fs::metadata(last).unwrap().len();
        let torn = record::encode(b"torn", b"never acknowledged", 2);
        let f = OpenOptions::new().append(true).open(last).unwrap();
        use std::io::Write as _;
        (&f).write_all(&torn[..torn.len() / 2]).unwrap();

        let rec = recover(&root).unwrap();
        assert_eq!(rec.torn_bytes, (torn.len() / 2) as u64);
        assert_eq!(fs::metadata(last).unwrap().len(), before, "file cut back");
        let mut book = HintBook::new(limits());
        for (p, segs) in rec.primaries {
            book.recover(&p, segs);
        }
        assert_eq!(book.count(), 10);
        assert!(book.is_pending(&record::key_hash(b"key7")));

        // Everything reads back, in order; delivering it all deletes every segment.
        let disk = Disk::start(root.clone()).unwrap();
        let batch = book.take_batch("n3", 1 << 20, 100).unwrap();
        let (tx, rx) = oneshot::channel();
        disk.send(Job::Read {
            primary: "n3".into(),
            records: batch.records,
            done: tx,
        });
        let hints = rx.blocking_recv().unwrap().unwrap();
        let got: Vec<String> = hints
            .iter()
            .map(|h| String::from_utf8(h.key.clone()).unwrap())
            .collect();
        assert_eq!(got, keys);
        let (n, gone) = book.delivered("n3");
        assert_eq!(n, 10);
        disk.send(Job::Delete {
            primary: "n3".into(),
            segments: gone,
        });
        // New appends after a restart go to a new segment, and the delete is done by then
        // (jobs run in order).
        append_all(&disk, &mut book, "n3", &["after"]);
        drop(disk);
        let rec = recover(&root).unwrap();
        assert_eq!(rec.primaries.len(), 1);
        assert_eq!(rec.primaries[0].1.len(), 1, "only the new segment is left");
        assert_eq!(rec.primaries[0].1[0].1.len(), 1);
    }
}
