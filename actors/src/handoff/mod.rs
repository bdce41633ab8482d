//! The Handoff actor: moves partitions when the ring changes (join, `admin leave`,
//! `admin remove`), so each change moves only what it must and loses nothing acknowledged
//! (REPLICATION.md, "When the ring changes"; after Garage's layout history).
//!
//! Owns the [`book::TransferBook`] (stable and current layout, the cluster's `acked` and
//! `synced` trackers; its rules are the design) and wires it to:
//! - the layout actor's current layout (a `watch`), and membership's view (who is up);
//! - the coordinator: a `watch` of the stable layout while the ring is in transition
//!   ([`WatchTransition`]): writes then go to both layouts' owners, reads to the stable
//!   ones; and `JoinLocal` for every object fetched;
//! - peers, on the bulk lane: state gossip, and fetch streams ([`fetch`]) in both
//!   directions;
//! - the data directory: `TRANSFERS` ([`store`]), written after every change of the book
//!   or of a stream's cursor, one write at a time;
//! - storage: scans to serve fetches and to delete partitions this node no longer owns;
//! - membership: `Leave` once a leaving node owns nothing.
//!
//! A transition, on every node (numbered as ARCHITECTURE.md "Ring changes"):
//! 1. The current layout changes; this node waits `ack_delay` (the coordinator's request
//!    timeout: every write started under the old layout has ended) and acks it.
//! 2. Once every up member acked, it fetches what it now owns and did not (book rule 3):
//!    one stream per source, at most `transfer_limit` at once, throttled to
//!    `max_bytes_per_sec`; each chunk's objects are joined durably before the cursor
//!    moves, and the cursor is persisted, so a restart of either side resumes there.
//! 3. A stream without progress for `stall_timeout` is logged, cut and restarted from its
//!    cursor on another source when there is one.
//! 4. All fetched: `synced`. When every member synced, the current layout is stable; the
//!    partitions this node held and owns no more are deleted `drop_delay` later (by then
//!    every node reads from the new owners).
//! 5. A leaving node that owns nothing in either layout tells membership it left.
//!
//! Invariants: the book only moves forward (see `book`); a cursor never passes an object
//! that is not durably joined; nothing is deleted before every new owner synced.

pub mod book;
mod fetch;
pub mod store;

use crate::antientropy::KeysIn;
use crate::coordinator::JoinLocal;
use crate::membership::actor::{Leave, RingMembers};
use crate::memtable::{Scan, Write};
use crate::peer::{PeerTransport, TransferInbound};
use crate::ring::{partition_for, Layout};
use actix::prelude::*;
use book::{assign, TransferBook};
use fetch::lock;
use rand::seq::IteratorRandom;
use serde::Serialize;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use troupe_protocol::swim::{NodeId, Status};
use troupe_protocol::transfer::{LayoutId, TransferMsg, WireTransferState};

/// Settings (`[handoff]`).
#[derive(Debug, Clone)]
pub struct HandoffConfig {
    pub me: NodeId,
    pub data_dir: PathBuf,
    /// Fetch streams running at once (`handoff.transfer_limit`).
    pub transfer_limit: usize,
    /// Bytes a second all of this node's incoming streams take together, each its share
    /// (`handoff.transfer_bytes_per_sec`, 0: unlimited).
    pub max_bytes_per_sec: u64,
    /// A stream without progress this long is cut and restarted elsewhere.
    pub stall_timeout: Duration,
    /// The longest a node waits before acking a new layout: the coordinator's request
    /// timeout, after which every write started under the old one has ended. It acks
    /// sooner when the coordinator says so (`WritesDrained`).
    pub ack_delay: Duration,
    /// How long after promotion data no longer owned is deleted.
    pub drop_delay: Duration,
    pub gossip_interval: Duration,
    /// Object bytes asked for per chunk.
    pub chunk_bytes: u32,
    pub mailbox: usize,
}

/// Counters for /metrics and `admin stats`.
#[derive(Debug, Default)]
pub struct HandoffStats {
    pub keys_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub keys_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_stalled: AtomicU64,
    pub streams_failed: AtomicU64,
    pub partitions_dropped: AtomicU64,
    pub keys_dropped: AtomicU64,
    /// Gauges: 1 while in transition; partitions this node still has to fetch.
    pub in_transition: AtomicU64,
    pub partitions_pending: AtomicU64,
}

impl HandoffStats {
    pub fn named(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("keys_received", self.keys_received.load(Relaxed)),
            ("bytes_received", self.bytes_received.load(Relaxed)),
            ("keys_sent", self.keys_sent.load(Relaxed)),
            ("bytes_sent", self.bytes_sent.load(Relaxed)),
            ("streams_completed", self.streams_completed.load(Relaxed)),
            ("streams_stalled", self.streams_stalled.load(Relaxed)),
            ("streams_failed", self.streams_failed.load(Relaxed)),
            ("partitions_dropped", self.partitions_dropped.load(Relaxed)),
            ("keys_dropped", self.keys_dropped.load(Relaxed)),
            ("in_transition", self.in_transition.load(Relaxed)),
            ("partitions_pending", self.partitions_pending.load(Relaxed)),
        ])
    }
}

/// What the actor talks to.
pub struct HandoffLinks {
    pub transport: Option<PeerTransport>,
    pub members: watch::Receiver<RingMembers>,
    pub layout: watch::Receiver<Layout>,
    pub scan: Recipient<Scan>,
    pub write: Recipient<Write>,
    pub join: Recipient<JoinLocal>,
    /// Asked before acking a layout (rule 2); without it the actor waits `ack_delay`.
    pub drained: Option<Recipient<crate::coordinator::WritesDrained>>,
    pub keys_in: Option<Recipient<KeysIn>>,
    /// Anti-entropy, for the exchange with the new owners before a drop (rule 7).
    pub exchange: Option<Recipient<crate::antientropy::ExchangeWith>>,
    /// Anti-entropy's trees, told of the keys a drop deletes.
    pub trees: Option<Recipient<crate::coordinator::LocalWrites>>,
    pub leave: Option<Recipient<Leave>>,
    /// Asks the layout actor to drop this node (`admin leave`).
    pub leave_ring: Option<Recipient<crate::layout::LeaveRing>>,
}

/// What the Handoff actor knows of the ring, for the coordinator's `RingInputs`: the
/// current layout it has processed, and the stable one while in transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub current: Layout,
    pub stable: Option<Layout>,
}

impl Transition {
    /// The stable layout as seen by a reader that holds `layout` as current: while this
    /// actor has not processed `layout` yet, its own current one (the old layout) still
    /// holds the data, so the ring counts as in transition from it.
    pub fn stable_for(&self, layout: &Layout) -> Option<Layout> {
        match &self.stable {
            Some(s) => Some(s.clone()),
            None if self.current != *layout => Some(self.current.clone()),
            None => None,
        }
    }
}

/// The receiver of [`Transition`]s.
#[derive(Message)]
#[rtype(result = "watch::Receiver<Transition>")]
pub struct WatchTransition;

/// `admin leave`: hand everything off, then depart. The answer says what will happen.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct StartLeave;

/// `admin transfers`.
#[derive(Message)]
#[rtype(result = "TransfersReport")]
pub struct TransfersStatus;

/// One incoming stream, as `admin transfers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub source: String,
    pub target: String,
    pub partitions: Vec<u32>,
    pub state: String,
    pub keys: u64,
    pub bytes: u64,
    /// Keys the source holds for these partitions (its estimate), when known.
    pub estimate_keys: Option<u64>,
    pub bytes_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub idle_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransfersReport {
    pub node: String,
    pub stable_version: u64,
    pub current_version: u64,
    pub in_transition: bool,
    /// Why fetching has not started (waiting for acks, or the ack delay).
    pub waiting: Option<String>,
    /// Members of the current layout that have not synced it.
    pub unsynced: Vec<String>,
    pub leaving: bool,
    /// Partitions this node still has to fetch, and has fetched, for the current layout.
    pub partitions_pending: Vec<u32>,
    pub partitions_done: Vec<u32>,
    pub streams: Vec<StreamRow>,
    /// Partitions waiting to be deleted here (no longer owned).
    pub to_drop: Vec<u32>,
}

/// A stream's progress, shared with its task.
#[derive(Debug)]
pub struct StreamProgress {
    pub keys: u64,
    pub bytes: u64,
    pub estimate: Option<u64>,
    pub last_progress: Instant,
}

struct Stream {
    partitions: Vec<u32>,
    /// Started from a saved cursor (after a restart or another holder's stall).
    resumed: bool,
    started: Instant,
    progress: Arc<Mutex<StreamProgress>>,
    task: SpawnHandle,
}

/// A stream's request to its source; the chunk (objects, next, estimate) or why none.
type ChunkAnswer = Result<(Vec<(ByteBuf, ByteBuf)>, Option<ByteBuf>, Option<u64>), String>;

#[derive(Message)]
#[rtype(result = "()")]
struct Ask {
    to: NodeId,
    msg: TransferMsg,
    reply: oneshot::Sender<ChunkAnswer>,
}

/// A stream's cursor moved (everything up to `after` is durable here).
#[derive(Message)]
#[rtype(result = "()")]
struct Moved {
    source: NodeId,
    after: Option<Vec<u8>>,
}

/// A stream's task ended.
#[derive(Message)]
#[rtype(result = "()")]
struct StreamEnded {
    source: NodeId,
    result: Result<(), String>,
}

/// Holders answer at most this many fetches at once; more are refused (the fetcher
/// retries after its stall check or from another source).
const MAX_SERVING: usize = 4;

pub struct Handoff {
    cfg: HandoffConfig,
    links: HandoffLinks,
    book: TransferBook,
    tx: watch::Sender<Transition>,
    leaving: bool,
    left: bool,
    /// When the current layout was taken (the ack waits `ack_delay` from here).
    adopted_at: Instant,
    /// Fetch progress for `plan_for`: partitions done, and cursors of unfinished streams
    /// (by the partition set they cover).
    plan_for: LayoutId,
    done: BTreeSet<u32>,
    cursors: BTreeMap<Vec<u32>, Option<Vec<u8>>>,
    streams: BTreeMap<NodeId, Stream>,
    /// Planned streams not started yet (partition sets; a source is picked at start).
    queue: Vec<Vec<u32>>,
    /// Sources whose stream stalled or failed for the current layout: used last.
    avoid: BTreeSet<NodeId>,
    to_drop: Vec<u32>,
    drop_after: Option<Instant>,
    dropping: bool,
    drop_task: Option<SpawnHandle>,
    serving: usize,
    next_id: u64,
    pending: HashMap<u64, (Instant, oneshot::Sender<ChunkAnswer>)>,
    saving: bool,
    dirty: bool,
    gossip_dirty: bool,
    checking_data: bool,
    asking_drained: bool,
    stuck_logged: Option<Instant>,
    stats: Arc<HandoffStats>,
}

impl Handoff {
    /// `stored`: the `TRANSFERS` file, if any; `fresh`: the data directory was new.
    pub fn new(
        cfg: HandoffConfig,
        links: HandoffLinks,
        stored: Option<store::Stored>,
        fresh: bool,
    ) -> Handoff {
        let current = links.layout.borrow().clone();
        let mut leaving = false;
        let mut done = BTreeSet::new();
        let mut cursors = BTreeMap::new();
        let mut to_drop = Vec::new();
        let mut plan_for = current.id();
        let book = match stored.and_then(|s| {
            let stable = Layout::from_wire(s.state.stable.clone()).ok()?;
            Some((s, stable))
        }) {
            Some((s, stable)) => {
                leaving = s.leaving;
                to_drop = s.to_drop;
                if let Some((l, d)) = s.done {
                    plan_for = l;
                    done = d.into_iter().collect();
                }
                for c in s.cursors {
                    if c.layout == plan_for {
                        cursors.insert(c.partitions, c.after.map(|b| b.into_vec()));
                    }
                }
                TransferBook::new(cfg.me.clone(), stable, current.clone(), s.state.provisional)
                    .with_trackers(
                        s.state.acked.into_iter().collect(),
                        s.state.synced.into_iter().collect(),
                    )
            }
            None => TransferBook::new(cfg.me.clone(), current.clone(), current.clone(), fresh),
        };
        let (tx, _) = watch::channel(Transition {
            current: book.current().clone(),
            stable: book.transition().cloned(),
        });
        let drop_after = (!to_drop.is_empty()).then(|| Instant::now() + cfg.drop_delay);
        Handoff {
            cfg,
            links,
            book,
            tx,
            leaving,
            left: false,
            adopted_at: Instant::now(),
            plan_for,
            done,
            cursors,
            streams: BTreeMap::new(),
            queue: Vec::new(),
            avoid: BTreeSet::new(),
            to_drop,
            drop_after,
            dropping: false,
            drop_task: None,
            serving: 0,
            next_id: rand::random::<u64>() >> 1,
            pending: HashMap::new(),
            saving: false,
            dirty: true,
            gossip_dirty: false,
            checking_data: false,
            asking_drained: false,
            stuck_logged: None,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<HandoffStats> {
        self.stats.clone()
    }

    fn bits(&self) -> u32 {
        self.book.current().table.partitions().trailing_zeros()
    }

    fn is_up(&self, id: &NodeId) -> bool {
        *id == self.cfg.me
            || self
                .links
                .members
                .borrow()
                .members
                .iter()
                .any(|m| m.id == *id && matches!(m.status, Status::Alive | Status::Suspect))
    }

    fn addr_of(&self, id: &NodeId) -> Option<String> {
        self.links
            .members
            .borrow()
            .members
            .iter()
            .find(|m| m.id == *id)
            .map(|m| m.peer_addr.clone())
    }

    fn send(&self, to: &NodeId, msg: TransferMsg) -> bool {
        match (&self.links.transport, self.addr_of(to)) {
            (Some(t), Some(addr)) => t.send_transfer(to, &addr, msg),
            _ => false,
        }
    }

    fn wire_state(&self) -> WireTransferState {
        WireTransferState {
            stable: self.book.stable().to_wire(),
            acked: self.book.acked().clone().into_iter().collect(),
            synced: self.book.synced().clone().into_iter().collect(),
            provisional: self.book.is_provisional(),
        }
    }

    /// Gossip to `fanout` random up members (a provisional state too: a peer with the
    /// cluster's answers it at once, and fresh nodes starting together agree through it).
    fn gossip(&self, fanout: usize) {
        let me = &self.cfg.me;
        let peers: Vec<NodeId> = self
            .links
            .members
            .borrow()
            .members
            .iter()
            .filter(|m| m.id != *me && matches!(m.status, Status::Alive | Status::Suspect))
            .map(|m| m.id.clone())
            .collect();
        let state = TransferMsg::State(self.wire_state());
        for p in peers.iter().choose_multiple(&mut rand::rng(), fanout) {
            self.send(p, state.clone());
        }
    }

    fn publish(&mut self) {
        let t = Transition {
            current: self.book.current().clone(),
            stable: self.book.transition().cloned(),
        };
        self.stats
            .in_transition
            .store(t.stable.is_some() as u64, Relaxed);
        if *self.tx.borrow() != t {
            self.tx.send_replace(t);
        }
    }

    fn changed(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        self.gossip_dirty = true;
        self.publish();
        self.save(ctx);
    }

    fn stored(&self) -> store::Stored {
        store::Stored {
            state: self.wire_state(),
            leaving: self.leaving,
            cursors: self
                .cursors
                .iter()
                .map(|(p, a)| store::Cursor {
                    layout: self.plan_for,
                    partitions: p.clone(),
                    after: a.clone().map(ByteBuf::from),
                })
                .collect(),
            done: Some((self.plan_for, self.done.iter().copied().collect())),
            to_drop: self.to_drop.clone(),
        }
    }

    fn save(&mut self, ctx: &mut Context<Self>) {
        if self.saving || !self.dirty {
            return;
        }
        self.saving = true;
        self.dirty = false;
        let stored = self.stored();
        let dir = self.cfg.data_dir.clone();
        let write = tokio::task::spawn_blocking(move || store::save(&dir, &stored));
        ctx.spawn(
            actix::fut::wrap_future(write).map(|res, act: &mut Self, ctx| {
                act.saving = false;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log::error!(
                        "handoff: cannot write {}/{}: {e}; a restart repeats unfinished fetches",
                        act.cfg.data_dir.display(),
                        store::FILE
                    ),
                    Err(e) => log::error!("handoff: the write task failed: {e}"),
                }
                act.save(ctx);
            }),
        );
    }

    /// A new current layout: fetch progress of the old one is void.
    fn on_layout(&mut self, ctx: &mut Context<Self>) {
        let cur = self.links.layout.borrow_and_update().clone();
        if !self.book.on_layout(cur) {
            return;
        }
        log::info!(
            "handoff: layout {} is current (stable {}){}",
            self.book.current().version,
            self.book.stable().version,
            if self.book.transition().is_some() {
                "; writes go to both layouts' owners until every member synced it"
            } else {
                ""
            }
        );
        self.adopted_at = Instant::now();
        // A drop in progress stops: the new layout may make this node an owner again.
        if let Some(h) = self.drop_task.take() {
            ctx.cancel_future(h);
            self.dropping = false;
        }
        self.reset_plan(ctx);
        self.changed(ctx);
    }

    fn reset_plan(&mut self, ctx: &mut Context<Self>) {
        for (_, s) in std::mem::take(&mut self.streams) {
            ctx.cancel_future(s.task);
        }
        self.plan_for = self.book.current().id();
        self.done.clear();
        self.cursors.clear();
        self.queue.clear();
        self.avoid.clear();
    }

    /// The periodic step: ack, fetch, promote, drop, depart.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.expire();
        if self.links.layout.has_changed().unwrap_or(false) {
            self.on_layout(ctx);
        }
        self.check_fresh_data(ctx);
        let in_transition = self.book.transition().is_some() && self.book.may_proceed();
        if in_transition && !self.book.acked_current() {
            if self.adopted_at.elapsed() >= self.cfg.ack_delay {
                self.book.ack();
                self.changed(ctx);
            } else {
                self.ask_drained(ctx);
            }
        }
        if in_transition
            && !self.book.synced_current()
            && self.book.acked_current()
            && self.book.all_acked()
        {
            self.fetch(ctx);
        }
        if let Some(old) = self.book.promote() {
            self.promoted(&old);
            self.changed(ctx);
        }
        self.drop_partitions(ctx);
        self.depart(ctx);
        let pending = self
            .book
            .needs()
            .iter()
            .filter(|n| !self.done.contains(&n.partition))
            .count();
        self.stats.partitions_pending.store(pending as u64, Relaxed);
        if self.gossip_dirty {
            self.gossip_dirty = false;
            self.gossip(3);
        }
    }

    /// The stable layout moved on from `old` (promoted here or by a peer): the partitions
    /// this node gave up are deleted `drop_delay` from now.
    fn promoted(&mut self, old: &Layout) {
        let dropped = self.book.dropped_since(old);
        log::info!(
            "handoff: layout {} is stable: every member holds what it owns{}",
            self.book.stable().version,
            if dropped.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} partition(s) no longer owned here are deleted in {:?}",
                    dropped.len(),
                    self.cfg.drop_delay
                )
            }
        );
        for p in dropped {
            if !self.to_drop.contains(&p) {
                self.to_drop.push(p);
            }
        }
        if !self.to_drop.is_empty() {
            self.drop_after = Some(Instant::now() + self.cfg.drop_delay);
        }
    }

    /// Rule 3: start streams for what is still needed, cut stalled ones, and mark this
    /// node synced once nothing is left.
    fn fetch(&mut self, ctx: &mut Context<Self>) {
        let needs: Vec<book::Need> = self
            .book
            .needs()
            .into_iter()
            .filter(|n| !self.done.contains(&n.partition))
            .collect();
        if needs.is_empty() && self.streams.is_empty() {
            if self.book.mark_synced() {
                log::info!(
                    "handoff: this node holds everything it owns in layout {}",
                    self.book.current().version
                );
                self.changed(ctx);
            }
            return;
        }
        // Stalled streams are cut; their partitions are planned again below.
        let stalled: Vec<NodeId> = self
            .streams
            .iter()
            .filter(|(_, s)| lock(&s.progress).last_progress.elapsed() >= self.cfg.stall_timeout)
            .map(|(src, _)| src.clone())
            .collect();
        for src in stalled {
            if let Some(s) = self.streams.remove(&src) {
                log::warn!(
                    "handoff: the stream from {src} made no progress for {:?} ({} partition(s)); restarting it from its cursor on another holder if there is one",
                    self.cfg.stall_timeout,
                    s.partitions.len(),
                );
                ctx.cancel_future(s.task);
                self.stats.streams_stalled.fetch_add(1, Relaxed);
                self.avoid.insert(src);
                self.queue.push(s.partitions);
            }
        }
        let limit = self.cfg.transfer_limit.max(1);
        if self.streams.len() >= limit {
            return;
        }
        // The plan is made once (per layout, and again for what a failed stream left):
        // each source's partitions stay one stream, so a source scans its data once.
        let planned: BTreeSet<u32> = self
            .streams
            .values()
            .map(|s| &s.partitions)
            .chain(self.queue.iter())
            .flatten()
            .copied()
            .collect();
        let unplanned: Vec<book::Need> = needs
            .iter()
            .filter(|n| !planned.contains(&n.partition))
            .cloned()
            .collect();
        if !unplanned.is_empty() {
            self.plan(&unplanned);
        }
        // Start queued streams whose source is up and not streaming already.
        let mut i = 0;
        while self.streams.len() < limit && i < self.queue.len() {
            let parts = &self.queue[i];
            let source = self.source_for(parts, &needs);
            match source {
                Some(src) => {
                    let parts = self.queue.remove(i);
                    self.start_stream(src, parts, ctx);
                }
                None if !self.any_holder_up(parts, &needs) => {
                    // No up node holds all of the set (its source went down): split it
                    // over the holders that are up; those partitions start over.
                    let parts = self.queue.remove(i);
                    self.cursors.remove(&parts);
                    let split: Vec<book::Need> = needs
                        .iter()
                        .filter(|n| parts.contains(&n.partition))
                        .cloned()
                        .collect();
                    let up = |id: &NodeId| self.is_up(id);
                    // Partitions no up node holds stay unplanned: a later tick plans them.
                    let (plan, _stuck) = assign(&split, up, &self.avoid);
                    self.queue.extend(plan.into_iter().map(|(_, p)| p));
                    // The split sets are further on in the queue: this loop reaches them.
                }
                None => i += 1,
            }
        }
    }

    /// Whether some up node holds every partition of `parts` (busy or not).
    fn any_holder_up(&self, parts: &[u32], needs: &[book::Need]) -> bool {
        let Some(first) = parts.first() else {
            return false;
        };
        needs
            .iter()
            .find(|n| n.partition == *first)
            .is_some_and(|n| {
                n.sources.iter().any(|s| {
                    self.is_up(s)
                        && parts.iter().all(|p| {
                            needs
                                .iter()
                                .find(|m| m.partition == *p)
                                .is_some_and(|m| m.sources.contains(s))
                        })
                })
            })
    }

    /// Plans `needs` into partition sets, one per source (`book::assign`); a saved cursor's
    /// partition set is kept whole first, so a restarted node resumes where it was.
    fn plan(&mut self, needs: &[book::Need]) {
        let wanted: BTreeSet<u32> = needs.iter().map(|n| n.partition).collect();
        let mut taken = BTreeSet::new();
        for parts in self.cursors.keys() {
            if parts
                .iter()
                .all(|p| wanted.contains(p) && !taken.contains(p))
            {
                taken.extend(parts.iter().copied());
                self.queue.push(parts.clone());
            }
        }
        let rest: Vec<book::Need> = needs
            .iter()
            .filter(|n| !taken.contains(&n.partition))
            .cloned()
            .collect();
        let up = |id: &NodeId| self.is_up(id);
        let (plan, stuck) = assign(&rest, up, &self.avoid);
        self.queue.extend(plan.into_iter().map(|(_, parts)| parts));
        if !stuck.is_empty() {
            // No holder is up for these yet: planned on a later tick, and said (at most
            // once a minute): the ring stays in transition until one is back.
            let now = Instant::now();
            if self
                .stuck_logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
            {
                self.stuck_logged = Some(now);
                log::warn!(
                    "handoff: no holder of {} partition(s) is up (e.g. partition {}); they wait for one (or `troupe admin remove` of the dead ones)",
                    stuck.len(),
                    stuck[0]
                );
            }
        }
    }

    /// The source for a planned partition set: a holder of every one of them that is up,
    /// not to be avoided if possible, the least busy first.
    fn source_for(&self, parts: &[u32], needs: &[book::Need]) -> Option<NodeId> {
        let mut common: Option<BTreeSet<NodeId>> = None;
        for p in parts {
            let srcs: BTreeSet<NodeId> = needs
                .iter()
                .find(|n| n.partition == *p)
                .map(|n| n.sources.iter().cloned().collect())
                .unwrap_or_default();
            common = Some(match common {
                None => srcs,
                Some(c) => c.intersection(&srcs).cloned().collect(),
            });
        }
        let common: Vec<NodeId> = common
            .unwrap_or_default()
            .into_iter()
            .filter(|s| self.is_up(s) && !self.streams.contains_key(s))
            .collect();
        common
            .iter()
            .find(|s| !self.avoid.contains(*s))
            .or(common.first())
            .cloned()
    }

    fn start_stream(&mut self, source: NodeId, partitions: Vec<u32>, ctx: &mut Context<Self>) {
        // A cursor of a stream that covered exactly these partitions resumes it; any
        // holder orders keys alike, so it is valid at another source too.
        let after = self.cursors.get(&partitions).cloned().flatten();
        self.cursors.insert(partitions.clone(), after.clone());
        let progress = Arc::new(Mutex::new(StreamProgress {
            keys: 0,
            bytes: 0,
            estimate: None,
            last_progress: Instant::now(),
        }));
        let limit = self.cfg.transfer_limit.max(1) as u64;
        let sctx = fetch::StreamCtx {
            actor: ctx.address(),
            join: self.links.join.clone(),
            source: source.clone(),
            partitions: partitions.clone(),
            chunk_bytes: self.cfg.chunk_bytes,
            progress: progress.clone(),
            max_bytes_per_sec: self.cfg.max_bytes_per_sec / limit,
        };
        log::info!(
            "handoff: fetching {} partition(s) from {source}{}",
            partitions.len(),
            if after.is_some() {
                " (resuming from the saved cursor)"
            } else {
                ""
            }
        );
        let src = source.clone();
        let task = ctx.spawn(
            actix::fut::wrap_future(fetch::run(sctx, after.clone())).map(
                move |result, _: &mut Self, ctx: &mut Context<Self>| {
                    ctx.notify(StreamEnded {
                        source: src,
                        result,
                    })
                },
            ),
        );
        self.streams.insert(
            source,
            Stream {
                partitions,
                resumed: after.is_some(),
                started: Instant::now(),
                progress,
                task,
            },
        );
    }

    /// Rule 2's early ack: the coordinator places writes with the current layout and no
    /// write placed with an older one is still open.
    fn ask_drained(&mut self, ctx: &mut Context<Self>) {
        let Some(to) = self.links.drained.clone() else {
            return;
        };
        if self.asking_drained {
            return;
        }
        self.asking_drained = true;
        let id = self.book.current().id();
        let ask = async move {
            to.send(crate::coordinator::WritesDrained {
                version: id.version,
            })
            .await
        };
        ctx.spawn(
            actix::fut::wrap_future(ask).map(move |res, act: &mut Self, ctx| {
                act.asking_drained = false;
                if res == Ok(true) && act.book.current().id() == id && act.book.ack() {
                    act.changed(ctx);
                }
            }),
        );
    }

    /// A fresh node that holds data after all (it ran alone and took writes) has a real
    /// stable layout: checked while it is still alone.
    fn check_fresh_data(&mut self, ctx: &mut Context<Self>) {
        if !self.book.is_provisional() || self.checking_data {
            return;
        }
        self.checking_data = true;
        let scan = self.links.scan.clone();
        let probe = async move {
            scan.send(Scan {
                start: None,
                end: None,
                limit: 1,
            })
            .await
        };
        ctx.spawn(
            actix::fut::wrap_future(probe).map(|res, act: &mut Self, ctx| {
                act.checking_data = false;
                if let Ok(Ok(page)) = res {
                    let alone = act.book.current().table.members() == [act.cfg.me.clone()];
                    if !page.entries.is_empty() && alone && act.book.is_provisional() {
                        act.book.confirm();
                        act.changed(ctx);
                    }
                }
            }),
        );
    }

    /// Rule 7, `drop_delay` after promotion: delete the keys of partitions owned no more.
    fn drop_partitions(&mut self, ctx: &mut Context<Self>) {
        if self.dropping || self.to_drop.is_empty() || self.book.transition().is_some() {
            return;
        }
        if self.drop_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        // Owned again meanwhile (a later layout): kept.
        let (stable, cur) = (self.book.stable().clone(), self.book.current().clone());
        let me = self.cfg.me.clone();
        self.to_drop.retain(|p| {
            !stable.table.primaries(*p).contains(&me) && !cur.table.primaries(*p).contains(&me)
        });
        if self.to_drop.is_empty() {
            return;
        }
        self.dropping = true;
        let parts = self.to_drop.clone();
        let (scan, write, bits) = (
            self.links.scan.clone(),
            self.links.write.clone(),
            self.bits(),
        );
        // Before anything is deleted, this node's copy of each partition is compared with
        // every current owner's by an anti-entropy exchange, and what an owner lacks is
        // joined there: a new owner fetched from one holder, and this one may hold a write
        // that holder missed.
        let mut plan: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for p in &parts {
            for owner in cur.table.primaries(*p) {
                plan.entry(owner.clone()).or_default().push(*p);
            }
        }
        let exchange = self.links.exchange.clone();
        let trees = self.links.trees.clone();
        let job = async move {
            if let Some(ae) = exchange {
                let plan = plan.into_iter().collect();
                match ae.send(crate::antientropy::ExchangeWith { plan }).await {
                    Ok(Ok(r)) => log::info!(
                        "handoff: before deleting {} partition(s): {} key(s) compared with their owners, {} repaired",
                        parts.len(),
                        r.keys_compared,
                        r.keys_repaired
                    ),
                    Ok(Err(e)) => return Err(format!("the exchange with the new owners did not complete: {e}")),
                    Err(e) => return Err(format!("anti-entropy actor: {e}")),
                }
            }
            let mut start = None;
            let mut deleted = 0u64;
            loop {
                let page = scan
                    .send(Scan {
                        start: start.take(),
                        end: None,
                        limit: 1024,
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let mut gone = Vec::new();
                for e in page.entries {
                    if parts.contains(&partition_for(&e.key, bits)) {
                        write
                            .send(Write {
                                key: e.key.clone(),
                                value: None,
                            })
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                        gone.push((e.key, None));
                        deleted += 1;
                    }
                }
                // Anti-entropy's trees forget them too (else a later exchange would think
                // this node still holds them).
                if let Some(t) = &trees {
                    if !gone.is_empty() {
                        t.do_send(crate::coordinator::LocalWrites(gone));
                    }
                }
                match page.next {
                    Some(n) => start = Some(n),
                    None => return Ok::<_, String>((parts, deleted)),
                }
            }
        };
        let h = ctx.spawn(actix::fut::wrap_future(job).map(|res, act: &mut Self, ctx| {
            act.dropping = false;
            act.drop_task = None;
            match res {
                Ok((parts, deleted)) => {
                    log::info!(
                        "handoff: deleted {deleted} key(s) of {} partition(s) this node no longer owns",
                        parts.len()
                    );
                    act.stats
                        .partitions_dropped
                        .fetch_add(parts.len() as u64, Relaxed);
                    act.stats.keys_dropped.fetch_add(deleted, Relaxed);
                    act.to_drop.retain(|p| !parts.contains(p));
                    act.dirty = true;
                    act.save(ctx);
                }
                Err(e) => {
                    log::warn!("handoff: deleting partitions no longer owned failed: {e}; retried in 30 s");
                    act.drop_after = Some(Instant::now() + Duration::from_secs(30));
                }
            }
        }));
        self.drop_task = Some(h);
    }

    /// Step 5: a leaving node that owns nothing departs.
    fn depart(&mut self, _: &mut Context<Self>) {
        if !self.leaving || self.left || self.book.transition().is_some() {
            return;
        }
        if !self.book.owns_nothing() {
            return;
        }
        self.left = true;
        log::info!("handoff: everything this node held is handed off; departing (status left)");
        if let Some(l) = &self.links.leave {
            l.do_send(Leave);
        }
    }

    /// A fetch unanswered this long is asked again (a chunk sent just as a connection
    /// died is lost without an error): a quarter of the stall timeout, 1 to 10 s.
    fn request_timeout(&self) -> Duration {
        (self.cfg.stall_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let timeout = self.request_timeout();
        self.pending
            .retain(|_, (at, _)| now.duration_since(*at) < timeout);
    }

    fn on_fetch(
        &mut self,
        from: NodeId,
        id: u64,
        partitions: Vec<u32>,
        after: Option<ByteBuf>,
        max_bytes: u32,
        ctx: &mut Context<Self>,
    ) {
        let q = self.book.current().table.partitions();
        if partitions.iter().any(|p| *p >= q) || self.serving >= MAX_SERVING {
            let reason = if self.serving >= MAX_SERVING {
                format!("{} is serving {MAX_SERVING} fetches already", self.cfg.me)
            } else {
                format!("a partition is out of range (cluster.partitions = {q})")
            };
            self.send(&from, TransferMsg::Refused { id, reason });
            return;
        }
        self.serving += 1;
        let (scan, bits) = (self.links.scan.clone(), self.bits());
        let keys_in = self.links.keys_in.clone().filter(|_| after.is_none());
        let parts = partitions.clone();
        let job = async move {
            let estimate = match keys_in {
                Some(k) => k.send(KeysIn(parts)).await.ok().flatten(),
                None => None,
            };
            let r = fetch::serve(
                scan,
                bits,
                partitions,
                after.map(|b| b.into_vec()),
                max_bytes,
            )
            .await;
            (r, estimate)
        };
        ctx.spawn(
            actix::fut::wrap_future(job).map(move |(r, estimate), act: &mut Self, _| {
                act.serving -= 1;
                let msg = match r {
                    Ok((objects, next)) => {
                        let bytes: usize = objects.iter().map(|(k, v)| k.len() + v.len()).sum();
                        act.stats.keys_sent.fetch_add(objects.len() as u64, Relaxed);
                        act.stats.bytes_sent.fetch_add(bytes as u64, Relaxed);
                        TransferMsg::Chunk {
                            id,
                            objects,
                            next,
                            estimate,
                        }
                    }
                    Err(reason) => TransferMsg::Refused { id, reason },
                };
                if !act.send(&from, msg) {
                    log::debug!("handoff: an answer to {from} could not be queued; it asks again");
                }
            }),
        );
    }

    fn report(&self) -> TransfersReport {
        let cur = self.book.current();
        let needs = self.book.needs();
        let waiting = if self.book.transition().is_none() || self.book.synced_current() {
            None
        } else if !self.book.may_proceed() {
            Some("a fresh node: waiting for the cluster's transfer state".into())
        } else if !self.book.acked_current() {
            Some("acknowledging the new layout (every write started before it must end)".into())
        } else if !self.book.all_acked() {
            let missing: Vec<String> = self.book.unacked().into_iter().map(|m| m.0).collect();
            Some(format!(
                "waiting for {} to acknowledge the new layout (a member that is down holds the transition until it is back or removed)",
                missing.join(", ")
            ))
        } else {
            None
        };
        let streams = self
            .streams
            .iter()
            .map(|(src, s)| {
                let p = lock(&s.progress);
                let secs = s.started.elapsed().as_secs_f64().max(0.001);
                let rate = (p.bytes as f64 / secs) as u64;
                let key_rate = p.keys as f64 / secs;
                let eta = p
                    .estimate
                    .filter(|_| key_rate > 0.0)
                    .map(|e| (e.saturating_sub(p.keys) as f64 / key_rate) as u64);
                StreamRow {
                    source: src.0.clone(),
                    target: self.cfg.me.0.clone(),
                    partitions: s.partitions.clone(),
                    state: if s.resumed { "resumed" } else { "running" }.into(),
                    keys: p.keys,
                    bytes: p.bytes,
                    estimate_keys: p.estimate,
                    bytes_per_sec: rate,
                    eta_secs: eta,
                    idle_ms: p.last_progress.elapsed().as_millis() as u64,
                }
            })
            .collect();
        TransfersReport {
            node: self.cfg.me.0.clone(),
            stable_version: self.book.stable().version,
            current_version: cur.version,
            in_transition: self.book.transition().is_some(),
            waiting,
            unsynced: self.book.unsynced().into_iter().map(|m| m.0).collect(),
            leaving: self.leaving,
            partitions_pending: needs
                .iter()
                .map(|n| n.partition)
                .filter(|p| !self.done.contains(p))
                .collect(),
            partitions_done: self.done.iter().copied().collect(),
            streams,
            to_drop: self.to_drop.clone(),
        }
    }
}

impl Actor for Handoff {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        self.publish();
        self.save(ctx);
        // The layout as it changes (a watch coalesces: at most one pending item).
        let rx = self.links.layout.clone();
        let changes = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        });
        ctx.add_stream(changes);
        ctx.run_interval(Duration::from_millis(250), |act, ctx| act.tick(ctx));
        ctx.run_interval(self.cfg.gossip_interval, |act, _| act.gossip(1));
    }
}

impl StreamHandler<()> for Handoff {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        self.on_layout(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The layout actor stopped: the node is shutting down.
    }
}

impl Handler<WatchTransition> for Handoff {
    type Result = MessageResult<WatchTransition>;

    fn handle(&mut self, _: WatchTransition, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.tx.subscribe())
    }
}

impl Handler<TransfersStatus> for Handoff {
    type Result = MessageResult<TransfersStatus>;

    fn handle(&mut self, _: TransfersStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.report())
    }
}

impl Handler<StartLeave> for Handoff {
    type Result = ResponseActFuture<Self, Result<String, String>>;

    fn handle(&mut self, _: StartLeave, ctx: &mut Context<Self>) -> Self::Result {
        if self.leaving {
            let r = Ok(format!(
                "{} is already leaving: layout {} is being handed off; `troupe admin transfers` on the other nodes shows progress",
                self.cfg.me,
                self.book.current().version
            ));
            return Box::pin(actix::fut::ready(r));
        }
        let Some(to) = self.links.leave_ring.clone() else {
            return Box::pin(actix::fut::ready(Err("no layout actor".into())));
        };
        // Leaving is written first: a crash right after the layout change must still end in
        // a departure after the restart (a stored layout without this node keeps it out).
        self.leaving = true;
        self.dirty = true;
        self.save(ctx);
        Box::pin(
            actix::fut::wrap_future(async move { to.send(crate::layout::LeaveRing).await }).map(
                |res, act: &mut Self, ctx| {
                    let version = match res.map_err(|e| format!("layout actor: {e}")).and_then(|r| r) {
                        Ok(v) => v,
                        Err(e) => {
                            act.leaving = false;
                            act.dirty = true;
                            act.save(ctx);
                            return Err(e);
                        }
                    };
                    act.save(ctx);
                    Ok(format!(
                        "{} is leaving: layout {version} holds the others; it hands its partitions to them and then departs (status left). `troupe admin transfers` on the other nodes shows progress",
                        act.cfg.me
                    ))
                },
            ),
        )
    }
}

impl Handler<Ask> for Handoff {
    type Result = ();

    fn handle(&mut self, ask: Ask, _: &mut Context<Self>) {
        let id = self.next_id;
        self.next_id += 1;
        let msg = match ask.msg {
            TransferMsg::Fetch {
                partitions,
                after,
                max_bytes,
                ..
            } => TransferMsg::Fetch {
                id,
                partitions,
                after,
                max_bytes,
            },
            other => other,
        };
        if !self.send(&ask.to, msg) {
            let _ = ask.reply.send(Err(format!(
                "cannot queue to {} (unknown address, unreachable or its queue is full)",
                ask.to
            )));
            return;
        }
        self.pending.insert(id, (Instant::now(), ask.reply));
    }
}

impl Handler<Moved> for Handoff {
    type Result = ();

    fn handle(&mut self, m: Moved, ctx: &mut Context<Self>) {
        let Some(s) = self.streams.get(&m.source) else {
            return;
        };
        let parts = s.partitions.clone();
        self.cursors.insert(parts, m.after);
        self.dirty = true;
        self.save(ctx);
    }
}

impl Handler<StreamEnded> for Handoff {
    type Result = ();

    fn handle(&mut self, m: StreamEnded, ctx: &mut Context<Self>) {
        let Some(s) = self.streams.remove(&m.source) else {
            return;
        };
        let p = lock(&s.progress);
        self.stats.keys_received.fetch_add(p.keys, Relaxed);
        self.stats.bytes_received.fetch_add(p.bytes, Relaxed);
        drop(p);
        match m.result {
            Ok(()) => {
                self.stats.streams_completed.fetch_add(1, Relaxed);
                log::info!(
                    "handoff: {} partition(s) from {} complete",
                    s.partitions.len(),
                    m.source
                );
                self.cursors.remove(&s.partitions);
                self.done.extend(s.partitions);
            }
            Err(e) => {
                self.stats.streams_failed.fetch_add(1, Relaxed);
                log::warn!(
                    "handoff: the stream from {} failed: {e}; retrying from its cursor",
                    m.source
                );
                self.avoid.insert(m.source);
                self.queue.push(s.partitions);
            }
        }
        self.dirty = true;
        self.save(ctx);
    }
}

impl Handler<TransferInbound> for Handoff {
    type Result = ();

    fn handle(&mut self, m: TransferInbound, ctx: &mut Context<Self>) {
        match m.msg {
            TransferMsg::State(w) => {
                let Ok(stable) = Layout::from_wire(w.stable) else {
                    log::debug!(
                        "handoff: a state from {} with an invalid layout; dropped",
                        m.from
                    );
                    return;
                };
                if stable.table.config() != self.book.current().table.config() {
                    return; // another Q or N: the layout actor logs that
                }
                // A fresh node's provisional state: it needs ours now (until it has it, it
                // reads from its own empty layout), so answer at once.
                if w.provisional && !self.book.is_provisional() {
                    self.send(&m.from, TransferMsg::State(self.wire_state()));
                }
                let before = self.book.stable().clone();
                let merged = self.book.merge(stable, w.provisional, &w.acked, &w.synced);
                if merged.stable {
                    // A peer promoted first: what this node gave up is dropped as if it
                    // had promoted itself.
                    self.promoted(&before);
                }
                if merged.changed {
                    self.changed(ctx);
                }
            }
            TransferMsg::Fetch {
                id,
                partitions,
                after,
                max_bytes,
            } => self.on_fetch(m.from, id, partitions, after, max_bytes, ctx),
            TransferMsg::Chunk {
                id,
                objects,
                next,
                estimate,
            } => {
                if let Some((_, tx)) = self.pending.remove(&id) {
                    let _ = tx.send(Ok((objects, next, estimate)));
                }
            }
            TransferMsg::Refused { id, reason } => {
                if let Some((_, tx)) = self.pending.remove(&id) {
                    let _ = tx.send(Err(format!("{} refused: {reason}", m.from)));
                }
            }
        }
    }
}
