//! The hint book: every primary's hint queue as metadata (segment, offset, size, age, key
//! hash; the objects stay on disk), the bounds, delivery batches and the per-key count of
//! pending hints. Pure: no I/O, no clock (times come in as milliseconds); the actor turns
//! its answers into disk jobs and deliveries.
//!
//! Invariants:
//! - A primary's hints are in append order, which is age order: the oldest is at the front,
//!   so the age bound and delivery both take from the front.
//! - `disk_bytes` of a primary (every byte of its segment files, delivered records in a
//!   segment not yet deleted included, plus appends reserved but not yet written) never
//!   exceeds `max_hint_bytes`: a hint that would pass it is dropped before it is written.
//! - A hint leaves the book only when its primary acknowledged it (`delivered`) or it was
//!   dropped for age; a segment file is deleted only once none of its hints is left and no
//!   append to it is pending.
//! - At most one delivery batch per primary is in flight; its hints are the front ones.

use super::record::RecordMeta;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The bounds of every primary's hints.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_age_ms: u64,
    /// A segment is closed (a new one started) once it holds this many bytes.
    pub segment_bytes: u64,
}

/// Why a hint was dropped (the `reason` label of the dropped counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Its primary's hints would pass `max_hint_bytes`.
    Full,
    /// Older than `max_hint_age`.
    Age,
    /// Writing it failed.
    Io,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Full => "full",
            DropReason::Age => "age",
            DropReason::Io => "io",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    segment: u64,
    meta: RecordMeta,
}

#[derive(Debug, Default, Clone)]
struct Segment {
    /// Hints of this segment still in the book.
    live: usize,
    /// Bytes the file holds (or will, once the reserved appends are written).
    bytes: u64,
    /// Appends reserved and not yet written (or failed).
    reserved: usize,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Entry>,
    segments: BTreeMap<u64, Segment>,
    /// The segment new hints go to; `None`: the next append starts a new one.
    active: Option<u64>,
    next_seq: u64,
    /// Hints at the front handed out for delivery.
    inflight: usize,
    /// Bytes of the hints in the book.
    pending_bytes: u64,
}

impl Queue {
    fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }
}

/// Where to append a hint the book admitted (see [`HintBook::reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

/// A batch handed out for delivery: where each hint lies on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// (segment, offset, len) of each hint, in order.
    pub records: Vec<(u64, u64, u64)>,
    pub bytes: u64,
}

/// One primary's figures for `admin hints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFigures {
    pub primary: String,
    pub count: usize,
    pub bytes: u64,
    pub disk_bytes: u64,
    pub oldest_ms: Option<u64>,
}

#[derive(Debug)]
pub struct HintBook {
    limits: Limits,
    queues: BTreeMap<String, Queue>,
    /// blake3(key) -> hints pending for that key, over every primary.
    pending: HashMap<[u8; 32], u32>,
}

impl HintBook {
    pub fn new(limits: Limits) -> HintBook {
        HintBook {
            limits,
            queues: BTreeMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Loads what recovery found of `primary`: its segments in order with their intact
    /// records and intact length.
    pub fn recover(&mut self, primary: &str, segments: Vec<(u64, Vec<RecordMeta>, u64)>) {
        let q = self.queues.entry(primary.to_string()).or_default();
        for (seq, records, len) in segments {
            q.next_seq = q.next_seq.max(seq + 1);
            let seg = q.segments.entry(seq).or_default();
            seg.bytes = len;
            seg.live += records.len();
            for meta in records {
                q.pending_bytes += meta.len;
                *self.pending.entry(meta.key_hash).or_default() += 1;
                q.entries.push_back(Entry { segment: seq, meta });
            }
        }
        // Appends after a restart start a new segment: the last one may have had a torn
        // tail cut, and starting fresh never appends behind bytes of unknown history.
        q.active = None;
    }

    /// Room for a hint of `len` bytes for `primary`, or why it is dropped. The caller
    /// writes the record at the reservation, then calls `committed` or `aborted`.
    pub fn reserve(&mut self, primary: &str, len: u64) -> Result<Reservation, DropReason> {
        let limits = self.limits;
        let q = self.queues.entry(primary.to_string()).or_default();
        if q.disk_bytes() + len > limits.max_bytes {
            return Err(DropReason::Full);
        }
        let seq = match q.active {
            Some(s)
                if q.segments
                    .get(&s)
                    .is_some_and(|g| g.bytes < limits.segment_bytes) =>
            {
                s
            }
            _ => {
                let s = q.next_seq;
                q.next_seq += 1;
                q.segments.insert(s, Segment::default());
                q.active = Some(s);
                s
            }
        };
        let seg = q.segments.entry(seq).or_default();
        let offset = seg.bytes;
        seg.bytes += len;
        seg.reserved += 1;
        Ok(Reservation {
            segment: seq,
            offset,
            len,
        })
    }

    /// The reserved append is durable: the hint is in the book.
    pub fn committed(&mut self, primary: &str, r: Reservation, at_ms: u64, key_hash: [u8; 32]) {
        let Some(q) = self.queues.get_mut(primary) else {
            return;
        };
        if let Some(seg) = q.segments.get_mut(&r.segment) {
            seg.reserved -= 1;
            seg.live += 1;
        }
        q.pending_bytes += r.len;
        *self.pending.entry(key_hash).or_default() += 1;
        let meta = RecordMeta {
            offset: r.offset,
            len: r.len,
            at_ms,
            key_hash,
        };
        q.entries.push_back(Entry {
            segment: r.segment,
            meta,
        });
    }

    /// The reserved append failed: its segment is closed (its length on disk is now
    /// uncertain; recovery cuts whatever of it was written) and the hint is not kept.
    /// Returns segments that may now be deleted.
    pub fn aborted(&mut self, primary: &str, r: Reservation) -> Vec<u64> {
        let Some(q) = self.queues.get_mut(primary) else {
            return Vec::new();
        };
        if let Some(seg) = q.segments.get_mut(&r.segment) {
            seg.reserved -= 1;
        }
        if q.active == Some(r.segment) {
            q.active = None;
        }
        Self::removable(q)
    }

    /// Drops every hint older than `max_age` at `now_ms` (not those of a batch in flight:
    /// it gets to finish). Returns per primary how many were dropped and the segments that
    /// may now be deleted.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, usize, Vec<u64>)> {
        let max_age = self.limits.max_age_ms;
        let mut out = Vec::new();
        for (primary, q) in &mut self.queues {
            if q.inflight > 0 {
                continue;
            }
            let mut n = 0;
            while q
                .entries
                .front()
                .is_some_and(|e| now_ms.saturating_sub(e.meta.at_ms) > max_age)
            {
                if let Some(e) = q.entries.pop_front() {
                    Self::forget(&mut self.pending, q, e);
                    n += 1;
                }
            }
            if n > 0 {
                out.push((primary.clone(), n, Self::removable(q)));
            }
        }
        out
    }

    /// The next batch for `primary` (its front hints, at most `max_bytes` but at least
    /// one, at most `max_count`), or `None` if it has none or a batch is in flight.
    pub fn take_batch(&mut self, primary: &str, max_bytes: u64, max_count: usize) -> Option<Batch> {
        let q = self.queues.get_mut(primary)?;
        if q.inflight > 0 || q.entries.is_empty() {
            return None;
        }
        let mut batch = Batch {
            records: Vec::new(),
            bytes: 0,
        };
        for e in q.entries.iter().take(max_count.max(1)) {
            if !batch.records.is_empty() && batch.bytes + e.meta.len > max_bytes {
                break;
            }
            batch.records.push((e.segment, e.meta.offset, e.meta.len));
            batch.bytes += e.meta.len;
        }
        q.inflight = batch.records.len();
        Some(batch)
    }

    /// The primary acknowledged the batch in flight: its hints leave the book. Returns how
    /// many, and the segments that may now be deleted.
    pub fn delivered(&mut self, primary: &str) -> (usize, Vec<u64>) {
        let Some(q) = self.queues.get_mut(primary) else {
            return (0, Vec::new());
        };
        let n = std::mem::take(&mut q.inflight);
        for _ in 0..n {
            if let Some(e) = q.entries.pop_front() {
                Self::forget(&mut self.pending, q, e);
            }
        }
        (n, Self::removable(q))
    }

    /// The batch in flight failed: its hints stay, to be tried again.
    pub fn failed(&mut self, primary: &str) {
        if let Some(q) = self.queues.get_mut(primary) {
            q.inflight = 0;
        }
    }

    /// The segments were deleted from disk: their bytes no longer count.
    pub fn deleted(&mut self, primary: &str, segments: &[u64]) {
        if let Some(q) = self.queues.get_mut(primary) {
            for s in segments {
                q.segments.remove(s);
            }
        }
    }

    fn forget(pending: &mut HashMap<[u8; 32], u32>, q: &mut Queue, e: Entry) {
        q.pending_bytes -= e.meta.len;
        if let Some(seg) = q.segments.get_mut(&e.segment) {
            seg.live -= 1;
        }
        if let Some(c) = pending.get_mut(&e.meta.key_hash) {
            *c -= 1;
            if *c == 0 {
                pending.remove(&e.meta.key_hash);
            }
        }
    }

    /// Segments with no hint left and no append pending. The active one is closed too, so
    /// the next append starts a new file rather than one about to be deleted.
    fn removable(q: &mut Queue) -> Vec<u64> {
        let out: Vec<u64> = q
            .segments
            .iter()
            .filter(|(_, s)| s.live == 0 && s.reserved == 0)
            .map(|(seq, _)| *seq)
            .collect();
        if q.active.is_some_and(|a| out.contains(&a)) {
            q.active = None;
        }
        out
    }

    /// Whether some hint for a key with this hash is pending, for any primary.
    pub fn is_pending(&self, key_hash: &[u8; 32]) -> bool {
        self.pending.contains_key(key_hash)
    }

    /// The primaries with hints to deliver and no batch in flight.
    pub fn deliverable(&self) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(_, q)| q.inflight == 0 && !q.entries.is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn figures(&self, now_ms: u64) -> Vec<QueueFigures> {
        self.queues
            .iter()
            .map(|(p, q)| QueueFigures {
                primary: p.clone(),
                count: q.entries.len(),
                bytes: q.pending_bytes,
                disk_bytes: q.disk_bytes(),
                oldest_ms: q
                    .entries
                    .front()
                    .map(|e| now_ms.saturating_sub(e.meta.at_ms)),
            })
            .collect()
    }

    /// Hints in the book, over every primary.
    pub fn count(&self) -> usize {
        self.queues.values().map(|q| q.entries.len()).sum()
    }

    pub fn pending_bytes(&self) -> u64 {
        self.queues.values().map(|q| q.pending_bytes).sum()
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
