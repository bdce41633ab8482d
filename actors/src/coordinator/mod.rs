//! The ReplicationCoordinator actor: every client get, put and delete goes through it, and
//! it answers the replication requests other nodes send this node as a replica.
//!
//! Receives: [`ClientBatch`] (a connection's decoded gets and writes, one message per
//! batch of received frames), [`ClientGet`] and [`ClientWrite`] (one request each), [`DataInbound`] (peer
//! data batches: requests from other coordinators and answers to ours), `WritesFinished`
//! (local writes the Memtable finished, see `memtable_link`), and its own timers.
//! Emits: `Get` / `UpdateBatch` (a turn's updates, up to 64 a message) to the local
//! Memtable (through `Recipient`s), data batches to peers through the [`PeerTransport`]'s
//! data lane.
//!
//! Pieces:
//! - [`quorum`]: the pure quorum bookkeeping of one request (when to answer, read repair).
//! - [`keylocks`]: per-key exclusion for the replica's read-modify-write.
//! - `deadlines`: when each request in flight times out (pure).
//! - [`placement`]: the partition table over the current ring members.
//! - `requests`: request bookkeeping, the coordinated and the forwarded write, deadlines.
//! - `get`: the quorum read and its read repair.
//! - `replica`: this node's answers to other coordinators.
//! - `sloppy`: sloppy quorum (hints for down primaries) and hint delivery.
//! - `local`: this replica's object reads and joins through the Memtable (`Update`).
//! - `memtable_link`: the batched exchange with the Memtable (updates out in
//!   `UpdateBatch`es, finished local writes back through one queue).
//! - `api`: the messages, replies, settings and shared counters (re-exported here).
//! - [`peer_stats`]: peer RPC counts and latencies for the metrics endpoint.
//! - `purge`: delete markers reported to tombstone GC, and its purges.
//!
//! Invariants:
//! - Only a primary issues a dot: a node that is not a primary for the key forwards the
//!   write to the first primary that is up.
//! - A write is acknowledged only after `w` replicas (the coordinator first) said durable.
//!   Before writing anything the coordinator checks that at least `w` primaries are up,
//!   counting a distinct usable fallback for each down primary when hinted handoff is on
//!   (`unavailable` otherwise: nothing was applied); once it wrote, too few
//!   acknowledgements is `timeout` (the write may or may not become visible). A fallback's
//!   durable hint counts as an acknowledgement; a hint this node keeps itself never does.
//! - Every request, local operation and peer RPC in flight counts toward
//!   `max_inflight`; past it a new client request gets `overloaded` at once. Read repairs
//!   in flight are bounded by `max_repairs`; a repair beyond it is skipped (anti-entropy
//!   catches up) and counted.
//! - Every peer RPC belongs to a request with a deadline; answers that arrive after it are
//!   dropped.

mod ae_hooks;
mod api;
mod deadlines;
pub use ae_hooks::{JoinLocal, LocalWrite, LocalWrites, WritesDrained};
pub use api::*;
pub mod describe;
mod get;
pub mod keylocks;
mod local;
mod memtable_link;
mod next;
pub use local::{LocalResult, Stored};
pub mod keys;
pub mod peer_stats;
pub mod placement;
mod purge;
pub use purge::{PurgeTombstones, TombstoneWritten};
pub mod quorum;
mod replica;
mod requests;
mod sloppy;

use crate::idmap::IdMap;
use crate::memtable::{Get, UpdateBatch, UpdateThen};
use crate::peer::{DataInbound, PeerTransport};
use crate::ring::PartitionConfig;
use crate::stats::ActorCounters;
use actix::prelude::*;
use keylocks::KeyLocks;
use placement::{Placement, RingInputs};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use troupe_protocol::data::{DataMsg, DataResp};
use troupe_protocol::object::ActorId;
use troupe_protocol::swim::NodeId;
use troupe_protocol::{ErrorCode, Quorum};

/// Where the outcome of a flow goes: a local client, or a peer that asked us.
pub(crate) enum ReplyTo<T> {
    Client(oneshot::Sender<Result<T, ClientError>>),
    /// A connection's callback ([`ClientBatch`]).
    Call(Answer<T>),
    Peer {
        to: NodeId,
        id: u64,
    },
}

pub struct Coordinator {
    cfg: CoordinatorConfig,
    storage_get: Recipient<Get>,
    /// Reads answered from memory or the block cache on this thread (`with_local_reads`);
    /// the rest go to the Memtable as `Get`.
    local_reads: Option<crate::memtable::view::LocalReads>,
    storage_update: Recipient<UpdateBatch<local::LocalResult>>,
    /// Local updates waiting to go to the Memtable as one `UpdateBatch`: at this turn's
    /// `FlushOutbox`, or once 64 are queued.
    local_updates: Vec<UpdateThen<local::LocalResult>>,
    /// Where local writes come back finished (`memtable_link`; made on first use).
    finished: Option<Arc<memtable_link::Finished>>,
    /// The emptied batch of the last `WritesFinished`, kept for its capacity.
    finished_spare: Vec<local::LocalWriteFinished>,
    transport: Option<PeerTransport>,
    ring: RingInputs,
    placement: Arc<Placement>,
    /// The Memtable's scans, for key listing (`with_scan`); `None`: `keys` is refused.
    storage_scan: Option<Recipient<crate::memtable::Scan>>,
    /// Where delete markers this replica stores are reported (tombstone GC).
    tombstones: Option<Recipient<TombstoneWritten>>,
    /// The HintedHandoff actor (`with_hints`); `None`: hinted handoff is off, writes use
    /// primaries only and `Hint` requests are refused.
    hints: Option<Recipient<crate::hints::StoreHint>>,
    next_id: u64,
    /// Client-level requests in flight (gets, coordinated writes, forwards). Ids are ours,
    /// so a fast unkeyed hash.
    requests: IdMap<u64, requests::Request>,
    /// Our outstanding peer RPCs by rpc id.
    rpcs: IdMap<u64, requests::OutRpc>,
    /// Data messages waiting for this turn's flush, per destination.
    outbox: IdMap<NodeId, Vec<DataMsg>>,
    /// A `FlushOutbox` is on its way (the outbox or `local_updates` has something).
    flush_scheduled: bool,
    /// When each request in flight times out, checked by one periodic tick (timers in
    /// the actor's context would be polled on every message).
    deadlines: deadlines::Deadlines,
    locks: KeyLocks<local::LocalOp>,
    /// Local operations (reads, joins) running or waiting.
    local_ops: usize,
    repairs_inflight: usize,
    /// The last hybrid logical time issued to a register write (see `crdt::hlc_now`).
    hlc: u64,
    stats: Arc<CoordinatorStats>,
    counters: Arc<ActorCounters>,
    /// The Memtable's counters: our `Get`s and `Update`s are counted as sent to it here, so
    /// its mailbox depth shows the reads and writes waiting for it.
    storage_counters: Arc<ActorCounters>,
    /// "ok" or why data is under-replicated, for `admin status`.
    replication_note: Arc<std::sync::Mutex<String>>,
    /// The AntiEntropy actor, told of every local write (`ae_hooks`), the writes not yet
    /// told (at most `AE_BATCH`), and whether a timer will send them.
    ae_notify: Option<Recipient<LocalWrites>>,
    ae_pending: Vec<ae_hooks::LocalWrite>,
    ae_flush_armed: bool,
}

fn replication_note(p: &Placement) -> String {
    if p.table.under_replicated() {
        format!(
            "under-replicated: {} ring member(s) for cluster.n = {}, so each key has {} replica(s)",
            p.table.members().len(),
            p.table.n(),
            p.n()
        )
    } else {
        "ok".to_string()
    }
}

impl Coordinator {
    pub fn new(
        cfg: CoordinatorConfig,
        storage_get: Recipient<Get>,
        storage_update: Recipient<UpdateBatch<local::LocalResult>>,
        transport: Option<PeerTransport>,
        mut ring: RingInputs,
        counters: Arc<ActorCounters>,
        storage_counters: Arc<ActorCounters>,
    ) -> Result<Coordinator, String> {
        let placement = Arc::new(ring.placement());
        let want = partition_config(&cfg);
        if placement.table.partitions() != want.partitions {
            return Err(format!(
                "the layout has {} partitions, cluster.partitions is {}",
                placement.table.partitions(),
                want.partitions
            ));
        }
        let note = replication_note(&placement);
        Ok(Coordinator {
            replication_note: Arc::new(std::sync::Mutex::new(note)),
            cfg,
            storage_get,
            local_reads: None,
            storage_update,
            local_updates: Vec::new(),
            finished: None,
            finished_spare: Vec::new(),
            transport,
            ring,
            placement,
            storage_scan: None,
            tombstones: None,
            hints: None,
            // Random start: a late answer to the previous process's RPC (frames live up to
            // the data lane's max age) must not match a request of this one.
            next_id: rand::random::<u64>() >> 1,
            requests: IdMap::default(),
            rpcs: IdMap::default(),
            outbox: IdMap::default(),
            flush_scheduled: false,
            deadlines: Default::default(),
            locks: KeyLocks::default(),
            local_ops: 0,
            repairs_inflight: 0,
            hlc: 0,
            stats: Arc::default(),
            counters,
            storage_counters,
            ae_notify: None,
            ae_pending: Vec::new(),
            ae_flush_armed: false,
        })
    }

    /// Lets this coordinator read memory directly (see `memtable::view`).
    pub fn with_local_reads(mut self, reads: crate::memtable::view::LocalReads) -> Coordinator {
        self.local_reads = Some(reads);
        self
    }

    /// Lets this coordinator list keys: the storage actor's scans.
    pub fn with_scan(mut self, scan: Recipient<crate::memtable::Scan>) -> Coordinator {
        self.storage_scan = Some(scan);
        self
    }

    pub fn stats(&self) -> Arc<CoordinatorStats> {
        self.stats.clone()
    }

    /// "ok" or why data is under-replicated; kept current as the ring changes.
    pub fn replication_note(&self) -> Arc<std::sync::Mutex<String>> {
        self.replication_note.clone()
    }

    /// The placement for a new request: rebuilt if the layout or membership changed since
    /// the last one.
    fn placement(&mut self) -> Arc<Placement> {
        if self.ring.has_changed() {
            let p = self.ring.placement();
            if p.version != self.placement.version {
                log::info!(
                    "ring layout {}: {} member(s), {} replica(s) per key",
                    p.version,
                    p.table.members().len(),
                    p.n()
                );
            }
            *self
                .replication_note
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = replication_note(&p);
            self.placement = Arc::new(p);
        }
        self.placement.clone()
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Requests, local operations and RPC-waiting work in flight.
    fn inflight(&self) -> usize {
        self.requests.len() + self.local_ops
    }

    fn overloaded(&self) -> Option<ClientError> {
        let n = self.inflight();
        (n >= self.cfg.max_inflight).then(|| {
            self.stats.overloaded.fetch_add(1, Relaxed);
            ClientError::new(
                ErrorCode::Overloaded,
                format!(
                    "{n} replication requests in flight (limit {}); retry with backoff",
                    self.cfg.max_inflight
                ),
            )
        })
    }

    /// Queues `msg` for `to`; all messages queued in this turn leave as one frame per peer.
    fn send(&mut self, to: &NodeId, msg: DataMsg, ctx: &mut Context<Self>) {
        self.outbox.entry(to.clone()).or_default().push(msg);
        self.schedule_flush(ctx);
    }

    /// Flushes the outbox and the local updates once the messages now being handled are
    /// done.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            // A message to ourselves, not a zero-delay timer (the timer wheel would add up
            // to a millisecond per hop): it runs once the messages now being handled are
            // done, so everything they queued leaves in one frame per peer.
            ctx.notify(FlushOutbox);
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.flush_local_updates();
        // The view may have moved since the last client request: a node that only serves
        // replica traffic must still find the peers that ask it.
        let placement = self.placement();
        for (to, batch) in std::mem::take(&mut self.outbox) {
            for chunk in split_by_size(batch, self.cfg.max_batch_bytes) {
                let sent = match (&self.transport, placement.peer_addr(&to)) {
                    (Some(t), Some(addr)) => t.send_data(&to, addr, chunk.clone()),
                    _ => false,
                };
                if !sent {
                    self.undeliverable(&to, chunk, ctx);
                }
            }
        }
    }

    /// A chunk could not be queued to `to`: fail our requests in it at once rather than
    /// wait for their deadline; answers we owed `to` are lost (its requests time out).
    fn undeliverable(&mut self, to: &NodeId, chunk: Vec<DataMsg>, ctx: &mut Context<Self>) {
        for msg in chunk {
            match msg {
                DataMsg::Req { id, .. } => self.on_rpc_answer(
                    to,
                    id,
                    DataResp::Failed {
                        code: "unavailable".into(),
                        msg: format!("cannot queue to {to} (unknown address, unreachable or its queue is full)"),
                    },
                    ctx,
                ),
                DataMsg::Resp { .. } => {
                    self.stats.responses_dropped.fetch_add(1, Relaxed);
                    log::debug!("an answer to {to} could not be queued; its request will time out");
                }
            }
        }
    }

    /// Answers a flow's outcome to its client or peer.
    fn reply<T>(
        &mut self,
        to: ReplyTo<T>,
        result: Result<T, ClientError>,
        as_resp: impl FnOnce(T) -> DataResp,
        ctx: &mut Context<Self>,
    ) {
        if let Err(e) = &result {
            match e.code {
                ErrorCode::Unavailable => self.stats.unavailable.fetch_add(1, Relaxed),
                ErrorCode::Timeout => self.stats.timeouts.fetch_add(1, Relaxed),
                _ => 0,
            };
        }
        match to {
            ReplyTo::Client(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Call(answer) => answer(result),
            ReplyTo::Peer { to, id } => {
                let resp = match result {
                    Ok(v) => as_resp(v),
                    Err(e) => DataResp::Failed {
                        code: e.code.as_str().to_string(),
                        msg: e.msg,
                    },
                };
                self.send(&to, DataMsg::Resp { id, resp }, ctx);
            }
        }
    }
}

/// An upper bound of a message's encoded size (its byte fields plus field names and
/// headers), to keep every frame below the peer frame limit.
fn size_estimate(m: &DataMsg) -> usize {
    use troupe_protocol::data::DataReq;
    64 + match m {
        DataMsg::Req { req, .. } => match req {
            DataReq::Get { key } => key.len(),
            DataReq::Put { key, object } => key.len() + object.len(),
            DataReq::Hint {
                primary,
                key,
                object,
            } => primary.len() + key.len() + object.len(),
            DataReq::Keys {
                prefix,
                after,
                partitions,
                ..
            } => {
                prefix.as_ref().map_or(0, Vec::len)
                    + after.as_ref().map_or(0, Vec::len)
                    + partitions.len() * 5
            }
            DataReq::Coordinate {
                key,
                value,
                context,
                ..
            } => {
                key.len()
                    + value.as_ref().map_or(0, Vec::len)
                    + context.as_ref().map_or(0, Vec::len)
            }
        },
        DataMsg::Resp { resp, .. } => match resp {
            DataResp::Object { object } => object.as_ref().map_or(0, Vec::len),
            DataResp::Written {
                context,
                values,
                typed,
            } => {
                context.len()
                    + values.iter().flatten().map(|v| v.len() + 5).sum::<usize>()
                    + typed.as_ref().map_or(0, Vec::len)
            }
            DataResp::Failed { code, msg } => code.len() + msg.len(),
            DataResp::Stored => 0,
            DataResp::Keys { entries, last } => {
                entries
                    .iter()
                    .map(|e| e.key.len() + e.clock.len() + 8)
                    .sum::<usize>()
                    + last.as_ref().map_or(0, Vec::len)
            }
        },
    }
}

/// Splits one peer's messages into frames of at most `max` estimated bytes (a message
/// larger than `max` goes alone; writes refuse objects that large beforehand).
fn split_by_size(batch: Vec<DataMsg>, max: usize) -> Vec<Vec<DataMsg>> {
    let mut out: Vec<Vec<DataMsg>> = Vec::new();
    let mut size = 0;
    for m in batch {
        let n = size_estimate(&m);
        match out.last_mut() {
            Some(last) if size + n <= max => last.push(m),
            _ => {
                out.push(vec![m]);
                size = 0;
            }
        }
        size += n;
    }
    out
}

fn partition_config(cfg: &CoordinatorConfig) -> PartitionConfig {
    PartitionConfig {
        partitions: cfg.partitions,
        n: cfg.n,
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        self.counters.started();
        // Deadlines are checked on this tick: a request times out at most one tick late.
        let tick = (self.cfg.request_timeout / 20)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        ctx.run_interval(tick, |act, ctx| act.expire_deadlines(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<ClientGet> for Coordinator {
    type Result = ResponseFuture<Result<GetReply, ClientError>>;

    fn handle(&mut self, msg: ClientGet, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        self.stats.gets.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.start_get(msg, ReplyTo::Client(tx), ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }
}

impl Handler<ClientWrite> for Coordinator {
    type Result = ResponseFuture<Result<WriteReply, ClientError>>;

    fn handle(&mut self, msg: ClientWrite, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        self.stats.puts.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.start_write(msg, ReplyTo::Client(tx), ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }
}

impl Handler<ClientBatch> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: ClientBatch, ctx: &mut Context<Self>) {
        self.counters.handled();
        // A batch readies its gets' versions in memory before reading any of them
        // (`LocalReads::prefetch`); a lone request gains nothing from it. Writes are
        // readied by the Memtable actor, which reads them, with the hash each carries
        // (`UpdateBatch`).
        if let (Some(reads), true) = (&self.local_reads, msg.0.len() > 1) {
            for op in &msg.0 {
                if let ClientOp::Get(g, _) = op {
                    reads.prefetch(&g.key);
                }
            }
        }
        for op in msg.0 {
            match op {
                ClientOp::Get(get, tx) => {
                    self.stats.gets.fetch_add(1, Relaxed);
                    self.start_get(get, ReplyTo::Call(tx), ctx);
                }
                ClientOp::Write(write, tx) => {
                    self.stats.puts.fetch_add(1, Relaxed);
                    self.start_write(write, ReplyTo::Call(tx), ctx);
                }
            }
        }
    }
}

/// Sends the data messages queued for peers (see `send`).
#[derive(Message)]
#[rtype(result = "()")]
struct FlushOutbox;

impl Handler<FlushOutbox> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: FlushOutbox, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

impl Handler<GetLoad> for Coordinator {
    type Result = MessageResult<GetLoad>;

    fn handle(&mut self, _: GetLoad, _: &mut Context<Self>) -> Self::Result {
        MessageResult(CoordinatorLoad {
            requests: self.requests.len(),
            rpcs: self.rpcs.len(),
            local_ops: self.local_ops,
            keys_locked: self.locks.load().0,
            repairs: self.repairs_inflight,
        })
    }
}

impl Handler<DataInbound> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: DataInbound, ctx: &mut Context<Self>) {
        self.counters.handled(); // counted as sent by the peer reader (`peer::DataSink`)
        self.placement(); // follow membership even when no client talks to this node
        for m in msg.batch {
            match m {
                DataMsg::Req { id, req } => {
                    self.stats.replica_requests.fetch_add(1, Relaxed);
                    self.on_peer_request(msg.from.clone(), id, req, ctx);
                }
                DataMsg::Resp { id, resp } => self.on_rpc_answer(&msg.from, id, resp, ctx),
            }
        }
    }
}

/// The coordinator stopped with the request: it may or may not have been applied.
fn stopped() -> ClientError {
    ClientError::new(
        ErrorCode::Timeout,
        "the replication coordinator stopped while handling the request; it may or may not have been applied",
    )
}

#[cfg(test)]
mod tests;
