//! Durable vs. volatile state of a recorded run, and the crash states it allows.
//!
//! Fed the op log one operation at a time ([`CrashModel::apply`]); at any point
//! [`CrashModel::materialise`] writes one random state a power cut there could leave.

use super::recorder::{DirId, Ino, Op};
use rand::Rng;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(Ino),
    Dir(DirId),
}

#[derive(Debug, Clone)]
enum FileOp {
    Append(Vec<u8>),
    /// Bytes written at an offset.
    WriteAt(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileState {
    /// Content as of the last fsync.
    synced: Vec<u8>,
    /// Changes since, in order.
    pending: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, Node),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug, Default)]
struct DirState {
    /// Entries as of the last directory fsync.
    durable: BTreeMap<String, Node>,
    /// Entry operations since, in order.
    pending: Vec<DirOp>,
}

/// The state of a recorded run after a prefix of its op log.
#[derive(Debug)]
pub struct CrashModel {
    files: Vec<FileState>,
    dirs: Vec<DirState>,
    applied: usize,
    /// Also produce appends whose pages reached the disk out of order.
    reorder_pages: bool,
}

impl Default for CrashModel {
    fn default() -> Self {
        CrashModel {
            files: Vec::new(),
            dirs: vec![DirState::default()], // the root
            applied: 0,
            reorder_pages: false,
        }
    }
}

fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

fn apply_file_op(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Append(b) => content.extend_from_slice(b),
        FileOp::WriteAt(at, b) => write_at(content, *at as usize, b),
        FileOp::SetLen(n) => content.resize(*n as usize, 0),
    }
}

/// `pwrite`: `b` over `content` at `at`, growing it (a hole reads as zeros) if needed.
fn write_at(content: &mut Vec<u8>, at: usize, b: &[u8]) {
    if content.len() < at + b.len() {
        content.resize(at + b.len(), 0);
    }
    content[at..at + b.len()].copy_from_slice(b);
}

fn apply_dir_op(entries: &mut BTreeMap<String, Node>, op: &DirOp) {
    match op {
        DirOp::Link(name, node) => {
            entries.insert(name.clone(), *node);
        }
        DirOp::Unlink(name) => {
            entries.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(node) = entries.remove(from) {
                entries.insert(to.clone(), node);
            }
        }
    }
}

/// How much of `n` pending steps survive: none, all, or a uniform prefix (a third each,
/// so both extremes are well covered).
fn survivors(rng: &mut impl Rng, n: usize) -> usize {
    match rng.random_range(0..3u8) {
        0 => 0,
        1 => n,
        _ => rng.random_range(0..=n),
    }
}

impl CrashModel {
    /// Lets unsynced appends reach the disk sector by sector in any order (each 512-byte
    /// sector of the unsynced region is written or still zeros): writeback and the device
    /// promise no order among the sectors of unsynced data. Off by default: see
    /// `crash_sim` docs.
    pub fn reorder_pages(mut self, on: bool) -> Self {
        self.reorder_pages = on;
        self
    }

    /// Operations applied so far (the cut this model stands at).
    pub fn applied(&self) -> usize {
        self.applied
    }

    pub fn apply(&mut self, op: &Op) {
        self.applied += 1;
        match op {
            Op::Create { parent, name, ino } => {
                slot(&mut self.files, *ino);
                let link = DirOp::Link(name.clone(), Node::File(*ino));
                slot(&mut self.dirs, *parent).pending.push(link);
            }
            Op::Mkdir { parent, name, dir } => {
                slot(&mut self.dirs, *dir);
                let link = DirOp::Link(name.clone(), Node::Dir(*dir));
                slot(&mut self.dirs, *parent).pending.push(link);
            }
            Op::Append { ino, bytes } => {
                let op = FileOp::Append(bytes.clone());
                slot(&mut self.files, *ino).pending.push(op);
            }
            Op::WriteAt { ino, offset, bytes } => {
                let op = FileOp::WriteAt(*offset, bytes.clone());
                slot(&mut self.files, *ino).pending.push(op);
            }
            Op::SetLen { ino, len } => {
                slot(&mut self.files, *ino)
                    .pending
                    .push(FileOp::SetLen(*len));
            }
            Op::SyncFile { ino } => {
                let f = slot(&mut self.files, *ino);
                for op in std::mem::take(&mut f.pending) {
                    apply_file_op(&mut f.synced, &op);
                }
            }
            Op::Rename { dir, from, to } => {
                let op = DirOp::Rename(from.clone(), to.clone());
                slot(&mut self.dirs, *dir).pending.push(op);
            }
            Op::Remove { parent, name } => {
                let op = DirOp::Unlink(name.clone());
                slot(&mut self.dirs, *parent).pending.push(op);
            }
            Op::SyncDir { dir } => {
                let d = slot(&mut self.dirs, *dir);
                for op in std::mem::take(&mut d.pending) {
                    apply_dir_op(&mut d.durable, &op);
                }
            }
            Op::Mark(_) => {}
        }
    }

    /// Writes into `out` (an existing, empty directory standing for the root) one state a
    /// power cut now could leave, choosing survivals with `rng`.
    pub fn materialise(&self, rng: &mut impl Rng, out: &Path) -> std::io::Result<()> {
        self.write_dir(rng, 0, out)
    }

    fn write_dir(&self, rng: &mut impl Rng, dir: DirId, out: &Path) -> std::io::Result<()> {
        let d = &self.dirs[dir];
        let mut entries = d.durable.clone();
        for op in &d.pending[..survivors(rng, d.pending.len())] {
            apply_dir_op(&mut entries, op);
        }
        for (name, node) in entries {
            let path = out.join(&name);
            match node {
                Node::Dir(sub) => {
                    fs::create_dir(&path)?;
                    self.write_dir(rng, sub, &path)?;
                }
                Node::File(ino) => fs::write(&path, self.file_content(rng, ino))?,
            }
        }
        Ok(())
    }

    /// The synced bytes plus a prefix of the later changes, counted in bytes appended and
    /// truncations; a quarter of the time the appended bytes that did not survive read
    /// as zeros up to a random length (the size reached the disk, the data did not).
    fn file_content(&self, rng: &mut impl Rng, ino: Ino) -> Vec<u8> {
        let f = &self.files[ino];
        let writes_only = f
            .pending
            .iter()
            .all(|op| matches!(op, FileOp::Append(_) | FileOp::WriteAt(..)));
        if self.reorder_pages && writes_only && !f.pending.is_empty() && rng.random_bool(0.25) {
            return reordered_pages(rng, f);
        }
        let mut content = f.synced.clone();
        let steps = |op: &FileOp| match op {
            FileOp::Append(b) | FileOp::WriteAt(_, b) => b.len(),
            FileOp::SetLen(_) => 1,
        };
        let total: usize = f.pending.iter().map(steps).sum();
        let mut budget = survivors(rng, total);
        let mut lost_appended = 0;
        for op in &f.pending {
            if budget >= steps(op) {
                budget -= steps(op);
                apply_file_op(&mut content, op);
            } else if let FileOp::Append(b) = op {
                content.extend_from_slice(&b[..budget]);
                lost_appended += b.len() - budget;
                budget = 0;
            } else if let FileOp::WriteAt(at, b) = op {
                write_at(&mut content, *at as usize, &b[..budget]);
                budget = 0;
            }
        }
        if lost_appended > 0 && rng.random_range(0..4u8) == 0 {
            let zeros = rng.random_range(1..=lost_appended);
            content.resize(content.len() + zeros, 0);
        }
        content
    }
}

/// The synced bytes with the unsynced writes applied, cut at a random length if they grew
/// the file, in which each 512-byte sector (by file offset) from the first unsynced write on
/// either reached the disk or still holds its synced bytes (zeros past the synced length).
fn reordered_pages(rng: &mut impl Rng, f: &FileState) -> Vec<u8> {
    const PAGE: usize = 512;
    let old = &f.synced;
    let mut content = old.clone();
    f.pending
        .iter()
        .for_each(|op| apply_file_op(&mut content, op));
    let start = f
        .pending
        .iter()
        .map(|op| match op {
            FileOp::WriteAt(at, _) => *at as usize,
            _ => old.len(),
        })
        .min()
        .unwrap_or(old.len())
        .min(old.len());
    let len = match content.len() > old.len() {
        true => old.len() + survivors(rng, content.len() - old.len()),
        false => content.len(),
    };
    content.truncate(len);
    let mut page = start / PAGE * PAGE;
    while page < len {
        if rng.random_bool(0.5) {
            let from = page.max(start);
            let to = (page + PAGE).min(len);
            for (i, b) in content[from..to].iter_mut().enumerate() {
                *b = old.get(from + i).copied().unwrap_or(0);
            }
        }
        page += PAGE;
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash_sim::RecordingIo;
    use crate::engine::io::Io;
    use rand::{rngs::SmallRng, SeedableRng};
    use std::collections::BTreeSet;
    use std::io::Write;

    /// Every state the model produces for the log so far, as (path, content) sets.
    fn outcomes(model: &CrashModel) -> BTreeSet<Vec<(String, Vec<u8>)>> {
        let mut seen = BTreeSet::new();
        for seed in 0..200 {
            let out = tempfile::tempdir().expect("tempdir");
            let mut rng = SmallRng::seed_from_u64(seed);
            model
                .materialise(&mut rng, out.path())
                .expect("materialise");
            let mut files = Vec::new();
            let mut stack = vec![out.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).expect("read_dir") {
                    let p = e.expect("entry").path();
                    let rel = p.strip_prefix(out.path()).expect("under out");
                    let rel = rel.to_string_lossy().into_owned();
                    if p.is_dir() {
                        files.push((rel + "/", Vec::new()));
                        stack.push(p);
                    } else {
                        files.push((rel, fs::read(&p).expect("read")));
                    }
                }
            }
            files.sort();
            seen.insert(files);
        }
        seen
    }

    fn model_of(io: &RecordingIo) -> CrashModel {
        let mut m = CrashModel::default();
        io.ops().iter().for_each(|op| m.apply(op));
        m
    }

    #[test]
    fn unsynced_entries_and_bytes_may_vanish_synced_ones_never_do() {
        let root = tempfile::tempdir().expect("tempdir");
        let io = RecordingIo::new(root.path());
        let dir = root.path().join("d");
        io.create_dir(&dir).expect("mkdir");
        let mut f = io.create(&dir.join("f")).expect("create");
        f.write_all(b"abcd").expect("write");
        f.sync_data().expect("sync");
        // Neither `d` in the root nor `f` in `d` is durable yet: all of it may vanish.
        let all = outcomes(&model_of(&io));
        assert!(all.contains(&vec![]), "{all:?}");
        assert!(all.contains(&vec![("d/".into(), vec![])]), "{all:?}");
        assert!(all.contains(&vec![
            ("d/".into(), vec![]),
            ("d/f".into(), b"abcd".to_vec())
        ]));
        io.sync_dir(root.path()).expect("sync root");
        io.sync_dir(&dir).expect("sync d");
        f.write_all(b"ef").expect("write");
        let all = outcomes(&model_of(&io));
        let contents: BTreeSet<Vec<u8>> = all
            .iter()
            .map(|files| {
                assert_eq!(files.len(), 2, "both entries are durable now: {files:?}");
                files[1].1.clone()
            })
            .collect();
        // Synced bytes stay; the unsynced tail is dropped, cut, kept or zero-filled.
        for want in [&b"abcd"[..], b"abcde", b"abcdef", b"abcd\0"] {
            assert!(contents.contains(want), "{want:?} not in {contents:?}");
        }
        assert!(contents
            .iter()
            .all(|c| c.starts_with(b"abcd") && c.len() <= 6));
    }

    #[test]
    fn reordered_sectors_of_an_unsynced_append_may_read_as_zeros_before_intact_ones() {
        let root = tempfile::tempdir().expect("tempdir");
        let io = RecordingIo::new(root.path());
        let mut f = io.create(&root.path().join("f")).expect("create");
        io.sync_dir(root.path()).expect("sync root");
        f.write_all(&[1u8; 100]).expect("write");
        f.sync_data().expect("sync");
        f.write_all(&[2u8; 1000]).expect("write"); // unsynced, over sectors 0..2
        let hole_then_data = |model: CrashModel| {
            outcomes(&model).iter().any(|files| {
                let c = &files[0].1;
                c.len() > 512 && c[100..512].iter().all(|&b| b == 0) && c[512] == 2
            })
        };
        assert!(!hole_then_data(model_of(&io)), "prefixes only by default");
        assert!(hole_then_data(model_of(&io).reorder_pages(true)));
        for files in outcomes(&model_of(&io).reorder_pages(true)) {
            assert!(files[0].1.starts_with(&[1u8; 100]), "synced bytes stay");
        }
    }

    /// A write at an offset over synced bytes (the WAL writes its batches over preallocated
    /// zeros): a cut keeps the size, and each unsynced sector holds its synced bytes or
    /// the new ones, in any order when sectors reorder.
    #[test]
    fn an_unsynced_write_at_an_offset_leaves_each_sector_old_or_new() {
        let root = tempfile::tempdir().expect("tempdir");
        let io = RecordingIo::new(root.path());
        let path = root.path().join("f");
        let mut f = io.open_write(&path, true).expect("open");
        io.sync_dir(root.path()).expect("sync root");
        f.write_at(&[0u8; 2048], 0).expect("zeros");
        f.write_at(&[1u8; 100], 0).expect("write");
        f.sync_data().expect("sync");
        f.write_at(&[2u8; 1000], 100).expect("write"); // unsynced, over sectors 0..2
        let old = |i: usize| if i < 100 { 1u8 } else { 0 };
        let mut hole_then_data = false;
        for files in outcomes(&model_of(&io).reorder_pages(true)) {
            let c = &files[0].1;
            assert_eq!(c.len(), 2048, "the size was synced");
            for (i, &b) in c.iter().enumerate() {
                let new = if (100..1100).contains(&i) { 2 } else { old(i) };
                assert!(b == old(i) || b == new, "byte {i} is {b}");
            }
            hole_then_data |= c[100] == 0 && c[512] == 2;
        }
        assert!(
            hole_then_data,
            "a later sector may land without an earlier one"
        );
        for files in outcomes(&model_of(&io)) {
            let c = &files[0].1;
            let written = c[100..1100].iter().take_while(|&&b| b == 2).count();
            assert!(
                c[100 + written..].iter().all(|&b| b == 0),
                "a prefix by default"
            );
        }
    }

    #[test]
    fn a_rename_is_atomic_and_durable_only_after_the_directory_fsync() {
        let root = tempfile::tempdir().expect("tempdir");
        let io = RecordingIo::new(root.path());
        let (tmp, dst) = (root.path().join("t"), root.path().join("m"));
        let mut old = io.create(&dst).expect("create");
        old.write_all(b"old").expect("write");
        old.sync_all().expect("sync");
        io.sync_dir(root.path()).expect("sync root");
        let mut new = io.create(&tmp).expect("create");
        new.write_all(b"new").expect("write");
        new.sync_all().expect("sync");
        io.rename(&tmp, &dst).expect("rename");
        let all = outcomes(&model_of(&io));
        let m = |c: &[u8]| ("m".to_string(), c.to_vec());
        let t = |c: &[u8]| ("t".to_string(), c.to_vec());
        assert!(all.contains(&vec![m(b"old")]));
        assert!(all.contains(&vec![m(b"old"), t(b"new")]));
        assert!(all.contains(&vec![m(b"new")]));
        assert_eq!(all.len(), 3, "{all:?}");
        io.sync_dir(root.path()).expect("sync root");
        assert_eq!(outcomes(&model_of(&io)), [vec![m(b"new")]].into());
    }
}
