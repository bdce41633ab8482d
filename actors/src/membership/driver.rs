//! `MembershipCore`: the membership half of a SWIM node, sans-IO. The Membership actor
//! drives one; the simulator's `sim::node::Node` pairs one with a `Detector`.
//!
//! Owns: the [`MemberList`], the seeds and join-retry backoff, the gossip fan-out,
//! push-pull, reconnect and reap scheduling, when each member was last heard from, and the
//! protocol counters ([`SwimStats`]). Receives: inbound peer messages ([`MembershipCore::handle_message`]), the
//! failure detector's outputs ([`MembershipCore::handle_detector`]) and its own timers.
//! Emits [`MEffect`]s: sends (Ping/Ack decorated with piggybacked gossip, Acks with the
//! table digest), its own timers, and [`ToDetector`] inputs for the failure detector.
//!
//! Invariants:
//! - Every change of a member's status is mirrored to the detector in the order it happened
//!   (Alive -> probe it, Suspect -> start/confirm suspicion, Dead/Left/reaped -> stop).
//! - Answering a Ping is done here, not in the detector: an Ack is stateless and must carry
//!   the gossip and digest that live here (no extra hop on the probe's critical path).
//! - Timers carry a generation; a timer from an older generation (before leave) is dropped.
//! - Every `gossip_interval_ms` pending updates go to at most `gossip_nodes` random members
//!   (live, or dead and not yet reaped so a falsely dead member hears it and refutes); when
//!   nothing is pending nothing is sent.
//! - Full-state exchanges this member starts outside the push-pull timer (digest mismatch,
//!   reconnect) are at most one per `state_sync_gap_ms(N)`, so their amortised bytes per
//!   period stay constant in N (see `SwimConfig::traffic_bound`).
//! - No I/O, clock or unseeded randomness: `now` is passed in, in milliseconds.

use super::config::SwimConfig;
use super::core::estimate_update_size;
use super::core::{MemberEvent, MemberList, Merge};
use crate::failure_detector::core::DetectorOutput;
use crate::failure_detector::inputs::ToDetector;
use crate::idmap::IdMap;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use troupe_protocol::swim::{
    Ack, Gossip, MemberInfo, NodeId, Ping, StateExchange, Status, SwimMsg, Update,
};

/// Timers of the membership half.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MembershipTimer {
    /// Periodic full-state exchange with one random live member.
    PushPull { gen: u64 },
    /// Forget Dead/Left members older than `reap_after_ms` (every probe interval).
    Reap { gen: u64 },
    /// Still alone: send our state to the seeds again (exponential backoff).
    JoinRetry { gen: u64, attempt: u32 },
    /// Try a full-state exchange with one Dead member, so a healed partition merges back.
    Reconnect { gen: u64 },
    /// Gossip fan-out round.
    Gossip { gen: u64 },
}

/// Protocol counters of one node (monotonic), for `/metrics` and the simulator. Gossip
/// bytes are the estimated sizes of the piggybacked updates (`estimate_update_size`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwimStats {
    /// Our own direct probes (Pings with a sequence number; relayed ones included).
    pub probes_sent: u64,
    pub acks_received: u64,
    /// IndirectPing requests we sent to relays.
    pub indirect_probes_sent: u64,
    pub nacks_received: u64,
    /// Our probes left unsettled because our own tick ran late (`late_tolerance_ms`).
    pub probes_late: u64,
    /// Suspicions our detector raised (the table changed to Suspect on our verdict).
    pub suspicions_raised: u64,
    /// Suspicions about us we refuted.
    pub suspicions_refuted: u64,
    /// Suspicions that expired into Dead on our verdict.
    pub suspicions_confirmed: u64,
    /// Gossip fan-out messages sent.
    pub gossip_msgs_sent: u64,
    pub gossip_bytes_sent: u64,
    pub gossip_bytes_received: u64,
}

/// Side effect for the host to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MEffect {
    /// Send `msg` to `to` at `addr`; `addr: None` means `to` is a seed address.
    Send {
        to: NodeId,
        addr: Option<String>,
        msg: SwimMsg,
    },
    SetTimer {
        after_ms: u64,
        timer: MembershipTimer,
    },
    ToDetector(ToDetector),
}

/// Longest wait between two join attempts while alone.
const JOIN_RETRY_MAX_MS: u64 = 30_000;

#[derive(Debug)]
pub struct MembershipCore {
    cfg: SwimConfig,
    list: MemberList,
    rng: StdRng,
    seeds: Vec<NodeId>,
    gen: u64,
    last_digest_sync_ms: Option<u64>,
    /// When we last received anything from each member (ms, the caller's clock).
    last_heard: IdMap<NodeId, u64>,
    /// Other members' ids (any status), rebuilt when `list.ids_version()` moves; gossip
    /// targets are sampled from it without scanning the table each round.
    peer_ids: Vec<NodeId>,
    peer_ids_version: Option<u64>,
    stats: SwimStats,
    /// Our own detector's verdicts that changed the table, kept only when the host asked
    /// (`record_verdicts`; the simulator attributes accusations with them).
    verdicts: Option<Vec<(NodeId, Status)>>,
}

impl MembershipCore {
    /// `seed` drives the choice of push-pull / leave / reconnect partners.
    pub fn new(self_info: MemberInfo, cfg: SwimConfig, seed: u64) -> Self {
        MembershipCore {
            list: MemberList::new(self_info, cfg.clone()),
            cfg,
            rng: StdRng::seed_from_u64(seed ^ 0x6d65_6d62),
            seeds: Vec::new(),
            gen: 0,
            last_digest_sync_ms: None,
            last_heard: IdMap::default(),
            peer_ids: Vec::new(),
            peer_ids_version: None,
            stats: SwimStats::default(),
            verdicts: None,
        }
    }

    /// Keep our detector's verdicts for [`MembershipCore::drain_verdicts`].
    pub fn record_verdicts(&mut self) {
        self.verdicts.get_or_insert_with(Vec::new);
    }

    /// Verdicts (member, Suspect or Dead) our detector reached since the last drain.
    pub fn drain_verdicts(&mut self) -> Vec<(NodeId, Status)> {
        self.verdicts
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Protocol counters so far.
    pub fn stats(&self) -> &SwimStats {
        &self.stats
    }

    /// When we last received a message from `id` (ms on the caller's clock).
    pub fn last_heard(&self, id: &NodeId) -> Option<u64> {
        self.last_heard.get(id).copied()
    }

    pub fn id(&self) -> &NodeId {
        self.list.my_id()
    }
    pub fn me(&self) -> &MemberInfo {
        self.list.me()
    }
    pub fn list(&self) -> &MemberList {
        &self.list
    }
    pub fn member(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.list.get(id)
    }
    pub fn drain_events(&mut self) -> Vec<MemberEvent> {
        self.list.drain_events()
    }
    pub fn config(&self) -> &SwimConfig {
        &self.cfg
    }

    /// Install known Alive members silently (simulator bootstrap).
    pub fn preload(&mut self, members: impl IntoIterator<Item = MemberInfo>) -> Vec<MEffect> {
        let mut added = Vec::new();
        for m in members {
            let (id, inc) = (m.id.clone(), m.incarnation);
            if id != *self.id() && self.list.preload(m, 0) {
                added.push((id, inc));
            }
        }
        vec![MEffect::ToDetector(ToDetector::AddBulk(added))]
    }

    /// Start probing, push-pull and reaping, and send our table to every seed.
    pub fn join(&mut self, seeds: &[NodeId]) -> Vec<MEffect> {
        let me = self.id().clone();
        self.seeds = seeds.iter().filter(|s| **s != me).cloned().collect();
        self.gen += 1;
        let gen = self.gen;
        let mut fx = vec![
            MEffect::ToDetector(ToDetector::Start),
            MEffect::SetTimer {
                after_ms: self.cfg.push_pull_ms(self.list.live_count()),
                timer: MembershipTimer::PushPull { gen },
            },
            MEffect::SetTimer {
                after_ms: self.cfg.probe_interval_ms,
                timer: MembershipTimer::Reap { gen },
            },
            MEffect::SetTimer {
                after_ms: self.cfg.reconnect_interval_ms,
                timer: MembershipTimer::Reconnect { gen },
            },
            MEffect::SetTimer {
                // Jittered so that members do not gossip in lockstep.
                after_ms: self.rng.random_range(0..self.cfg.gossip_interval_ms.max(1)),
                timer: MembershipTimer::Gossip { gen },
            },
        ];
        self.send_to_seeds(&mut fx);
        if !self.seeds.is_empty() {
            fx.push(MEffect::SetTimer {
                after_ms: self.join_backoff(0),
                timer: MembershipTimer::JoinRetry { gen, attempt: 1 },
            });
        }
        fx
    }

    fn join_backoff(&self, attempt: u32) -> u64 {
        (self.cfg.probe_interval_ms << attempt.min(10)).min(JOIN_RETRY_MAX_MS)
    }

    fn send_to_seeds(&mut self, fx: &mut Vec<MEffect>) {
        for seed in self.seeds.clone() {
            let msg = self.state_msg(true);
            self.send(seed, msg, fx);
        }
    }

    /// Leave gracefully: announce Left at a fresh incarnation, stop probing, push the news
    /// to a few members. The host keeps delivering messages for a grace period.
    pub fn leave(&mut self) -> Vec<MEffect> {
        self.list.leave();
        self.gen += 1;
        let peers = self.live_peers();
        let chosen: Vec<NodeId> = peers
            .choose_multiple(&mut self.rng, self.cfg.leave_fanout)
            .cloned()
            .collect();
        let mut fx = vec![MEffect::ToDetector(ToDetector::Stop)];
        for to in chosen {
            let msg = SwimMsg::Ping(Ping {
                seq: 0,
                from: self.id().clone(),
                updates: Vec::new(),
            });
            self.send(to, msg, &mut fx);
        }
        fx
    }

    /// `admin remove` of a dead member ([`MemberList::remove`]); the effects, or why not.
    pub fn remove(&mut self, id: &NodeId, now: u64) -> Result<Vec<MEffect>, String> {
        let mut fx = Vec::new();
        if let Some(u) = self.list.remove(id, now)? {
            fx.push(MEffect::ToDetector(ToDetector::Remove { id: u.member.id }));
        }
        Ok(fx)
    }

    /// Live members other than us (Alive or Suspect).
    pub fn live_peers(&self) -> Vec<NodeId> {
        self.list
            .members()
            .filter(|m| m.id != *self.id() && matches!(m.status, Status::Alive | Status::Suspect))
            .map(|m| m.id.clone())
            .collect()
    }

    fn state_msg(&self, reply: bool) -> SwimMsg {
        SwimMsg::StateExchange(StateExchange {
            from: self.id().clone(),
            members: self.list.export(),
            reply,
        })
    }

    /// Feed one inbound peer message. `from` is the authenticated transport-level sender.
    pub fn handle_message(&mut self, from: &NodeId, msg: SwimMsg, now: u64) -> Vec<MEffect> {
        let mut fx = Vec::new();
        if let Some(t) = self.last_heard.get_mut(from) {
            *t = now;
        } else if self.list.get(from).is_some() {
            self.last_heard.insert(from.clone(), now);
        }
        match msg {
            SwimMsg::Ping(p) => {
                self.absorb_all(&p.updates, now, &mut fx);
                let ack = SwimMsg::Ack(Ack {
                    seq: p.seq,
                    from: self.id().clone(),
                    digest: [0; 32],
                    updates: Vec::new(),
                });
                self.send(p.from, ack, &mut fx);
            }
            SwimMsg::Ack(a) => {
                self.stats.acks_received += 1;
                self.absorb_all(&a.updates, now, &mut fx);
                fx.push(MEffect::ToDetector(ToDetector::Ack { seq: a.seq }));
                self.maybe_digest_sync(from, a.digest, now, &mut fx);
            }
            SwimMsg::IndirectPing(ip) => fx.push(MEffect::ToDetector(ToDetector::IndirectPing(ip))),
            SwimMsg::Nack(n) => {
                self.stats.nacks_received += 1;
                fx.push(MEffect::ToDetector(ToDetector::Nack { seq: n.seq }))
            }
            SwimMsg::Gossip(g) => self.absorb_all(&g.updates, now, &mut fx),
            SwimMsg::StateExchange(s) => {
                for (u, r) in self.list.merge_state(&s.from, &s.members, now) {
                    self.absorb(&u, r, &mut fx);
                }
                if s.reply && !self.list.is_leaving() {
                    let msg = self.state_msg(false);
                    self.send(s.from, msg, &mut fx);
                }
            }
        }
        fx
    }

    /// Anti-entropy shortcut: if a peer's table differs while we have nothing left to
    /// gossip, push-pull with it (at most once per 5 periods).
    fn maybe_digest_sync(
        &mut self,
        from: &NodeId,
        digest: [u8; 32],
        now: u64,
        fx: &mut Vec<MEffect>,
    ) {
        if self.list.is_leaving() || digest == [0; 32] || self.list.pending_broadcasts() > 0 {
            return;
        }
        if digest == self.list.digest() {
            return;
        }
        let quiet = self.cfg.state_sync_gap_ms(self.list.live_count());
        if self
            .last_digest_sync_ms
            .is_some_and(|t| now.saturating_sub(t) < quiet)
        {
            return;
        }
        self.last_digest_sync_ms = Some(now);
        let msg = self.state_msg(true);
        self.send(from.clone(), msg, fx);
    }

    /// Feed one fired membership timer.
    pub fn handle_timer(&mut self, timer: MembershipTimer, now: u64) -> Vec<MEffect> {
        let mut fx = Vec::new();
        let live = self.gen;
        match timer {
            MembershipTimer::PushPull { gen } if gen == live && !self.list.is_leaving() => {
                let peers = self.live_peers();
                if let Some(to) = peers.choose(&mut self.rng).cloned() {
                    let msg = self.state_msg(true);
                    self.send(to, msg, &mut fx);
                }
                fx.push(MEffect::SetTimer {
                    after_ms: self.cfg.push_pull_ms(self.list.live_count()),
                    timer: MembershipTimer::PushPull { gen },
                });
            }
            MembershipTimer::Reap { gen } if gen == live => {
                for id in self.list.reap(now) {
                    fx.push(MEffect::ToDetector(ToDetector::Remove { id }));
                }
                fx.push(MEffect::SetTimer {
                    after_ms: self.cfg.probe_interval_ms,
                    timer: MembershipTimer::Reap { gen },
                });
            }
            MembershipTimer::JoinRetry { gen, attempt }
                if gen == live && self.list.live_count() <= 1 && !self.list.is_leaving() =>
            {
                self.send_to_seeds(&mut fx);
                fx.push(MEffect::SetTimer {
                    after_ms: self.join_backoff(attempt),
                    timer: MembershipTimer::JoinRetry {
                        gen,
                        attempt: attempt + 1,
                    },
                });
            }
            MembershipTimer::Reconnect { gen } if gen == live && !self.list.is_leaving() => {
                let dead: Vec<NodeId> = self
                    .list
                    .members()
                    .filter(|m| m.status == Status::Dead)
                    .map(|m| m.id.clone())
                    .collect();
                let gap = self.cfg.state_sync_gap_ms(self.list.live_count());
                let quiet = self
                    .last_digest_sync_ms
                    .is_some_and(|t| now.saturating_sub(t) < gap);
                if let Some(to) = dead.choose(&mut self.rng).cloned() {
                    // Shares the digest sync's allowance: a large table is costly to send.
                    if !quiet {
                        self.last_digest_sync_ms = Some(now);
                        let msg = self.state_msg(true);
                        self.send(to, msg, &mut fx);
                    }
                } else if self.list.live_count() <= 1 && !self.seeds.is_empty() {
                    self.send_to_seeds(&mut fx);
                }
                fx.push(MEffect::SetTimer {
                    after_ms: self.cfg.reconnect_interval_ms,
                    timer: MembershipTimer::Reconnect { gen },
                });
            }
            MembershipTimer::Gossip { gen } if gen == live => {
                self.gossip_round(&mut fx);
                fx.push(MEffect::SetTimer {
                    after_ms: self.cfg.gossip_interval_ms.max(1),
                    timer: MembershipTimer::Gossip { gen },
                });
            }
            _ => {}
        }
        fx
    }

    /// One fan-out round: up to `gossip_nodes` distinct random members (live, or dead and
    /// not yet reaped) each get what is pending, within the byte budget.
    fn gossip_round(&mut self, fx: &mut Vec<MEffect>) {
        if self.list.pending_broadcasts() == 0 {
            return;
        }
        if self.peer_ids_version != Some(self.list.ids_version()) {
            let me = self.id().clone();
            self.peer_ids = self
                .list
                .members()
                .filter(|m| m.id != me)
                .map(|m| m.id.clone())
                .collect();
            self.peer_ids_version = Some(self.list.ids_version());
        }
        let n = self.peer_ids.len();
        if n == 0 {
            return;
        }
        let want = self.cfg.gossip_nodes.min(n);
        let mut picked: Vec<usize> = Vec::with_capacity(want);
        // Rejection sampling: a handful of tries per target; Left members are skipped.
        for _ in 0..want * 4 {
            if picked.len() == want {
                break;
            }
            let i = self.rng.random_range(0..n);
            let ok = !picked.contains(&i)
                && self
                    .list
                    .get(&self.peer_ids[i])
                    .is_some_and(|m| m.status != Status::Left);
            if ok {
                picked.push(i);
            }
        }
        for i in picked {
            let to = self.peer_ids[i].clone();
            let updates = self.list.select_gossip(Some(&to));
            if updates.is_empty() {
                break;
            }
            self.stats.gossip_msgs_sent += 1;
            let msg = SwimMsg::Gossip(Gossip {
                from: self.id().clone(),
                updates,
            });
            self.send(to, msg, fx);
        }
    }

    /// Feed one output of the failure detector (its timers stay with the detector's host).
    pub fn handle_detector(&mut self, out: DetectorOutput, now: u64) -> Vec<MEffect> {
        let mut fx = Vec::new();
        match out {
            DetectorOutput::Send { to, msg } => self.send(to, msg, &mut fx),
            DetectorOutput::SetTimer { .. } => {
                debug_assert!(
                    false,
                    "BUG: detector timers are kept by the detector's host"
                )
            }
            DetectorOutput::Suspect(id, inc) => {
                let r = self.list.suspect(&id, inc, now);
                if matches!(r, Merge::Changed { .. }) {
                    self.stats.suspicions_raised += 1;
                    if let Some(v) = self.verdicts.as_mut() {
                        v.push((id.clone(), Status::Suspect));
                    }
                }
                self.verdict(&id, r, &mut fx);
            }
            DetectorOutput::ConfirmDead(id, inc) => {
                let r = self.list.confirm_dead(&id, inc, now);
                if matches!(r, Merge::Changed { .. }) {
                    self.stats.suspicions_confirmed += 1;
                    if let Some(v) = self.verdicts.as_mut() {
                        v.push((id.clone(), Status::Dead));
                    }
                }
                self.verdict(&id, r, &mut fx);
            }
            DetectorOutput::Regossip(u) => self.list.regossip(u),
            DetectorOutput::Inconclusive { .. } => self.stats.probes_late += 1,
        }
        fx
    }

    fn absorb_all(&mut self, updates: &[Update], now: u64, fx: &mut Vec<MEffect>) {
        for u in updates {
            self.stats.gossip_bytes_received += estimate_update_size(u) as u64;
            let r = self.list.apply(u, now, true);
            self.absorb(u, r, fx);
        }
    }

    /// Keep the detector in step with one merge result.
    fn absorb(&mut self, u: &Update, r: Merge, fx: &mut Vec<MEffect>) {
        let id = u.member.id.clone();
        let incarnation = u.member.incarnation;
        let input = match r {
            Merge::Refuted {
                suspected: true, ..
            } => {
                self.stats.suspicions_refuted += 1;
                ToDetector::Refuted
            }
            Merge::Changed { info, .. } => match info.status {
                Status::Alive => ToDetector::Alive { id, incarnation },
                Status::Suspect => ToDetector::Suspected {
                    update: u.clone(),
                    live: self.list.live_count(),
                    known: false,
                },
                Status::Dead | Status::Left => ToDetector::Remove { id },
            },
            Merge::SameSuspect => ToDetector::Suspected {
                update: u.clone(),
                live: self.list.live_count(),
                known: true,
            },
            _ => return,
        };
        fx.push(MEffect::ToDetector(input));
    }

    fn verdict(&mut self, id: &NodeId, r: Merge, fx: &mut Vec<MEffect>) {
        let Some(member) = self.list.get(id).cloned() else {
            return;
        };
        let u = Update {
            member,
            origin: self.id().clone(),
        };
        self.absorb(&u, r, fx);
    }

    /// Attach piggyback/digest to Ping and Ack, resolve the address, emit.
    fn send(&mut self, to: NodeId, mut msg: SwimMsg, fx: &mut Vec<MEffect>) {
        match &mut msg {
            SwimMsg::Ping(p) => {
                if p.seq != 0 {
                    self.stats.probes_sent += 1;
                }
                p.updates = self.list.select_gossip(Some(&to))
            }
            SwimMsg::Ack(a) => {
                a.digest = self.list.digest();
                a.updates = self.list.select_gossip(Some(&to));
            }
            SwimMsg::IndirectPing(_) => self.stats.indirect_probes_sent += 1,
            _ => {}
        }
        let updates: &[Update] = match &msg {
            SwimMsg::Ping(p) => &p.updates,
            SwimMsg::Ack(a) => &a.updates,
            SwimMsg::Gossip(g) => &g.updates,
            _ => &[],
        };
        self.stats.gossip_bytes_sent +=
            updates.iter().map(estimate_update_size).sum::<usize>() as u64;
        let addr = self.list.get(&to).map(|m| m.peer_addr.clone());
        fx.push(MEffect::Send { to, addr, msg });
    }
}
