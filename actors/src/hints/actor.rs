//! The HintedHandoff actor: a thin shell over the [`HintBook`], the [`Disk`] thread and the
//! [`Throttle`]. See the module docs of `crate::hints` for what it receives and its
//! invariants.

use super::book::{DropReason, HintBook, Limits};
use super::disk::{Disk, Job, Recovered};
use super::record;
use super::throttle::Throttle;
use super::*;
use crate::coordinator::DeliverHints;
use crate::membership::actor::RingMembers;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, watch};
use troupe_protocol::swim::{NodeId, Status};

/// How often delivery and the age bound are looked at.
const TICK: Duration = Duration::from_millis(100);
/// A delivery batch carries at most this many bytes and hints (it is one peer RPC per hint,
/// all sent in the coordinator's frames).
const MAX_BATCH_BYTES: u64 = 256 * 1024;
const MAX_BATCH_HINTS: usize = 256;
/// After a failed batch, its primary waits this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The window of the delivery rate `admin hints` shows.
const RATE_WINDOW_MS: u64 = 10_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
struct Delivered {
    total: u64,
    /// (ms, bytes) of the batches in the rate window.
    recent: VecDeque<(u64, u64)>,
}

pub struct HintedHandoff {
    cfg: HandoffConfig,
    book: HintBook,
    disk: Disk,
    deliver: Recipient<DeliverHints>,
    members: watch::Receiver<RingMembers>,
    throttle: Throttle,
    stats: Arc<HintStats>,
    delivered: HashMap<String, Delivered>,
    retry_at: HashMap<String, Instant>,
    /// Drops logged per reason since the last drop log line (one line per second at most:
    /// a primary down under load would otherwise log every write).
    unlogged_drops: HashMap<(String, DropReason), u64>,
    last_expire: Instant,
}

impl HintedHandoff {
    /// `recovered`: what [`super::disk::recover`] found under the hints directory that
    /// `disk` writes.
    pub fn new(
        cfg: HandoffConfig,
        recovered: Recovered,
        disk: Disk,
        deliver: Recipient<DeliverHints>,
        members: watch::Receiver<RingMembers>,
    ) -> HintedHandoff {
        let limits = Limits {
            max_bytes: cfg.max_hint_bytes,
            max_age_ms: cfg.max_hint_age.as_millis() as u64,
            // Eight segments per bound: a delivered segment frees an eighth of it.
            segment_bytes: (cfg.max_hint_bytes / 8).clamp(4096, 64 << 20),
        };
        let mut book = HintBook::new(limits);
        for (primary, segs) in recovered.primaries {
            book.recover(&primary, segs);
        }
        if book.count() > 0 {
            log::info!(
                "hints: {} hint(s), {} bytes, recovered from disk",
                book.count(),
                book.pending_bytes()
            );
        }
        // A burst of a quarter second of the rate: smooth, yet batches are not tiny.
        let throttle = Throttle::new(cfg.max_bytes_per_sec, cfg.max_bytes_per_sec / 4, now_ms());
        let stats = Arc::new(HintStats::default());
        let act = HintedHandoff {
            cfg,
            book,
            disk,
            deliver,
            members,
            throttle,
            stats,
            delivered: HashMap::new(),
            retry_at: HashMap::new(),
            unlogged_drops: HashMap::new(),
            last_expire: Instant::now(),
        };
        act.publish();
        act
    }

    pub fn stats(&self) -> Arc<HintStats> {
        self.stats.clone()
    }

    fn publish(&self) {
        self.stats.pending.store(self.book.count() as u64, Relaxed);
        self.stats
            .pending_bytes
            .store(self.book.pending_bytes(), Relaxed);
    }

    fn dropped(&mut self, primary: &str, reason: DropReason, n: u64) {
        let c = match reason {
            DropReason::Full => &self.stats.dropped_full,
            DropReason::Age => &self.stats.dropped_age,
            DropReason::Io => &self.stats.dropped_io,
        };
        c.fetch_add(n, Relaxed);
        *self
            .unlogged_drops
            .entry((primary.to_string(), reason))
            .or_default() += n;
    }

    fn log_drops(&mut self) {
        for ((primary, reason), n) in self.unlogged_drops.drain() {
            let why = match reason {
                DropReason::Full => format!(
                    "its hints reached handoff.max_hint_bytes = {}",
                    self.cfg.max_hint_bytes
                ),
                DropReason::Age => format!(
                    "older than handoff.max_hint_age = {:?}",
                    self.cfg.max_hint_age
                ),
                DropReason::Io => "writing the hint failed".to_string(),
            };
            log::warn!("hints: dropped {n} hint(s) for {primary}: {why}; anti-entropy repairs it");
        }
    }

    fn delete(&mut self, primary: &str, segments: Vec<u64>) {
        if segments.is_empty() {
            return;
        }
        self.book.deleted(primary, &segments);
        self.disk.send(Job::Delete {
            primary: primary.to_string(),
            segments,
        });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        if self.last_expire.elapsed() >= Duration::from_secs(1) {
            self.last_expire = Instant::now();
            for (primary, n, gone) in self.book.expire(now) {
                self.dropped(&primary, DropReason::Age, n as u64);
                self.delete(&primary, gone);
            }
            self.log_drops();
            self.publish();
        }
        let alive: Vec<String> = {
            let view = self.members.borrow();
            view.members
                .iter()
                .filter(|m| m.status == Status::Alive)
                .map(|m| m.id.0.clone())
                .collect()
        };
        for primary in self.book.deliverable() {
            if primary == self.cfg.me || !alive.contains(&primary) {
                continue;
            }
            if self
                .retry_at
                .get(&primary)
                .is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            let allowance = self.throttle.allowance(now);
            if allowance == 0 {
                break;
            }
            let Some(batch) =
                self.book
                    .take_batch(&primary, allowance.min(MAX_BATCH_BYTES), MAX_BATCH_HINTS)
            else {
                continue;
            };
            self.throttle.spend(batch.bytes);
            self.send_batch(primary, batch.records, batch.bytes, ctx);
        }
    }

    /// Reads the batch back from disk, hands it to the coordinator, and on its answer
    /// deletes it (acknowledged) or leaves it for a later try.
    fn send_batch(
        &mut self,
        primary: String,
        records: Vec<(u64, u64, u64)>,
        bytes: u64,
        ctx: &mut Context<Self>,
    ) {
        let (tx, rx) = oneshot::channel();
        if !self.disk.send(Job::Read {
            primary: primary.clone(),
            records,
            done: tx,
        }) {
            self.book.failed(&primary);
            return;
        }
        let deliver = self.deliver.clone();
        let to = NodeId(primary.clone());
        let fut = async move {
            let hints = rx
                .await
                .map_err(|_| "the hints disk thread stopped".to_string())??;
            let hints = hints.into_iter().map(|h| (h.key, h.object)).collect();
            deliver
                .send(DeliverHints { to, hints })
                .await
                .map_err(|e| format!("coordinator: {e}"))?
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(()) => {
                    let (n, gone) = act.book.delivered(&primary);
                    act.stats.delivered.fetch_add(n as u64, Relaxed);
                    let now = now_ms();
                    let d = act.delivered.entry(primary.clone()).or_default();
                    d.total += n as u64;
                    d.recent.push_back((now, bytes));
                    while d
                        .recent
                        .front()
                        .is_some_and(|(t, _)| now.saturating_sub(*t) > RATE_WINDOW_MS)
                    {
                        d.recent.pop_front();
                    }
                    act.delete(&primary, gone);
                    act.retry_at.remove(&primary);
                    if act
                        .book
                        .figures(now)
                        .iter()
                        .all(|f| f.primary != primary || f.count == 0)
                    {
                        log::info!("hints: every hint for {primary} delivered");
                    }
                }
                Err(e) => {
                    log::debug!(
                        "hints: a batch for {primary} failed ({e}); retrying in {RETRY_AFTER:?}"
                    );
                    act.book.failed(&primary);
                    act.retry_at.insert(primary, Instant::now() + RETRY_AFTER);
                }
            }
            act.publish();
        }));
    }
}

impl Actor for HintedHandoff {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl Handler<StoreHint> for HintedHandoff {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: StoreHint, _: &mut Context<Self>) -> Self::Result {
        let at = now_ms();
        let bytes = record::encode(&msg.key, &msg.object, at);
        let key_hash = record::key_hash(&msg.key);
        let primary = msg.primary;
        let r = match self.book.reserve(&primary, bytes.len() as u64) {
            Ok(r) => r,
            Err(reason) => {
                self.dropped(&primary, reason, 1);
                let e = format!(
                    "hints for {primary} are full (handoff.max_hint_bytes = {}); dropped",
                    self.cfg.max_hint_bytes
                );
                return Box::pin(fut::ready(Err(e)));
            }
        };
        let (tx, rx) = oneshot::channel();
        self.disk.send(Job::Append {
            primary: primary.clone(),
            segment: r.segment,
            offset: r.offset,
            bytes,
            done: tx,
        });
        Box::pin(
            async move {
                rx.await
                    .unwrap_or_else(|_| Err("the hints disk thread stopped".into()))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                match &res {
                    Ok(()) => {
                        act.book.committed(&primary, r, at, key_hash);
                        act.stats.stored.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        log::error!("hints: cannot write a hint for {primary}: {e}");
                        let gone = act.book.aborted(&primary, r);
                        act.delete(&primary, gone);
                        act.dropped(&primary, DropReason::Io, 1);
                    }
                }
                act.publish();
                res
            }),
        )
    }
}

impl Handler<HintsPending> for HintedHandoff {
    type Result = MessageResult<HintsPending>;

    fn handle(&mut self, msg: HintsPending, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.keys
                .iter()
                .map(|k| self.book.is_pending(&record::key_hash(k)))
                .collect(),
        )
    }
}

impl Handler<ListHints> for HintedHandoff {
    type Result = MessageResult<ListHints>;

    fn handle(&mut self, _: ListHints, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let view = self.members.borrow().clone();
        let s = self.stats.snapshot();
        let primaries = self
            .book
            .figures(now)
            .into_iter()
            .map(|f| {
                let d = self.delivered.get(&f.primary);
                let recent: u64 = d.map_or(0, |d| {
                    d.recent
                        .iter()
                        .filter(|(t, _)| now.saturating_sub(*t) <= RATE_WINDOW_MS)
                        .map(|(_, b)| b)
                        .sum()
                });
                PrimaryHints {
                    alive: view
                        .members
                        .iter()
                        .any(|m| m.id.0 == f.primary && m.status == Status::Alive),
                    delivered: d.map_or(0, |d| d.total),
                    delivery_bytes_per_sec: recent as f64 / (RATE_WINDOW_MS as f64 / 1000.0),
                    oldest_secs: f.oldest_ms.map(|ms| ms as f64 / 1000.0),
                    primary: f.primary,
                    count: f.count,
                    bytes: f.bytes,
                    disk_bytes: f.disk_bytes,
                }
            })
            .collect();
        MessageResult(HintsReport {
            primaries,
            count: self.book.count(),
            pending_bytes: self.book.pending_bytes(),
            stored: s.stored,
            delivered: s.delivered,
            dropped_full: s.dropped_full,
            dropped_age: s.dropped_age,
            dropped_io: s.dropped_io,
        })
    }
}
