//! The peer transport: typed [`PeerMsg`] frames between nodes on the peer port.
//!
//! Owns: one outbound [`lane::LaneQueue`] and task per (peer address, [`Lane`]), the inbound
//! listener, and the fault hook. Replication batches ([`PeerMsg::Data`]) travel on their own
//! data lane and reach the coordinator as [`DataInbound`]; layout gossip ([`PeerMsg::Layout`])
//! travels on the bulk lane and reaches the layout actor as [`LayoutInbound`]; anti-entropy
//! exchanges ([`PeerMsg::AntiEntropy`]) too, reaching the AntiEntropy actor as
//! [`AntiEntropyInbound`]. Receives [`PeerTransport::send`] calls (from the Membership
//! actor; later the replication coordinator) and inbound connections; emits every inbound
//! SWIM message to a `Recipient<PeerInbound>` with the authenticated sender's id.
//!
//! Invariants:
//! - Connections are one-way: a node sends on the connections it opened and reads on those
//!   it accepted. Each is authenticated first (`handshake`); a refused peer is logged at
//!   `warn` and gets nothing.
//! - Probes (Ping, Ack, IndirectPing, Nack) travel on the control lane, full-state exchanges
//!   on the bulk lane: two connections, two bounded queues, so no head-of-line blocking.
//! - Nothing here blocks the caller: `send` only queues. Inbound frames are handed to the
//!   recipient with `try_send`; when its mailbox is full the frame is dropped (SWIM tolerates
//!   loss; an unbounded backlog of stale probes would be worse).
//! - The fault hook (`fault drop <node|all>`, `fault heal`) drops matching inbound and
//!   outbound traffic, so tests can cut a node off without root.

pub mod handshake;
pub mod lane;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use handshake::AuthKey;
use lane::{LaneLimits, LaneQueue, LaneTask};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use troupe_protocol::antientropy::AeMsg;
use troupe_protocol::data::DataMsg;
use troupe_protocol::layout::LayoutMsg;
use troupe_protocol::swim::{Lane, NodeId, PeerMsg, SwimMsg};
use troupe_protocol::FrameCodec;

/// One SWIM message received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PeerInbound {
    pub from: NodeId,
    pub msg: SwimMsg,
}

/// A batch of replication messages received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DataInbound {
    pub from: NodeId,
    pub batch: Vec<DataMsg>,
}

/// A layout gossip message received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LayoutInbound {
    pub from: NodeId,
    pub msg: LayoutMsg,
}

/// An anti-entropy frame received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AntiEntropyInbound {
    pub from: NodeId,
    pub msg: AeMsg,
}

/// A tombstone GC message received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TombInbound {
    pub from: NodeId,
    pub msg: troupe_protocol::tomb::TombMsg,
}

/// A partition transfer message received from an authenticated peer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TransferInbound {
    pub from: NodeId,
    pub msg: troupe_protocol::transfer::TransferMsg,
}

/// Where inbound frames go: SWIM to membership, replication to the coordinator, layout
/// gossip to the layout actor, anti-entropy to the AntiEntropy actor, tombstone GC rounds
/// to the tombstone actor.
#[derive(Clone)]
pub struct Sinks {
    pub swim: Recipient<PeerInbound>,
    pub data: Option<DataSink>,
    pub layout: Option<Recipient<LayoutInbound>>,
    pub antientropy: Option<Recipient<AntiEntropyInbound>>,
    pub tomb: Option<Recipient<TombInbound>>,
    pub transfer: Option<Recipient<TransferInbound>>,
}

/// The coordinator, and its counters: a data batch is counted as sent when the reader
/// hands it over, so the coordinator's mailbox depth shows batches waiting for it.
#[derive(Clone)]
pub struct DataSink {
    pub to: Recipient<DataInbound>,
    pub counters: std::sync::Arc<crate::stats::ActorCounters>,
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub me: NodeId,
    pub key: AuthKey,
    pub max_frame_bytes: usize,
    pub control: LaneLimits,
    pub bulk: LaneLimits,
    pub data: LaneLimits,
    /// `[tls]`: peers connect over TLS and verify each other against the CA.
    pub tls: Option<Arc<crate::tls::NodeTls>>,
}

impl PeerConfig {
    /// Limits derived from the probe timing: a control frame older than the probe timeout
    /// is useless; bulk frames may wait a few periods.
    pub fn new(
        me: NodeId,
        secret: &str,
        max_frame_bytes: usize,
        probe_interval_ms: u64,
        probe_timeout_ms: u64,
    ) -> Self {
        PeerConfig {
            me,
            key: AuthKey::from_secret(secret),
            max_frame_bytes,
            control: LaneLimits {
                capacity: 256,
                max_bytes: 4 << 20,
                drop_oldest: true,
                max_age: Duration::from_millis(probe_timeout_ms.max(1)),
                write_timeout: Duration::from_millis(probe_interval_ms.max(100)),
            },
            bulk: LaneLimits {
                capacity: 64,
                max_bytes: 64 << 20,
                drop_oldest: false,
                max_age: Duration::from_millis(5 * probe_interval_ms.max(200)),
                write_timeout: Duration::from_secs(5),
            },
            // Replication: refuse the newest when full (its request fails at once and the
            // coordinator counts that replica as failed); a frame older than a request's
            // timeout is useless to its coordinator.
            data: LaneLimits {
                capacity: 4096,
                max_bytes: 64 << 20,
                drop_oldest: false,
                max_age: Duration::from_secs(5),
                write_timeout: Duration::from_secs(5),
            },
            tls: None,
        }
    }
}

/// What the fault hook drops, per direction: traffic this node sends (`out`) and traffic it
/// reads (`in`), for every peer (`all`) or for some (node ids or addresses).
#[derive(Debug, Default, Clone)]
struct Fault {
    all_in: bool,
    all_out: bool,
    nodes_in: BTreeSet<String>,
    nodes_out: BTreeSet<String>,
    /// Fraction of outbound SWIM frames dropped at random (`fault loss P`): every path then
    /// loses about P of its messages, as the simulator's loss does.
    loss: f64,
}

/// Which traffic `fault drop` cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    /// What this node reads from the peer.
    In,
    /// What this node sends to the peer.
    Out,
}

struct Inner {
    cfg: PeerConfig,
    /// The event loop the transport was made on (the main one): every lane task runs
    /// there, whichever actor's thread first sends to the peer. (`None`: made outside an
    /// arbiter, as in unit tests; lanes then run where they are first used.)
    home: Option<actix::ArbiterHandle>,
    /// Peer address -> its lanes' queues, by lane: looked up by `&str`, so a send
    /// allocates no key.
    lanes: Mutex<HashMap<String, HashMap<Lane, Arc<LaneQueue>>>>,
    fault: Mutex<Fault>,
    shutdown: CancellationToken,
}

/// Cheap-to-clone handle to the transport.
#[derive(Clone)]
pub struct PeerTransport {
    inner: Arc<Inner>,
}

fn lane_of(msg: &SwimMsg) -> Lane {
    match msg {
        SwimMsg::StateExchange(_) => Lane::Bulk,
        _ => Lane::Control,
    }
}

impl PeerTransport {
    pub fn new(cfg: PeerConfig, shutdown: CancellationToken) -> PeerTransport {
        PeerTransport {
            inner: Arc::new(Inner {
                home: actix::Arbiter::try_current(),
                cfg,
                lanes: Mutex::new(HashMap::new()),
                fault: Mutex::new(Fault::default()),
                shutdown,
            }),
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.inner.cfg.me
    }

    /// Queues `msg` for `to` at `addr`. Must be called inside an actix/tokio local context
    /// (the first frame to a new address spawns its lane task there).
    pub fn send(&self, to: &NodeId, addr: &str, msg: SwimMsg) {
        if self.is_dropped(to.as_str()) || self.is_dropped(addr) || self.is_lost() {
            return;
        }
        let lane = lane_of(&msg);
        let frame = Bytes::from(PeerMsg::Swim(msg).encode());
        if frame.len() > self.inner.cfg.max_frame_bytes {
            log::warn!(
                "peer frame to {to} of {} bytes exceeds net.max_frame_bytes; dropped",
                frame.len()
            );
            return;
        }
        let queue = self.lane(addr, lane);
        if !queue.push(frame) {
            log::debug!("peer {to} ({lane:?} lane) queue full; a frame was dropped");
        }
    }

    /// Queues a batch of replication messages for `to` at `addr` on the data lane. Returns
    /// false when it was not queued (the lane is full, the frame too large, or the fault
    /// hook drops it): the caller fails those requests at once instead of waiting.
    pub fn send_data(&self, to: &NodeId, addr: &str, batch: Vec<DataMsg>) -> bool {
        self.queue(to, addr, Lane::Data, PeerMsg::Data(batch), "data")
    }

    /// Queues a layout gossip message for `to` at `addr` on the bulk lane; dropped (and
    /// logged) when the lane is full or the frame too large: gossip repeats.
    pub fn send_layout(&self, to: &NodeId, addr: &str, msg: LayoutMsg) {
        self.send_bulk(to, addr, PeerMsg::Layout(msg), "layout");
    }

    /// Queues a tombstone GC message for `to` at `addr` on the bulk lane; dropped (and
    /// logged) like layout gossip: an unanswered round times out and runs again.
    pub fn send_tomb(&self, to: &NodeId, addr: &str, msg: troupe_protocol::tomb::TombMsg) {
        self.send_bulk(to, addr, PeerMsg::Tomb(msg), "tombstone");
    }

    /// Queues a partition transfer message for `to` at `addr` on the bulk lane; false when
    /// it was not queued (a fetch then times out and is asked again).
    pub fn send_transfer(
        &self,
        to: &NodeId,
        addr: &str,
        msg: troupe_protocol::transfer::TransferMsg,
    ) -> bool {
        self.queue(to, addr, Lane::Bulk, PeerMsg::Transfer(msg), "transfer")
    }

    /// Queues `msg` on the bulk lane, or drops it: `what` names it in the log.
    fn send_bulk(&self, to: &NodeId, addr: &str, msg: PeerMsg, what: &str) {
        if !self.queue(to, addr, Lane::Bulk, msg, what) {
            log::debug!("peer {to}: a {what} message was not queued (bulk lane full, or cut)");
        }
    }

    /// Queues an anti-entropy frame for `to` at `addr` on the bulk lane. Returns false when
    /// it was not queued (lane full, frame too large, fault hook): the caller's request
    /// then fails at once instead of waiting for its timeout.
    pub fn send_antientropy(&self, to: &NodeId, addr: &str, msg: AeMsg) -> bool {
        self.queue(
            to,
            addr,
            Lane::Bulk,
            PeerMsg::AntiEntropy(msg),
            "anti-entropy",
        )
    }

    /// Encodes `msg` and queues it on `lane` of `addr`; false when it was not queued: the
    /// fault hook cuts `to`, the frame exceeds `net.max_frame_bytes` (logged), or the lane
    /// is full.
    fn queue(&self, to: &NodeId, addr: &str, lane: Lane, msg: PeerMsg, what: &str) -> bool {
        if self.is_dropped(to.as_str()) || self.is_dropped(addr) {
            return false;
        }
        let frame = crate::scratch::encode_bytes(|buf| msg.encode_into(buf));
        if frame.len() > self.inner.cfg.max_frame_bytes {
            log::warn!(
                "{what} frame to {to} of {} bytes exceeds net.max_frame_bytes; dropped",
                frame.len()
            );
            return false;
        }
        self.lane(addr, lane).push(frame)
    }

    fn lane(&self, addr: &str, lane: Lane) -> Arc<LaneQueue> {
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = lanes.get(addr).and_then(|l| l.get(&lane)) {
            return q.clone();
        }
        let limits = match lane {
            Lane::Control => self.inner.cfg.control,
            Lane::Bulk => self.inner.cfg.bulk,
            Lane::Data => self.inner.cfg.data,
        };
        let queue = Arc::new(LaneQueue::new(limits));
        lanes
            .entry(addr.to_string())
            .or_default()
            .insert(lane, queue.clone());
        let task = LaneTask {
            addr: addr.to_string(),
            lane,
            me: self.inner.cfg.me.clone(),
            key: self.inner.cfg.key.clone(),
            max_frame_bytes: self.inner.cfg.max_frame_bytes,
            tls: self.inner.cfg.tls.clone(),
            queue: queue.clone(),
            shutdown: self.inner.shutdown.clone(),
        };
        match &self.inner.home {
            Some(home) => {
                home.spawn(task.run());
            }
            None => {
                actix::spawn(task.run());
            }
        }
        queue
    }

    /// Frames waiting in all outbound queues.
    pub fn queued(&self) -> usize {
        let lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .values()
            .flat_map(|l| l.values())
            .map(|q| q.len())
            .sum()
    }

    /// Fault hook: drop all peer traffic to and from `target` (a node id, a peer address,
    /// or `all`).
    pub fn fault_drop(&self, target: &str, dir: Direction) {
        let mut f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        let (cut_in, cut_out) = match dir {
            Direction::Both => (true, true),
            Direction::In => (true, false),
            Direction::Out => (false, true),
        };
        if target == "all" {
            f.all_in |= cut_in;
            f.all_out |= cut_out;
        } else {
            if cut_in {
                f.nodes_in.insert(target.to_string());
            }
            if cut_out {
                f.nodes_out.insert(target.to_string());
            }
        }
        log::warn!("fault injection: dropping peer traffic for {target} ({dir:?})");
    }

    /// Fault hook: drop this fraction (0..=1) of outbound SWIM frames at random.
    pub fn fault_loss(&self, fraction: f64) {
        let mut f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        f.loss = fraction.clamp(0.0, 1.0);
        log::warn!(
            "fault injection: dropping {:.1}% of outbound SWIM frames",
            f.loss * 100.0
        );
    }

    fn is_lost(&self) -> bool {
        let loss = self
            .inner
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .loss;
        loss > 0.0 && rand::random_bool(loss)
    }

    /// Fault hook: stop dropping anything.
    pub fn fault_heal(&self) {
        let mut f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        *f = Fault::default();
        log::warn!("fault injection: healed");
    }

    /// What the fault hook drops now: `all`, node ids, each with ` in` or ` out` when only
    /// one direction is cut.
    pub fn fault_status(&self) -> Vec<String> {
        let f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut add = |name: &str, i: bool, o: bool| match (i, o) {
            (true, true) => out.push(name.to_string()),
            (true, false) => out.push(format!("{name} in")),
            (false, true) => out.push(format!("{name} out")),
            (false, false) => {}
        };
        add("all", f.all_in, f.all_out);
        let names: BTreeSet<&String> = f.nodes_in.iter().chain(&f.nodes_out).collect();
        for n in names {
            add(n, f.nodes_in.contains(n), f.nodes_out.contains(n));
        }
        if f.loss > 0.0 {
            out.push(format!("loss {}", f.loss));
        }
        out
    }

    /// Whether traffic to `node` is cut.
    fn is_dropped(&self, node: &str) -> bool {
        let f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        f.all_out || f.nodes_out.contains(node)
    }

    /// Whether traffic from `node` is cut.
    fn is_dropped_in(&self, node: &str) -> bool {
        let f = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        f.all_in || f.nodes_in.contains(node)
    }
}

/// Peer connections still in their handshake (not yet authenticated), at most.
pub const MAX_PEER_HANDSHAKES: usize = 64;
/// Largest frame accepted before a peer is authenticated (hello and proof are < 200 bytes).
const HANDSHAKE_MAX_FRAME: usize = 4096;

/// Accepts peer connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    transport: PeerTransport,
    sinks: Sinks,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_HANDSHAKES));
    while let Some((stream, addr)) = crate::net::accept(&listener, &shutdown, "peer").await {
        // Unauthenticated connections are bounded: each handshake holds a slot until it
        // succeeds, fails or times out.
        let Ok(slot) = handshakes.clone().try_acquire_owned() else {
            log::warn!("peer connection from {addr} refused: {MAX_PEER_HANDSHAKES} handshakes already in progress");
            continue;
        };
        let _ = stream.set_nodelay(true);
        actix::spawn(serve_one(
            stream,
            addr.to_string(),
            transport.clone(),
            sinks.clone(),
            shutdown.clone(),
            slot,
        ));
    }
}

async fn serve_one(
    stream: TcpStream,
    addr: String,
    transport: PeerTransport,
    sinks: Sinks,
    shutdown: CancellationToken,
    handshake_slot: tokio::sync::OwnedSemaphorePermit,
) {
    let cfg = &transport.inner.cfg;
    // TLS first (within tls.handshake_timeout, holding the handshake slot): a peer whose
    // certificate is not from tls.ca never reaches the cluster-secret handshake.
    let stream: crate::tls::BoxStream = match &cfg.tls {
        Some(tls) => match tls.accept(stream, crate::tls::Port::Peer).await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("refused peer connection from {addr}: {e}");
                return;
            }
        },
        None => Box::new(stream),
    };
    // Handshake frames are small: an unauthenticated stranger cannot make us buffer more.
    let mut framed = Framed::new(stream, FrameCodec::new(HANDSHAKE_MAX_FRAME));
    let from = match handshake::accept(&mut framed, &cfg.key, &cfg.me).await {
        Ok((from, _lane)) => from,
        Err(e) => {
            log::warn!("refused peer connection from {addr}: {e}");
            return;
        }
    };
    drop(handshake_slot);
    *framed.codec_mut() = FrameCodec::new(cfg.max_frame_bytes);
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = framed.next() => f,
        };
        let body = match frame {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                log::warn!("peer {from} ({addr}): bad frame, closing: {e}");
                return;
            }
            None => return,
        };
        if transport.is_dropped_in(from.as_str()) {
            continue;
        }
        let msg = match PeerMsg::decode(&body) {
            Ok(PeerMsg::Swim(m)) => m,
            Ok(PeerMsg::Layout(m)) => {
                // Gossip repeats: a full mailbox drops this one, as for SWIM below.
                if let Some(layout) = &sinks.layout {
                    let _ = layout.try_send(LayoutInbound {
                        from: from.clone(),
                        msg: m,
                    });
                }
                continue;
            }
            Ok(PeerMsg::AntiEntropy(m)) => {
                // A dropped frame costs the sender one request timeout; exchanges repeat.
                if let Some(ae) = &sinks.antientropy {
                    if ae
                        .try_send(AntiEntropyInbound {
                            from: from.clone(),
                            msg: m,
                        })
                        .is_err()
                    {
                        log::debug!("anti-entropy mailbox full; a frame from {from} was dropped");
                    }
                }
                continue;
            }
            Ok(PeerMsg::Tomb(m)) => {
                // A dropped GC message costs one round (it times out and runs again).
                if let Some(tomb) = &sinks.tomb {
                    let _ = tomb.try_send(TombInbound {
                        from: from.clone(),
                        msg: m,
                    });
                }
                continue;
            }
            Ok(PeerMsg::Transfer(m)) => {
                // A dropped fetch or chunk costs the fetcher one stall check; gossip repeats.
                if let Some(t) = &sinks.transfer {
                    let _ = t.try_send(TransferInbound {
                        from: from.clone(),
                        msg: m,
                    });
                }
                continue;
            }
            Ok(PeerMsg::Data(batch)) => {
                let Some(data) = &sinks.data else {
                    continue; // no coordinator (yet): the requests time out at the sender
                };
                // Wait for room rather than drop: a dropped batch may hold answers to
                // our own requests (which would then time out although they succeeded).
                // Waiting stops reading this connection, so the sender's bounded data
                // lane fills and refuses: backpressure, with every queue bounded. When
                // there is room the batch is queued without waiting for it to be handled
                // (no reply channel per frame, and the next frame is read meanwhile).
                let msg = DataInbound {
                    from: from.clone(),
                    batch,
                };
                data.counters.sent();
                let msg = match data.to.try_send(msg) {
                    Ok(()) => continue,
                    Err(SendError::Full(msg)) => msg,
                    Err(SendError::Closed(_)) => {
                        data.counters.handled(); // the coordinator is gone: not delivered
                        return;
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        data.counters.handled(); // never delivered: keep the depth true
                        return;
                    }
                    sent = data.to.send(msg) => if sent.is_err() {
                        data.counters.handled(); // the coordinator is gone: not delivered
                        return;
                    },
                }
                continue;
            }
            Err(e) => {
                log::warn!("peer {from} ({addr}): undecodable message, closing: {e}");
                return;
            }
        };
        match sinks.swim.try_send(PeerInbound {
            from: from.clone(),
            msg,
        }) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                log::debug!("membership mailbox full; peer message from {from} dropped")
            }
            Err(SendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fault drop NODE in|out` cuts one direction only (the checker's one-way partition),
    /// and `all` or a node without a direction cuts both; `heal` restores everything.
    #[test]
    fn the_fault_hook_cuts_one_direction_or_both() {
        let cfg = PeerConfig::new(NodeId("n1".into()), "", 1 << 20, 1000, 500);
        let t = PeerTransport::new(cfg, CancellationToken::new());
        t.fault_drop("n2", Direction::In);
        assert!(t.is_dropped_in("n2") && !t.is_dropped("n2"));
        t.fault_drop("n3", Direction::Out);
        assert!(!t.is_dropped_in("n3") && t.is_dropped("n3"));
        t.fault_drop("n4", Direction::Both);
        assert!(t.is_dropped_in("n4") && t.is_dropped("n4"));
        assert_eq!(t.fault_status(), ["n2 in", "n3 out", "n4"]);
        assert!(!t.is_dropped("n5") && !t.is_dropped_in("n5"));
        t.fault_drop("all", Direction::In);
        assert!(t.is_dropped_in("n5") && !t.is_dropped("n5"));
        t.fault_heal();
        assert!(t.fault_status().is_empty());
        assert!(!t.is_dropped_in("n2") && !t.is_dropped("n4"));
    }

    /// `fault loss P` drops about P of outbound frames, and heal stops it.
    #[test]
    fn the_fault_hook_loses_a_fraction_of_frames() {
        let cfg = PeerConfig::new(NodeId("n1".into()), "", 1 << 20, 1000, 500);
        let t = PeerTransport::new(cfg, CancellationToken::new());
        assert!(!(0..1000).any(|_| t.is_lost()));
        t.fault_loss(0.25);
        assert_eq!(t.fault_status(), ["loss 0.25"]);
        let lost = (0..4000).filter(|_| t.is_lost()).count();
        // 1000 expected; 6 standard deviations (27 each) either side.
        assert!((840..=1160).contains(&lost), "{lost} of 4000 lost at 0.25");
        t.fault_heal();
        assert!(!(0..1000).any(|_| t.is_lost()));
    }
}
