//! Hinted handoff: the HintedHandoff actor keeps, durably, the writes this node took for a
//! primary that was down (sloppy quorum, REPLICATION.md "When nodes fail"), and hands them
//! to that primary once membership says it is alive again.
//!
//! Receives: [`StoreHint`] (from the coordinator: a fallback's `DataReq::Hint`, or its own
//! hint when no fallback was left), [`HintsPending`] (tombstone GC: may a key's delete
//! marker go?), [`ListHints`] (`admin hints`), and its own tick. Emits: `DeliverHints` to
//! the coordinator (a `Recipient`), which sends each hint to the primary as a replica
//! `Put` and answers once every one was stored.
//!
//! Pieces:
//! - [`record`]: a hint's bytes on disk (blake3 checksum per record), torn-tail scan.
//! - [`book`]: the pure hint book: queues per primary, bounds, batches, pending keys.
//! - [`throttle`]: the pure token bucket of `handoff.max_bytes_per_sec`.
//! - [`disk`]: recovery at start-up and the disk thread (group commit, one fsync per file).
//! - `actor`: the shell.
//!
//! Invariants:
//! - A hint is acknowledged (`StoreHint` answers `Ok`) only after its record was fsynced.
//! - Per primary, the hint files never hold more than `handoff.max_hint_bytes`, and no
//!   hint older than `handoff.max_hint_age` is delivered; past either the hint is dropped,
//!   counted (`troupe_hints_dropped_total{reason}`) and logged. Anti-entropy is what
//!   repairs a primary whose hints were dropped.
//! - A hint is deleted only after its primary acknowledged it (every `Put` of its batch
//!   answered `Stored`). Delivery is a join at the primary, so delivering a hint twice
//!   (after a crash between the acknowledgement and the delete) changes nothing.
//! - Delivery sends at most `handoff.max_bytes_per_sec` on average, one batch per primary
//!   at a time, so a node coming back is not flooded and client traffic keeps its latency.

mod actor;
pub mod book;
pub mod disk;
pub mod record;
pub mod throttle;

pub use actor::HintedHandoff;

use actix::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The `[handoff]` settings the actor uses.
#[derive(Debug, Clone)]
pub struct HandoffConfig {
    /// This node (never hinted for itself).
    pub me: String,
    pub max_hint_bytes: u64,
    pub max_hint_age: Duration,
    pub max_bytes_per_sec: u64,
    pub mailbox: usize,
}

/// Keep `object` for `key` until `primary` is back. Answered after the hint is durable,
/// or with why it was not kept (dropped: full; or the write failed).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct StoreHint {
    pub primary: String,
    pub key: Vec<u8>,
    pub object: Vec<u8>,
}

/// For tombstone GC: per key (same order), whether a hint for it is pending for any
/// primary. Answered from memory.
#[derive(Message)]
#[rtype(result = "Vec<bool>")]
pub struct HintsPending {
    pub keys: Vec<Vec<u8>>,
}

/// `admin hints`: the hints per primary and the totals.
#[derive(Message)]
#[rtype(result = "HintsReport")]
pub struct ListHints;

/// One primary's hints for `admin hints`.
#[derive(Debug, Clone, Serialize)]
pub struct PrimaryHints {
    pub primary: String,
    pub count: usize,
    /// Bytes of the pending hints (records as stored).
    pub bytes: u64,
    /// Bytes of this primary's hint files (delivered records not yet deleted included).
    pub disk_bytes: u64,
    /// Age of the oldest pending hint, in seconds.
    pub oldest_secs: Option<f64>,
    /// Whether membership says the primary is alive (delivery runs only then).
    pub alive: bool,
    /// Hints delivered to it since start-up.
    pub delivered: u64,
    /// Bytes per second delivered to it over the last 10 seconds.
    pub delivery_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HintsReport {
    pub primaries: Vec<PrimaryHints>,
    /// Hints pending over every primary.
    pub count: usize,
    pub pending_bytes: u64,
    pub stored: u64,
    pub delivered: u64,
    pub dropped_full: u64,
    pub dropped_age: u64,
    pub dropped_io: u64,
}

/// Counters shared with the metrics endpoint (relaxed atomics).
#[derive(Debug, Default)]
pub struct HintStats {
    pub stored: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_age: AtomicU64,
    pub dropped_io: AtomicU64,
    pub pending: AtomicU64,
    pub pending_bytes: AtomicU64,
}

/// A copy of [`HintStats`].
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct HintSnapshot {
    pub stored: u64,
    pub delivered: u64,
    pub dropped_full: u64,
    pub dropped_age: u64,
    pub dropped_io: u64,
    pub pending: u64,
    pub pending_bytes: u64,
}

impl HintStats {
    pub fn snapshot(&self) -> HintSnapshot {
        HintSnapshot {
            stored: self.stored.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped_full: self.dropped_full.load(Relaxed),
            dropped_age: self.dropped_age.load(Relaxed),
            dropped_io: self.dropped_io.load(Relaxed),
            pending: self.pending.load(Relaxed),
            pending_bytes: self.pending_bytes.load(Relaxed),
        }
    }
}
