//! The Membership actor: a thin shell around the pure [`MembershipCore`].
//!
//! Owns: the member table (through the core), the subscriber list and the handle to the
//! peer transport. Receives: [`PeerInbound`] SWIM messages from the transport,
//! [`DetectorOutputs`] from the FailureDetector actor, its own timers (`run_later`, each
//! carrying a [`MembershipTimer`] with its generation), [`Subscribe`], [`ListMembers`],
//! [`Leave`], [`Fault`] (admin) and [`GetSwimStats`] (metrics). Emits: frames through the [`PeerTransport`],
//! [`DetectorInputs`] to the FailureDetector, and [`MemberChanged`] (MemberUp / MemberSuspect
//! / MemberDown / MemberLeft) to every subscribed `Recipient`.
//!
//! Why two actors: the detector's timing (probe period, timeouts) must not wait behind
//! membership work such as merging a 1000-member state exchange, and the replication
//! coordinator subscribes to membership without knowing about probes. The pure halves are
//! exactly the ones the simulator pairs synchronously (`sim::node`).
//!
//! Invariants: sends to the FailureDetector use `try_send` on a bounded mailbox (a refusal is
//! counted and logged); subscribers get events in the order the table changed; time is a
//! monotonic clock in ms since the shared `epoch`.

use super::core::MemberEvent;
use super::driver::{MEffect, MembershipCore, MembershipTimer, SwimStats};
use crate::failure_detector::actor::{
    DetectorInputs, DetectorOutputs, FailureDetectorActor, GetHealth, MAILBOX,
};
use crate::peer::{Direction, PeerInbound, PeerTransport};
use crate::stats::ActorCounters;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use troupe_protocol::admin::MemberRow;
use troupe_protocol::swim::{MemberInfo, NodeId, Status};

/// A membership change, published to subscribers.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MemberChanged(pub MemberEvent);

/// The ring members as replication sees them: every member that joined and has not left,
/// with its current status. A member that is down stays (a failure is not a topology
/// change), even after SWIM reaps it from its own table; only `left` removes one.
/// Published through a `watch` channel: a subscriber always sees the newest view and can
/// never lose one to a full mailbox. `version` grows with every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingMembers {
    pub version: u64,
    /// Sorted by id; includes this node.
    pub members: Vec<MemberInfo>,
    /// Members known to have left (gossiped `left`), sorted; a member that comes back is
    /// taken out. The layout drops these, and only these (see `crate::layout`).
    pub departed: Vec<NodeId>,
}

/// Returns a receiver of the ring-members view (see [`RingMembers`]).
#[derive(Message)]
#[rtype(result = "tokio::sync::watch::Receiver<RingMembers>")]
pub struct WatchRing;

/// Subscribe to [`MemberChanged`] events.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<MemberChanged>);

/// Start: join through the seeds (peer addresses).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join;

/// Every known member, for `troupe admin members`.
#[derive(Message)]
#[rtype(result = "Vec<MemberRow>")]
pub struct ListMembers;

/// The SWIM protocol counters and the detector's local health, for `/metrics`.
#[derive(Message)]
#[rtype(result = "SwimSnapshot")]
pub struct GetSwimStats;

/// Reply to [`GetSwimStats`].
#[derive(Debug, Clone, Default)]
pub struct SwimSnapshot {
    pub stats: SwimStats,
    /// Lifeguard local health multiplier (0 = healthy); `None` if the detector did not answer.
    pub local_health: Option<u32>,
}

/// Leave gracefully: `left` is gossiped, then the reply comes after the grace period.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// Admin fault hook: `drop <node-id|all>`, `loss <fraction>`, `heal`, `status`. Replies with what is dropped.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, String>")]
pub struct Fault(pub Vec<String>);

pub struct MembershipActor {
    core: MembershipCore,
    transport: PeerTransport,
    detector: Addr<FailureDetectorActor>,
    seeds: Vec<NodeId>,
    subscribers: Vec<Recipient<MemberChanged>>,
    /// Ring members by id (see [`RingMembers`]) and the channel that publishes them.
    ring: std::collections::BTreeMap<NodeId, MemberInfo>,
    departed: std::collections::BTreeSet<NodeId>,
    ring_tx: tokio::sync::watch::Sender<RingMembers>,
    epoch: Instant,
    counters: Arc<ActorCounters>,
    detector_counters: Arc<ActorCounters>,
}

impl MembershipActor {
    /// `seeds` are peer addresses; they double as node ids until the seed answers.
    pub fn new(
        core: MembershipCore,
        transport: PeerTransport,
        detector: Addr<FailureDetectorActor>,
        seeds: &[String],
        epoch: Instant,
        counters: Arc<ActorCounters>,
        detector_counters: Arc<ActorCounters>,
    ) -> Self {
        let mine = core.me().peer_addr.clone();
        let ring: std::collections::BTreeMap<NodeId, MemberInfo> =
            std::iter::once((core.id().clone(), core.me().clone())).collect();
        let (ring_tx, _) = tokio::sync::watch::channel(RingMembers {
            version: 1,
            members: ring.values().cloned().collect(),
            departed: Vec::new(),
        });
        MembershipActor {
            ring,
            departed: Default::default(),
            ring_tx,
            seeds: seeds
                .iter()
                .filter(|s| **s != mine)
                .map(|s| NodeId(s.clone()))
                .collect(),
            core,
            transport,
            detector,
            subscribers: Vec::new(),
            epoch,
            counters,
            detector_counters,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn apply(&mut self, fx: Vec<MEffect>, ctx: &mut Context<Self>) {
        let mut inputs = Vec::new();
        for e in fx {
            match e {
                MEffect::Send { to, addr, msg } => {
                    if to == *self.core.id() {
                        continue;
                    }
                    let addr = addr.unwrap_or_else(|| to.0.clone());
                    if addr == self.core.me().peer_addr {
                        continue;
                    }
                    self.transport.send(&to, &addr, msg);
                }
                MEffect::SetTimer { after_ms, timer } => {
                    ctx.run_later(Duration::from_millis(after_ms), move |act, ctx| {
                        act.fire(timer, ctx)
                    });
                }
                MEffect::ToDetector(i) => inputs.push(i),
            }
        }
        if !inputs.is_empty() {
            self.detector_counters.sent();
            if let Err(e) = self.detector.try_send(DetectorInputs(inputs)) {
                self.counters.error();
                log::warn!("membership: failure detector mailbox refused inputs: {e}");
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let events = self.core.drain_events();
        if !events.is_empty() {
            self.update_ring(&events);
        }
        for ev in events {
            let (what, m) = match &ev {
                MemberEvent::MemberUp(m) => ("up", m),
                MemberEvent::MemberSuspect(m) => ("suspect", m),
                MemberEvent::MemberDown(m) => ("down (dead)", m),
                MemberEvent::MemberLeft(m) => ("left", m),
            };
            log::info!(
                "member {} at {} is {what} (incarnation {})",
                m.id,
                m.peer_addr,
                m.incarnation
            );
            self.subscribers
                .retain(|s| s.try_send(MemberChanged(ev.clone())).is_ok() || s.connected());
        }
    }

    fn update_ring(&mut self, events: &[MemberEvent]) {
        let mut changed = false;
        for ev in events {
            match ev {
                MemberEvent::MemberLeft(m) => {
                    changed |= self.ring.remove(&m.id).is_some();
                    changed |= self.departed.insert(m.id.clone());
                }
                MemberEvent::MemberUp(m)
                | MemberEvent::MemberSuspect(m)
                | MemberEvent::MemberDown(m) => {
                    changed |= self.departed.remove(&m.id);
                    changed |= self.ring.insert(m.id.clone(), m.clone()).as_ref() != Some(m)
                }
            }
        }
        if changed {
            let members = self.ring.values().cloned().collect();
            let departed = self.departed.iter().cloned().collect();
            self.ring_tx.send_modify(|v| {
                v.version += 1;
                v.members = members;
                v.departed = departed;
            });
        }
    }

    fn fire(&mut self, timer: MembershipTimer, ctx: &mut Context<Self>) {
        let now = self.now();
        let fx = self.core.handle_timer(timer, now);
        self.apply(fx, ctx);
    }
}

impl Actor for MembershipActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.counters.started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<Join> for MembershipActor {
    type Result = ();

    fn handle(&mut self, _: Join, ctx: &mut Context<Self>) {
        self.counters.received();
        if !self.seeds.is_empty() {
            log::info!("joining the cluster through seeds {:?}", self.seeds);
        }
        let fx = self.core.join(&self.seeds.clone());
        self.apply(fx, ctx);
    }
}

impl Handler<PeerInbound> for MembershipActor {
    type Result = ();

    fn handle(&mut self, PeerInbound { from, msg }: PeerInbound, ctx: &mut Context<Self>) {
        self.counters.received();
        let now = self.now();
        let fx = self.core.handle_message(&from, msg, now);
        self.apply(fx, ctx);
    }
}

impl Handler<DetectorOutputs> for MembershipActor {
    type Result = ();

    fn handle(&mut self, DetectorOutputs(outs): DetectorOutputs, ctx: &mut Context<Self>) {
        self.counters.handled();
        let now = self.now();
        let mut fx = Vec::new();
        for o in outs {
            fx.extend(self.core.handle_detector(o, now));
        }
        self.apply(fx, ctx);
    }
}

impl Handler<Subscribe> for MembershipActor {
    type Result = ();

    fn handle(&mut self, Subscribe(r): Subscribe, _: &mut Context<Self>) {
        self.counters.received();
        self.subscribers.push(r);
    }
}

impl Handler<WatchRing> for MembershipActor {
    type Result = MessageResult<WatchRing>;

    fn handle(&mut self, _: WatchRing, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        MessageResult(self.ring_tx.subscribe())
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Alive => "alive",
        Status::Suspect => "suspect",
        Status::Dead => "dead",
        Status::Left => "left",
    }
}

impl Handler<ListMembers> for MembershipActor {
    type Result = MessageResult<ListMembers>;

    fn handle(&mut self, _: ListMembers, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let now = self.now();
        let me = self.core.id().clone();
        let rows = self
            .core
            .list()
            .entries()
            .map(|(m, changed)| MemberRow {
                id: m.id.0.clone(),
                client: m.client_addr.clone(),
                peer: m.peer_addr.clone(),
                admin: m.admin_addr.clone(),
                status: status_name(m.status).to_string(),
                incarnation: m.incarnation,
                run_id: m.run_id,
                last_change_ms_ago: now.saturating_sub(changed),
                last_heard_ms_ago: self.core.last_heard(&m.id).map(|t| now.saturating_sub(t)),
                this_node: m.id == me,
            })
            .collect();
        MessageResult(rows)
    }
}

impl Handler<GetSwimStats> for MembershipActor {
    type Result = ResponseActFuture<Self, SwimSnapshot>;

    fn handle(&mut self, _: GetSwimStats, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let health = self.detector.send(GetHealth);
        Box::pin(health.into_actor(self).map(|lhm, act, _| SwimSnapshot {
            stats: act.core.stats().clone(),
            local_health: lhm.ok(),
        }))
    }
}

impl Handler<Leave> for MembershipActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let peers = self.core.live_peers().len();
        let fx = self.core.leave();
        self.apply(fx, ctx);
        // Keep answering pings for two periods so acks carry `left` further, and give the
        // transport time to flush the direct Left pings.
        let grace = if peers == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(2 * self.core.config().probe_interval_ms)
                .max(Duration::from_millis(200))
        };
        log::info!(
            "leaving the cluster: told {} of {peers} member(s); waiting {grace:?}",
            self.core.config().leave_fanout.min(peers)
        );
        Box::pin(actix::clock::sleep(grace).into_actor(self))
    }
}

/// `admin remove NODE`: a dead member is declared gone for good (`left`), so the ring
/// layout drops it and its partitions are copied to new owners. Refused for a live one.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RemoveMember(pub NodeId);

impl Handler<RemoveMember> for MembershipActor {
    type Result = Result<(), String>;

    fn handle(&mut self, RemoveMember(id): RemoveMember, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        if id == *self.core.id() {
            return Err(format!(
                "{id} is this node: use `troupe admin leave` to depart"
            ));
        }
        let now = self.now();
        let fx = self.core.remove(&id, now)?;
        self.apply(fx, ctx);
        log::warn!("admin remove: {id} is declared gone for good (left); its partitions move to new owners");
        Ok(())
    }
}

impl Handler<Fault> for MembershipActor {
    type Result = Result<Vec<String>, String>;

    fn handle(&mut self, Fault(args): Fault, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["drop", target] => self.transport.fault_drop(target, Direction::Both),
            ["drop", target, "in"] => self.transport.fault_drop(target, Direction::In),
            ["drop", target, "out"] => self.transport.fault_drop(target, Direction::Out),
            ["heal"] => self.transport.fault_heal(),
            ["loss", p] => match p.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => self.transport.fault_loss(p),
                _ => return Err(format!("fault loss: {p:?} is not a fraction in 0..=1")),
            },
            ["status"] | [] => {}
            _ => {
                return Err(
                    "usage: fault drop <node-id|all> [in|out] | fault loss <0..1> | fault heal | fault status".into(),
                )
            }
        }
        Ok(self.transport.fault_status())
    }
}
