//! The AntiEntropy actor: holds this node's trees, answers peers' exchanges, and runs
//! rounds (every `interval`, or now: `troupe admin repair`).
//!
//! Receives: [`LocalWrites`] (the coordinator's notification of every local write),
//! [`AntiEntropyInbound`] (peers' requests, and answers to ours), [`StartRepair`] and
//! [`RepairStatus`] (admin), and from its own tasks `RebuildPage`, `Ask`, `Feed`,
//! `RoundEnded`. Emits: anti-entropy frames on the peer bulk lane, [`JoinLocal`] to the
//! coordinator, `Get` / `Scan` to the Memtable.
//!
//! Invariants:
//! - The trees are rebuilt at start-up from a paced scan of the data (a task: scan pages on
//!   the blocking pool, hashes on the blocking pool, the actor only sets them). Until that
//!   ends this node neither starts exchanges nor answers tree requests (its trees would
//!   show false differences); a write landing during the rebuild wins over the scan's
//!   older view of its key (`dirty`).
//! - Repairs only ever join (`JoinLocal`, a replica's join under the key lock, here and at
//!   the peer): an exchange can add what a replica missed, never overwrite a write.
//! - One round at a time; one exchange at a time within it; every request has an id and a
//!   deadline (`request_timeout`); a late answer is dropped.

use super::exchange::{answer, Exchange, ExchangeError};
use super::round::{self, RoundCtx};
use super::tree::{tree_hash, Trees};
use super::{AntiEntropyConfig, AntiEntropyStats, RepairReport};
use crate::coordinator::placement::{Placement, RingInputs};
use crate::coordinator::{JoinLocal, LocalWrites};
use crate::memtable::{Get, Scan};
use crate::peer::{AntiEntropyInbound, PeerTransport};
use crate::stats::ActorCounters;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use troupe_protocol::antientropy::{AeMsg, AeReq, AeResp};
use troupe_protocol::swim::NodeId;

/// Why a round cannot start; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairRefused {
    #[error("the anti-entropy trees are still being built from the data ({keys} keys so far); try again shortly")]
    NotReady { keys: usize },
    #[error("partition {partition} does not exist (cluster.partitions = {partitions})")]
    NoSuchPartition { partition: u32, partitions: u32 },
}

/// Run a round now (admin `repair [PARTITION]`): the report of the round started, or of
/// the one already running.
#[derive(Message)]
#[rtype(result = "Result<RepairReport, RepairRefused>")]
pub struct StartRepair {
    pub partition: Option<u32>,
}

/// The running or last round's report (`None`: no round yet).
#[derive(Message)]
#[rtype(result = "Option<RepairReport>")]
pub struct RepairStatus;

/// The hash this node's trees hold for a key (`None`: absent), and whether the start-up
/// rebuild has finished.
#[derive(Message)]
#[rtype(result = "(Option<u64>, bool)")]
pub struct TreeHashOf(pub Vec<u8>);

/// A page of the start-up rebuild: keys with their tree hashes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RebuildPage {
    pub entries: Vec<(Vec<u8>, Option<u64>)>,
    pub done: bool,
}

/// A round's request to a peer; the answer or why there is none.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Ask {
    pub peer: NodeId,
    pub req: AeReq,
    pub reply: oneshot::Sender<Result<AeResp, String>>,
}

/// Compare a peer's answer with the local trees.
#[derive(Message)]
#[rtype(result = "(Box<Exchange>, Result<(), ExchangeError>)")]
pub(super) struct Feed(pub Box<Exchange>, pub AeResp);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RoundEnded;

pub struct AntiEntropy {
    cfg: AntiEntropyConfig,
    trees: Trees,
    /// The start-up rebuild has finished.
    ready: bool,
    /// Keys written since the rebuild started: their notification is newer than the scan.
    dirty: HashSet<Vec<u8>>,
    storage_get: Recipient<Get>,
    storage_scan: Recipient<Scan>,
    join: Recipient<JoinLocal>,
    transport: Option<PeerTransport>,
    ring: RingInputs,
    next_id: u64,
    /// Our requests waiting for an answer: deadline and where the answer goes.
    pending: HashMap<u64, (Instant, oneshot::Sender<Result<AeResp, String>>)>,
    round: Option<Arc<Mutex<RepairReport>>>,
    running: bool,
    rounds_started: u64,
    stats: Arc<AntiEntropyStats>,
    counters: Arc<ActorCounters>,
}

impl AntiEntropy {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: AntiEntropyConfig,
        trees: Trees,
        storage_get: Recipient<Get>,
        storage_scan: Recipient<Scan>,
        join: Recipient<JoinLocal>,
        transport: Option<PeerTransport>,
        ring: RingInputs,
        counters: Arc<ActorCounters>,
    ) -> AntiEntropy {
        AntiEntropy {
            cfg,
            trees,
            ready: false,
            dirty: HashSet::new(),
            storage_get,
            storage_scan,
            join,
            transport,
            ring,
            next_id: rand::random::<u64>() >> 1,
            pending: HashMap::new(),
            round: None,
            running: false,
            rounds_started: 0,
            stats: Arc::default(),
            counters,
        }
    }

    pub fn stats(&self) -> Arc<AntiEntropyStats> {
        self.stats.clone()
    }

    fn placement(&mut self) -> Placement {
        self.ring.placement()
    }

    /// Sends `msg` to `to`; false when it could not be queued.
    fn send(&self, to: &NodeId, addr: Option<&str>, msg: AeMsg) -> bool {
        let (Some(t), Some(addr)) = (&self.transport, addr) else {
            return false;
        };
        let n = msg.encode().len() as u64;
        let queued = t.send_antientropy(to, addr, msg);
        if queued {
            self.stats.bytes_sent.fetch_add(n, Relaxed);
        }
        queued
    }

    /// The exchanges of a round: per other up primary, the partitions we both hold (only
    /// `only` when given).
    fn plan(&mut self, only: Option<u32>) -> Vec<(NodeId, Vec<u32>)> {
        let p = self.placement();
        let me = &self.cfg.me;
        let mut plan: std::collections::BTreeMap<NodeId, Vec<u32>> = Default::default();
        for part in 0..p.table.partitions() {
            if only.is_some_and(|o| o != part) {
                continue;
            }
            let primaries = p.table.primaries(part);
            if !primaries.contains(me) {
                continue;
            }
            for q in primaries.iter().filter(|q| *q != me && p.is_up(q)) {
                plan.entry(q.clone()).or_default().push(part);
            }
        }
        plan.into_iter().collect()
    }

    fn start_round(
        &mut self,
        only: Option<u32>,
        ctx: &mut Context<Self>,
    ) -> Result<Arc<Mutex<RepairReport>>, RepairRefused> {
        if !self.ready {
            return Err(RepairRefused::NotReady {
                keys: self.trees.len(),
            });
        }
        if let Some(p) = only {
            if p >= self.cfg.partitions {
                return Err(RepairRefused::NoSuchPartition {
                    partition: p,
                    partitions: self.cfg.partitions,
                });
            }
        }
        if self.running {
            if let Some(r) = &self.round {
                return Ok(r.clone());
            }
        }
        let plan = self.plan(only);
        self.rounds_started += 1;
        self.stats.rounds.fetch_add(1, Relaxed);
        let report = Arc::new(Mutex::new(RepairReport::new(
            self.rounds_started,
            only,
            &plan,
        )));
        log::info!(
            "anti-entropy round {}: {} exchange(s) over {} partition replica pair(s)",
            self.rounds_started,
            plan.len(),
            plan.iter().map(|(_, p)| p.len()).sum::<usize>()
        );
        self.round = Some(report.clone());
        self.running = true;
        let rc = self.round_ctx(ctx, report.clone());
        actix::spawn(round::run(rc, plan));
        Ok(report)
    }

    fn round_ctx(&self, ctx: &Context<Self>, report: Arc<Mutex<RepairReport>>) -> RoundCtx {
        RoundCtx {
            addr: ctx.address(),
            join: self.join.clone(),
            get: self.storage_get.clone(),
            report,
            stats: self.stats.clone(),
            shape: self.trees.shape(),
            max_bytes_per_sec: self.cfg.max_bytes_per_sec,
        }
    }

    /// Answers a peer's request: tree questions from the trees at once, objects through
    /// storage and the coordinator in a task.
    fn on_request(&mut self, from: NodeId, id: u64, req: AeReq, ctx: &mut Context<Self>) {
        let addr = self.placement().peer_addr(&from).map(str::to_string);
        let Some(addr) = addr else {
            log::debug!("anti-entropy request from {from}, whose address is unknown; dropped");
            return;
        };
        if let Some(resp) = answer(&self.trees, &req) {
            let resp = if self.ready {
                resp
            } else {
                AeResp::Refused {
                    reason: format!("{} is rebuilding its anti-entropy trees", self.cfg.me),
                }
            };
            self.send(&from, Some(&addr), AeMsg::Resp { id, resp });
            return;
        }
        let me = ctx.address();
        let (get, join) = (self.storage_get.clone(), self.join.clone());
        actix::spawn(async move {
            let resp = round::serve_objects(req, get, join).await;
            me.do_send(SendResp {
                to: from,
                addr,
                id,
                resp,
            });
        });
    }

    fn expire(&mut self) {
        let now = Instant::now();
        self.pending.retain(|_, (deadline, _)| *deadline > now);
    }
}

/// An answer a task computed, sent from the actor (which counts the bytes).
#[derive(Message)]
#[rtype(result = "()")]
struct SendResp {
    to: NodeId,
    addr: String,
    id: u64,
    resp: AeResp,
}

impl Handler<SendResp> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, m: SendResp, _: &mut Context<Self>) {
        self.counters.received();
        let msg = AeMsg::Resp {
            id: m.id,
            resp: m.resp,
        };
        if !self.send(&m.to, Some(&m.addr), msg) {
            log::debug!("anti-entropy answer to {} could not be queued", m.to);
        }
    }
}

impl Actor for AntiEntropy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        self.counters.started();
        actix::spawn(round::rebuild(
            ctx.address(),
            self.storage_scan.clone(),
            self.cfg.max_bytes_per_sec,
        ));
        ctx.run_interval(Duration::from_secs(1), |act, _| act.expire());
        if self.cfg.enabled {
            ctx.run_interval(self.cfg.interval, |act, ctx| {
                // No scheduled round while the ring is in transition: the new owners are
                // being filled by the partition transfers, and an exchange with them would
                // move the same data a second time (`admin repair` still runs one).
                let in_transition = act.placement().stable.is_some();
                if act.ready && !act.running && !in_transition {
                    if let Err(e) = act.start_round(None, ctx) {
                        log::warn!("anti-entropy round not started: {e}");
                    }
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<LocalWrites> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, LocalWrites(writes): LocalWrites, _: &mut Context<Self>) {
        self.counters.received();
        for w in writes {
            let hash = w.clock.map(|c| c.hash());
            self.trees.set_placed(&w.key, w.digest.as_ref(), hash);
            if !self.ready {
                self.dirty.insert(w.key);
            }
        }
        self.stats.tree_keys.store(self.trees.len() as u64, Relaxed);
    }
}

impl Handler<RebuildPage> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, page: RebuildPage, _: &mut Context<Self>) {
        self.counters.received();
        for (key, hash) in page.entries {
            if !self.dirty.contains(&key) {
                self.trees.set(&key, hash);
            }
        }
        self.stats.tree_keys.store(self.trees.len() as u64, Relaxed);
        if page.done {
            self.ready = true;
            self.dirty = HashSet::new();
            self.stats.ready.store(1, Relaxed);
            log::info!(
                "anti-entropy trees built: {} key(s) in {} partition(s) held",
                self.trees.len(),
                (0..self.cfg.partitions)
                    .filter(|p| self.trees.keys_in(*p) > 0)
                    .count()
            );
        }
    }
}

impl Handler<AntiEntropyInbound> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, m: AntiEntropyInbound, ctx: &mut Context<Self>) {
        self.counters.received();
        match m.msg {
            AeMsg::Req { id, req } => {
                self.stats.bytes_received.fetch_add(
                    AeMsg::Req {
                        id,
                        req: req.clone(),
                    }
                    .encode()
                    .len() as u64,
                    Relaxed,
                );
                self.on_request(m.from, id, req, ctx)
            }
            AeMsg::Resp { id, resp } => {
                let Some((_, tx)) = self.pending.remove(&id) else {
                    log::debug!("late anti-entropy answer {id} from {}; dropped", m.from);
                    return;
                };
                let msg = AeMsg::Resp { id, resp };
                self.stats
                    .bytes_received
                    .fetch_add(msg.encode().len() as u64, Relaxed);
                let AeMsg::Resp { resp, .. } = msg else {
                    return;
                };
                let _ = tx.send(Ok(resp));
            }
        }
    }
}

impl Handler<Ask> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, ask: Ask, _: &mut Context<Self>) {
        self.counters.received();
        let id = self.next_id;
        self.next_id += 1;
        let addr = self.placement().peer_addr(&ask.peer).map(str::to_string);
        if !self.send(&ask.peer, addr.as_deref(), AeMsg::Req { id, req: ask.req }) {
            let _ = ask.reply.send(Err(format!(
                "cannot queue to {} (unknown address, unreachable or its queue is full)",
                ask.peer
            )));
            return;
        }
        let deadline = Instant::now() + self.cfg.request_timeout;
        self.pending.insert(id, (deadline, ask.reply));
    }
}

impl Handler<Feed> for AntiEntropy {
    type Result = MessageResult<Feed>;

    fn handle(&mut self, Feed(mut ex, resp): Feed, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let res = ex.on_answer(&self.trees, resp);
        MessageResult((ex, res))
    }
}

impl Handler<RoundEnded> for AntiEntropy {
    type Result = ();

    fn handle(&mut self, _: RoundEnded, _: &mut Context<Self>) {
        self.counters.received();
        self.running = false;
    }
}

impl Handler<StartRepair> for AntiEntropy {
    type Result = Result<RepairReport, RepairRefused>;

    fn handle(&mut self, m: StartRepair, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let r = self.start_round(m.partition, ctx)?;
        let report = r.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(report)
    }
}

impl Handler<RepairStatus> for AntiEntropy {
    type Result = Option<RepairReport>;

    fn handle(&mut self, _: RepairStatus, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let r = self.round.as_ref()?;
        let report = r.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(report)
    }
}

impl Handler<TreeHashOf> for AntiEntropy {
    type Result = MessageResult<TreeHashOf>;

    fn handle(&mut self, m: TreeHashOf, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        MessageResult((self.trees.get(&m.0), self.ready))
    }
}

/// Hashes a scan page's entries (runs on the blocking pool: decoding is CPU work).
pub(super) fn hash_entries(entries: Vec<crate::engine::Entry>) -> Vec<(Vec<u8>, Option<u64>)> {
    entries
        .into_iter()
        .map(|e| {
            let h = e
                .value
                .and_then(|v| troupe_protocol::object::Object::decode(&v).ok())
                .and_then(|o| tree_hash(&o));
            (e.key, h)
        })
        .collect()
}

/// Keys this node's trees hold in `partitions` (a transfer's progress estimate); `None`
/// until the start-up rebuild finished.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct KeysIn(pub Vec<u32>);

impl Handler<KeysIn> for AntiEntropy {
    type Result = Option<u64>;

    fn handle(&mut self, KeysIn(parts): KeysIn, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        self.ready
            .then(|| parts.iter().map(|p| self.trees.keys_in(*p) as u64).sum())
    }
}

/// Exchange these partitions with these peers now, and answer when done: the Handoff
/// actor's check before it deletes partitions it gave up (each new owner then holds every
/// key this node had). `Err` when it could not run or any exchange failed.
#[derive(Message)]
#[rtype(result = "Result<RepairReport, String>")]
pub struct ExchangeWith {
    pub plan: Vec<(NodeId, Vec<u32>)>,
}

impl Handler<ExchangeWith> for AntiEntropy {
    type Result = ResponseFuture<Result<RepairReport, String>>;

    fn handle(&mut self, m: ExchangeWith, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        if !self.ready || self.running {
            let why = if self.ready {
                "an anti-entropy round is running"
            } else {
                "the anti-entropy trees are still being built"
            };
            return Box::pin(async move { Err(why.to_string()) });
        }
        self.rounds_started += 1;
        self.stats.rounds.fetch_add(1, Relaxed);
        let report = Arc::new(Mutex::new(RepairReport::new(
            self.rounds_started,
            None,
            &m.plan,
        )));
        self.round = Some(report.clone());
        self.running = true;
        let rc = self.round_ctx(ctx, report.clone());
        Box::pin(async move {
            round::run(rc, m.plan).await;
            let r = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if r.errors.is_empty() {
                Ok(r)
            } else {
                Err(r.errors.join("; "))
            }
        })
    }
}
