//! Deterministic in-process simulator for `Node`s.
//!
//! Owns: virtual time (a priority queue of deliveries and timers ordered by
//! `(time, insertion seq)`), a seeded RNG for loss and delay, the node slots
//! and fault injection (crash, pause, partition, join), plus traffic counters
//! and a timestamped log of membership events.
//!
//! Invariants:
//! - Same `SimConfig` (including seed) and same calls => identical run.
//! - A crashed node never sends or receives again; its timers are dropped.
//! - A paused node runs nothing while paused: messages and timers addressed to
//!   it are held and handed over, in order, when it resumes (like SIGSTOP with
//!   kernel-buffered packets and late timers).
//! - Partitions are checked at delivery time; loss at send time.
//! - A slow node (`set_slow`, a CPU-starved process) handles every message and timer
//!   200-800 ms (or as configured) after it is due; messages keep their order (one inbox),
//!   timers are late independently of the inbox (so a timeout can overtake the ack that
//!   arrived in time, as on a starved host); its sense of `now` is the late time it runs.

pub mod node;
pub mod scenarios;

use crate::idmap::IdMap;
use crate::membership::config::SwimConfig;
use crate::membership::core::MemberEvent;
use node::NodeTimer as Timer;
use node::{Effect, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use troupe_protocol::swim::{MemberInfo, NodeId, Status, SwimMsg};

/// Simulator knobs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Probability in [0,1] that any message is dropped.
    pub loss: f64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub swim: SwimConfig,
    /// Encode every message with rmp-serde to count bytes (slower).
    pub count_bytes: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            loss: 0.0,
            delay_min_ms: 1,
            delay_max_ms: 10,
            swim: SwimConfig::default(),
            count_bytes: false,
        }
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver {
        to: usize,
        from: usize,
        msg: SwimMsg,
    },
    Timer {
        node: usize,
        timer: Timer,
    },
    Resume {
        node: usize,
    },
    /// An event a slow node finally gets to handle.
    Late(Box<Ev>),
}

impl Ev {
    fn target(&self) -> usize {
        match self {
            Ev::Deliver { to, .. } => *to,
            Ev::Timer { node, .. } | Ev::Resume { node } => *node,
            Ev::Late(ev) => ev.target(),
        }
    }
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // min-heap on (at, seq)
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Slot {
    node: Node,
    crashed: bool,
    paused_until: Option<u64>,
    held: Vec<Ev>,
    group: u32,
    /// Extra handling delay range (ms) of a slow node, and the latest time it has already
    /// promised to handle something at (keeps its inbox in order).
    slow: Option<(u64, u64)>,
    slow_until: u64,
}

/// One membership event as seen by `observer` at virtual time `at`.
#[derive(Clone, Debug)]
pub struct Observed {
    pub at: u64,
    pub observer: usize,
    pub event: MemberEvent,
}

/// What the cluster saw of one (member, incarnation), summed over every observer. Kept
/// whether or not the full event log is, so long runs need not hold millions of events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// (time, observer) of the first MemberSuspect event.
    pub first_suspect: Option<(u64, usize)>,
    /// (time, observer) of the first MemberDown event.
    pub first_dead: Option<(u64, usize)>,
    /// Observers that reported it MemberDown.
    pub dead_by: usize,
}

/// One verdict of `observer`'s own detector (not learnt by gossip) about `subject`.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub at: u64,
    pub observer: usize,
    pub subject: NodeId,
    pub status: Status,
}

/// Traffic counters (messages *sent*, including ones later lost). Byte figures are the
/// MessagePack encoding and only counted with `SimConfig::count_bytes`.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
    pub by_kind: HashMap<&'static str, u64>,
    pub bytes_by_kind: HashMap<&'static str, u64>,
    /// Largest single message other than a full-state exchange (bulk lane).
    pub max_gossip_msg_bytes: u64,
    /// Messages and bytes sent, per node index.
    pub per_node: Vec<(u64, u64)>,
}

/// The simulated cluster.
pub struct Sim {
    pub now: u64,
    cfg: SimConfig,
    rng: StdRng,
    slots: Vec<Slot>,
    ids: IdMap<NodeId, usize>,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    pub traffic: Traffic,
    /// Every membership event, while `keep_log` is set (the default).
    pub log: Vec<Observed>,
    pub keep_log: bool,
    /// Suspect/Dead sightings per (member, incarnation), always kept.
    pub seen: BTreeMap<(NodeId, u64), Seen>,
    pub verdicts: Vec<Verdict>,
}

/// The member record the simulator uses for node `i`.
pub fn sim_info(i: usize, run_id: u64) -> MemberInfo {
    MemberInfo {
        id: NodeId(format!("n{i}")),
        client_addr: format!("10.0.{}.{}:7000", i / 250, i % 250),
        peer_addr: format!("10.0.{}.{}:7001", i / 250, i % 250),
        admin_addr: format!("10.0.{}.{}:7002", i / 250, i % 250),
        incarnation: 0,
        status: Status::Alive,
        run_id,
    }
}

impl Sim {
    /// `n` nodes that already know each other (preloaded), all started with
    /// jittered first periods at time 0.
    pub fn bootstrapped(cfg: SimConfig, n: usize) -> Self {
        let mut sim = Sim::empty(cfg);
        let infos: Vec<MemberInfo> = (0..n).map(|i| sim_info(i, 1)).collect();
        for (i, info) in infos.iter().enumerate() {
            let seed = sim.cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut node = Node::new(info.clone(), sim.cfg.swim.clone(), seed);
            node.preload(infos.iter().cloned());
            sim.push_slot(node);
        }
        for i in 0..n {
            let fx = sim.slots[i].node.join(&[]);
            sim.apply(i, fx);
        }
        sim
    }

    pub fn empty(cfg: SimConfig) -> Self {
        Sim {
            now: 0,
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            slots: Vec::new(),
            ids: IdMap::default(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            traffic: Traffic::default(),
            log: Vec::new(),
            keep_log: true,
            seen: BTreeMap::new(),
            verdicts: Vec::new(),
        }
    }

    fn push_slot(&mut self, node: Node) -> usize {
        let idx = self.slots.len();
        self.ids.insert(node.id().clone(), idx);
        self.slots.push(Slot {
            node,
            crashed: false,
            paused_until: None,
            held: Vec::new(),
            group: 0,
            slow: None,
            slow_until: 0,
        });
        idx
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    pub fn node(&self, i: usize) -> &Node {
        &self.slots[i].node
    }
    pub fn id_of(&self, i: usize) -> NodeId {
        self.slots[i].node.id().clone()
    }
    pub fn is_crashed(&self, i: usize) -> bool {
        self.slots[i].crashed
    }
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Start a brand-new node (fresh run id) that joins through `seeds`.
    pub fn join_new(&mut self, seeds: &[usize]) -> usize {
        let i = self.slots.len();
        let run_id = 1_000 + self.now;
        self.start_node(sim_info(i, run_id), seeds)
    }

    /// Restart crashed node `i` as a new process (new run id, incarnation 0).
    pub fn restart(&mut self, i: usize, seeds: &[usize]) {
        let mut info = sim_info(i, 1_000 + self.now);
        info.id = self.id_of(i);
        let seed = self.rng.random();
        let node = Node::new(info, self.cfg.swim.clone(), seed);
        let slot = &mut self.slots[i];
        slot.node = node;
        slot.crashed = false;
        slot.paused_until = None;
        slot.held.clear();
        let seed_ids: Vec<NodeId> = seeds.iter().map(|s| self.id_of(*s)).collect();
        let fx = self.slots[i].node.join(&seed_ids);
        self.apply(i, fx);
    }

    fn start_node(&mut self, info: MemberInfo, seeds: &[usize]) -> usize {
        let seed = self.rng.random();
        let node = Node::new(info, self.cfg.swim.clone(), seed);
        let i = self.push_slot(node);
        let seed_ids: Vec<NodeId> = seeds.iter().map(|s| self.id_of(*s)).collect();
        let fx = self.slots[i].node.join(&seed_ids);
        self.apply(i, fx);
        i
    }

    /// Stop node `i` for good (no more sends, receives or timers).
    pub fn crash(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.crashed = true;
        s.held.clear();
    }

    /// Freeze node `i` for `ms`; it catches up on held input when it resumes.
    pub fn pause(&mut self, i: usize, ms: u64) {
        let until = self.now + ms;
        self.slots[i].paused_until = Some(until);
        self.schedule(until, Ev::Resume { node: i });
    }

    /// Make node `i` slow: everything it handles from now on, messages and timers alike,
    /// is handled `min_ms..=max_ms` late (in due order). `None` makes it normal again.
    pub fn set_slow(&mut self, i: usize, range: Option<(u64, u64)>) {
        self.slots[i].slow = range;
    }

    /// Put nodes into groups; only same-group traffic is delivered.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                self.slots[i].group = g as u32 + 1;
            }
        }
    }

    pub fn heal(&mut self) {
        for s in &mut self.slots {
            s.group = 0;
        }
    }

    /// Graceful leave of node `i`.
    pub fn leave(&mut self, i: usize) {
        let fx = self.slots[i].node.leave(self.now);
        self.apply(i, fx);
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.next_seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.next_seq,
            ev,
        });
    }

    fn apply(&mut self, from: usize, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::SetTimer { after_ms, timer } => {
                    self.schedule(self.now + after_ms, Ev::Timer { node: from, timer })
                }
                Effect::Send { to, msg, .. } => {
                    let Some(&to) = self.ids.get(&to) else {
                        continue;
                    };
                    let t = &mut self.traffic;
                    t.messages += 1;
                    *t.by_kind.entry(msg.kind()).or_default() += 1;
                    if t.per_node.len() <= from {
                        t.per_node.resize(from + 1, (0, 0));
                    }
                    t.per_node[from].0 += 1;
                    if self.cfg.count_bytes {
                        let len = rmp_serde::to_vec_named(&msg).map_or(0, |b| b.len()) as u64;
                        t.bytes += len;
                        t.per_node[from].1 += len;
                        *t.bytes_by_kind.entry(msg.kind()).or_default() += len;
                        if !matches!(msg, SwimMsg::StateExchange(_)) {
                            t.max_gossip_msg_bytes = t.max_gossip_msg_bytes.max(len);
                        }
                    }
                    if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss) {
                        continue;
                    }
                    let d = self
                        .rng
                        .random_range(self.cfg.delay_min_ms..=self.cfg.delay_max_ms);
                    self.schedule(self.now + d, Ev::Deliver { to, from, msg });
                }
            }
        }
        for (subject, status) in self.slots[from].node.drain_verdicts() {
            self.verdicts.push(Verdict {
                at: self.now,
                observer: from,
                subject,
                status,
            });
        }
        let events = self.slots[from].node.drain_events();
        for event in events {
            let hit = match &event {
                MemberEvent::MemberSuspect(m) => Some((m, false)),
                MemberEvent::MemberDown(m) => Some((m, true)),
                _ => None,
            };
            if let Some((m, dead)) = hit {
                let s = self.seen.entry((m.id.clone(), m.incarnation)).or_default();
                let at = Some((self.now, from));
                if dead {
                    s.first_dead = s.first_dead.or(at);
                    s.dead_by += 1;
                } else {
                    s.first_suspect = s.first_suspect.or(at);
                }
            }
            if !self.keep_log {
                continue;
            }
            self.log.push(Observed {
                at: self.now,
                observer: from,
                event,
            });
        }
    }

    /// Process everything scheduled up to and including `t`; `now` ends at `t`.
    pub fn run_until(&mut self, t: u64) {
        while self.queue.peek().is_some_and(|s| s.at <= t) {
            let Some(Scheduled { at, ev, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.step(ev);
        }
        self.now = t;
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    fn step(&mut self, ev: Ev) {
        let i = ev.target();
        if self.slots[i].crashed {
            return;
        }
        if let Ev::Resume { node } = ev {
            let slot = &mut self.slots[node];
            if slot.paused_until.is_some_and(|u| u <= self.now) {
                slot.paused_until = None;
                let held = std::mem::take(&mut slot.held);
                for h in held {
                    self.step(h);
                }
            }
            return;
        }
        if self.slots[i].paused_until.is_some() {
            self.slots[i].held.push(ev);
            return;
        }
        let ev = match ev {
            Ev::Late(inner) => *inner,
            ev => match self.slots[i].slow {
                Some((lo, hi)) => {
                    let mut at = self.now + self.rng.random_range(lo..=hi);
                    if matches!(ev, Ev::Deliver { .. }) {
                        at = at.max(self.slots[i].slow_until);
                        self.slots[i].slow_until = at;
                    }
                    self.schedule(at, Ev::Late(Box::new(ev)));
                    return;
                }
                None => ev,
            },
        };
        let now = self.now;
        let fx = match ev {
            Ev::Deliver { from, msg, .. } => {
                let (src, dst) = (&self.slots[from], &self.slots[i]);
                if src.crashed || src.group != dst.group {
                    return;
                }
                let from_id = src.node.id().clone();
                self.slots[i].node.handle_message(&from_id, msg, now)
            }
            Ev::Timer { timer, .. } => self.slots[i].node.handle_timer(timer, now),
            Ev::Resume { .. } | Ev::Late(_) => return,
        };
        self.apply(i, fx);
    }

    /// Node `id`'s own current record, if it is one of ours.
    pub fn slots_me(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.ids.get(id).map(|&i| self.slots[i].node.me())
    }

    /// Does `observer` currently see `subject` with `status`?
    pub fn sees(&self, observer: usize, subject: usize, status: Status) -> bool {
        let id = self.id_of(subject);
        self.slots[observer]
            .node
            .member(&id)
            .is_some_and(|m| m.status == status)
    }

    /// Indices of nodes that are neither crashed nor `except`.
    pub fn healthy(&self, except: &[usize]) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| !self.slots[*i].crashed && !except.contains(i))
            .collect()
    }
}

#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
