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
//! Files: `book` (the rules), `streams` (the new owner's plan and streams), `fetch` (the
//! stream and fetch tasks), `serve` (the holder's side), `cleanup` (promotion's drops),
//! `report` (`admin transfers`), `store` (`TRANSFERS`); this file holds the actor, its
//! state, the tick, gossip and persistence.
//!
//! Invariants: the book only moves forward (see `book`); a cursor never passes an object
//! that is not durably joined; nothing is deleted before every new owner synced and was
//! compared with this node's copy.

pub mod book;
mod cleanup;
mod fetch;
mod report;
mod serve;
pub mod store;
mod streams;

pub use report::{StreamRow, TransfersReport, TransfersStatus};
pub use streams::StreamProgress;
use streams::{ChunkAnswer, Stream};

use crate::antientropy::KeysIn;
use crate::coordinator::JoinLocal;
use crate::membership::actor::{Leave, RingMembers};
use crate::memtable::{Scan, Write};
use crate::peer::{PeerTransport, TransferInbound};
use crate::ring::Layout;
use actix::prelude::*;
use book::{assign, TransferBook};
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
    /// Anti-entropy's trees, told of the keys a drop deletes (through the coordinator, which
    /// orders them after the writes it noted before).
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
        if !cursors.is_empty() {
            log::info!(
                "handoff: {} unfinished stream(s) of layout {} saved; they resume from their cursors",
                cursors.len(),
                plan_for.version
            );
        }
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
