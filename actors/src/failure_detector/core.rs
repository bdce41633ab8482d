//! SWIM failure detector with Lifeguard extensions (sans-IO).
//!
//! Owns: probe scheduling (round-robin over a seeded shuffle), the one
//! outstanding probe (direct then `k` indirect), relay duty for other nodes'
//! indirect probes (answering with a Nack on timeout), suspicion timers whose
//! timeout shrinks with independent confirmations, the Local Health
//! Multiplier (LHM), and the late-tick check (a probe settled by a tick that ran
//! past `late_tolerance_ms` is inconclusive and retried, not held against its target).
//!
//! It does not own the member table: the membership side tells it who is
//! probe-able ([`ToDetector`](super::inputs::ToDetector)) and applies its
//! verdicts (`Suspect`, `ConfirmDead`) to `MemberList`.
//!
//! Invariants:
//! - Every timer carries a token (`gen`, `seq` or suspicion `token`) plus the
//!   incarnation it was set for; a timer whose token no longer matches is
//!   dropped without output.
//! - At most one own probe is outstanding; it is settled at the next tick.
//! - `lhm` stays within `0..=awareness_max_multiplier`.
//! - Randomness comes only from the seeded `StdRng`; time only from `now`.

use crate::idmap::IdMap;
use crate::membership::config::SwimConfig;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use troupe_protocol::swim::{Ack, IndirectPing, Nack, NodeId, Ping, SwimMsg, Update};

/// A timer the host must fire back via `handle_timer` after `after_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Start of a protocol period; settles the previous probe.
    ProbeTick { gen: u64 },
    /// Direct ping got no ack in time: go indirect.
    ProbeTimeout { seq: u64 },
    /// Our relay ping for someone else's indirect probe timed out.
    RelayTimeout { seq: u64 },
    /// Suspicion of `id` at `incarnation` may have expired.
    Suspicion {
        id: NodeId,
        incarnation: u64,
        token: u64,
    },
}

/// Detector output, applied by the membership side (timers by the detector's host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorOutput {
    /// Ping/Ack are emitted without piggyback; membership fills updates/digest.
    Send {
        to: NodeId,
        msg: SwimMsg,
    },
    SetTimer {
        after_ms: u64,
        timer: Timer,
    },
    /// Our probe of `id` (at this incarnation) failed.
    Suspect(NodeId, u64),
    /// Our suspicion of `id` at this incarnation expired.
    ConfirmDead(NodeId, u64),
    /// A Suspect record brought a new independent confirmation: gossip it on.
    Regossip(Update),
    /// Our probe of `target` went unanswered, but the tick that settled it ran `late_ms`
    /// late (past `late_tolerance_ms`): we, not the target, are the slow one. Nothing is
    /// suspected; the target is probed again.
    Inconclusive {
        target: NodeId,
        late_ms: u64,
    },
}

/// How many probes of one target in a row may be inconclusive (our own ticks late) before
/// a failed one is taken as a failure anyway: a node that is late for good still detects a
/// dead peer, only slower.
pub const LATE_PROBE_RETRIES: u32 = 3;

#[derive(Clone, Debug)]
struct View {
    incarnation: u64,
    suspect: bool,
}

#[derive(Clone, Debug)]
struct Probe {
    seq: u64,
    target: NodeId,
    incarnation: u64,
    indirect: bool,
    expected_nacks: u32,
    nacks: u32,
    acked: bool,
}

#[derive(Clone, Debug)]
struct Relay {
    requester: NodeId,
    orig_seq: u64,
    target: NodeId,
}

/// Lifeguard suspicion state for one member.
#[derive(Clone, Debug)]
struct Suspicion {
    incarnation: u64,
    start_ms: u64,
    confirmers: BTreeSet<NodeId>,
    k: u32,
    min_ms: u64,
    max_ms: u64,
    token: u64,
}

impl Suspicion {
    fn confirmations(&self) -> u32 {
        (self.confirmers.len() as u32).saturating_sub(1)
    }
}

/// Lifeguard: timeout = max - (max - min) * log(C+1) / log(K+1), floored at min.
pub fn suspicion_timeout_ms(min_ms: u64, max_ms: u64, k: u32, c: u32) -> u64 {
    if k == 0 {
        return min_ms;
    }
    let frac = ((c as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
    let t = max_ms as f64 - (max_ms.saturating_sub(min_ms)) as f64 * frac;
    (t.floor() as u64).max(min_ms)
}

/// A member whose last probe was inconclusive (see [`Detector::settle`]).
#[derive(Clone, Debug)]
struct Retry {
    target: NodeId,
    tries: u32,
    seq: u64,
}

/// The failure detector of one node.
#[derive(Debug)]
pub struct Detector {
    me: NodeId,
    cfg: SwimConfig,
    rng: StdRng,
    members: IdMap<NodeId, View>,
    order: Vec<NodeId>,
    pos: usize,
    next_seq: u64,
    next_token: u64,
    gen: u64,
    running: bool,
    probe: Option<Probe>,
    relays: HashMap<u64, Relay>,
    suspicions: IdMap<NodeId, Suspicion>,
    lhm: u32,
    /// When the pending `ProbeTick` is due (our clock), to measure how late it runs.
    tick_due: u64,
    /// A target whose probe was inconclusive, to probe again next: how many times in a row
    /// that happened, and the inconclusive probe's sequence number (its ack may still come).
    retry: Option<Retry>,
}

impl Detector {
    pub fn new(me: NodeId, cfg: SwimConfig, seed: u64) -> Self {
        Detector {
            me,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            members: IdMap::default(),
            order: Vec::new(),
            pos: 0,
            next_seq: 0,
            next_token: 0,
            gen: 0,
            running: false,
            probe: None,
            relays: HashMap::new(),
            suspicions: IdMap::default(),
            lhm: 0,
            tick_due: 0,
            retry: None,
        }
    }

    /// Current Local Health Multiplier.
    pub fn lhm(&self) -> u32 {
        self.lhm
    }
    /// `base * (LHM + 1)`.
    pub fn scaled(&self, base_ms: u64) -> u64 {
        base_ms * (self.lhm as u64 + 1)
    }
    pub fn is_suspected(&self, id: &NodeId) -> bool {
        self.suspicions.contains_key(id)
    }
    pub fn probe_order(&self) -> &[NodeId] {
        &self.order
    }
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn adjust_lhm(&mut self, delta: i64) {
        let max = self.cfg.awareness_max_multiplier as i64;
        self.lhm = (self.lhm as i64 + delta).clamp(0, max) as u32;
    }

    /// Lifeguard: refuting a suspicion about ourselves means we were slow.
    pub fn note_refuted(&mut self) {
        self.adjust_lhm(1);
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Begin probing; the first tick is jittered within one period.
    pub fn start(&mut self, now: u64) -> Vec<DetectorOutput> {
        self.running = true;
        self.gen += 1;
        let jitter = self.rng.random_range(0..self.cfg.probe_interval_ms.max(1));
        self.tick_due = now + jitter;
        vec![DetectorOutput::SetTimer {
            after_ms: jitter,
            timer: Timer::ProbeTick { gen: self.gen },
        }]
    }

    /// Stop probing (leave). Outstanding timers become stale.
    pub fn stop(&mut self) {
        self.running = false;
        self.gen += 1;
        self.probe = None;
        self.retry = None;
        self.suspicions.clear();
    }

    /// Insert or refresh a probe-able member (Alive or Suspect, not us).
    pub fn upsert_member(&mut self, id: &NodeId, incarnation: u64, suspect: bool) {
        if *id == self.me {
            return;
        }
        if let Some(v) = self.members.get_mut(id) {
            v.incarnation = incarnation;
            v.suspect = suspect;
            return;
        }
        self.members.insert(
            id.clone(),
            View {
                incarnation,
                suspect,
            },
        );
        let at = self.rng.random_range(0..=self.order.len());
        self.order.insert(at, id.clone());
        if at < self.pos {
            self.pos += 1;
        }
    }

    /// Add many new Alive members at once (one shuffle instead of N inserts).
    pub fn add_members_bulk(&mut self, members: Vec<(NodeId, u64)>) {
        for (id, incarnation) in members {
            if id == self.me || self.members.contains_key(&id) {
                continue;
            }
            self.members.insert(
                id.clone(),
                View {
                    incarnation,
                    suspect: false,
                },
            );
            self.order.push(id);
        }
        self.order.shuffle(&mut self.rng);
        self.pos = 0;
    }

    /// Member is Dead/Left/reaped: stop probing it and drop its suspicion.
    pub fn remove_member(&mut self, id: &NodeId) {
        self.members.remove(id);
        self.suspicions.remove(id);
        if let Some(at) = self.order.iter().position(|x| x == id) {
            self.order.remove(at);
            if at < self.pos {
                self.pos -= 1;
            }
        }
    }

    /// Probe-able members known to the detector.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    fn next_target(&mut self) -> Option<NodeId> {
        if self.members.is_empty() {
            return None;
        }
        if let Some(r) = &self.retry {
            if self.members.contains_key(&r.target) {
                return Some(r.target.clone());
            }
            self.retry = None;
        }
        if self.pos >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
        }
        let id = self.order.get(self.pos).cloned();
        self.pos += 1;
        id
    }

    /// Protocol period: settle the previous probe, start the next one. `now` is when the
    /// tick actually runs; how far past its due time that is tells whether a missing ack
    /// may just be one we have not handled yet.
    pub fn on_tick(&mut self, gen: u64, now: u64) -> Vec<DetectorOutput> {
        let mut out = Vec::new();
        if gen != self.gen || !self.running {
            return out;
        }
        let late_ms = now.saturating_sub(self.tick_due);
        if let Some(p) = self.probe.take() {
            self.settle(p, late_ms, &mut out);
        }
        if let Some(target) = self.next_target() {
            let seq = self.seq();
            let incarnation = self.members.get(&target).map_or(0, |v| v.incarnation);
            out.push(DetectorOutput::Send {
                to: target.clone(),
                msg: SwimMsg::Ping(Ping {
                    seq,
                    from: self.me.clone(),
                    updates: Vec::new(),
                }),
            });
            out.push(DetectorOutput::SetTimer {
                after_ms: self.scaled(self.cfg.probe_timeout_ms),
                timer: Timer::ProbeTimeout { seq },
            });
            self.probe = Some(Probe {
                seq,
                target,
                incarnation,
                indirect: false,
                expected_nacks: 0,
                nacks: 0,
                acked: false,
            });
        }
        let after_ms = self.scaled(self.cfg.probe_interval_ms);
        self.tick_due = now + after_ms;
        out.push(DetectorOutput::SetTimer {
            after_ms,
            timer: Timer::ProbeTick { gen: self.gen },
        });
        out
    }

    /// The verdict on the probe of the period that just ended.
    fn settle(&mut self, p: Probe, late_ms: u64, out: &mut Vec<DetectorOutput>) {
        if p.acked {
            self.adjust_lhm(-1);
            self.retry = None;
            return;
        }
        let missed = p.expected_nacks.saturating_sub(p.nacks) as i64;
        let delta = if p.expected_nacks > 0 { missed } else { 1 };
        if !self.members.contains_key(&p.target) {
            self.adjust_lhm(delta);
            return;
        }
        let tolerance = self.cfg.late_tolerance_ms;
        let tries = match &self.retry {
            Some(r) if r.target == p.target => r.tries,
            _ => 0,
        };
        // Every relay answered that it could not reach the target either: our own inbox
        // was handled in time, so the failure is the target's.
        let relays_agree = p.expected_nacks > 0 && p.nacks >= p.expected_nacks;
        if tolerance > 0 && late_ms > tolerance && !relays_agree && tries < LATE_PROBE_RETRIES {
            // Our own lateness is the evidence: count it toward local health at least once.
            self.adjust_lhm(delta.max(1));
            self.retry = Some(Retry {
                target: p.target.clone(),
                tries: tries + 1,
                seq: p.seq,
            });
            out.push(DetectorOutput::Inconclusive {
                target: p.target,
                late_ms,
            });
            return;
        }
        self.adjust_lhm(delta);
        self.retry = None;
        out.push(DetectorOutput::Suspect(p.target, p.incarnation));
    }

    /// Direct ping unanswered: ask `k` alive members to probe the target.
    pub fn on_probe_timeout(&mut self, seq: u64) -> Vec<DetectorOutput> {
        let Some(p) = self.probe.as_ref() else {
            return Vec::new();
        };
        if p.seq != seq || p.acked || p.indirect {
            return Vec::new();
        }
        let target = p.target.clone();
        let relays = self.pick_relays(&target);
        let me = self.me.clone();
        if let Some(p) = self.probe.as_mut() {
            p.indirect = true;
            p.expected_nacks = relays.len() as u32;
        }
        relays
            .into_iter()
            .map(|to| DetectorOutput::Send {
                to,
                msg: SwimMsg::IndirectPing(IndirectPing {
                    seq,
                    from: me.clone(),
                    target: target.clone(),
                }),
            })
            .collect()
    }

    /// Up to `indirect_probes` distinct random unsuspected members other than `target`:
    /// sampled from the probe order (a few tries each), so a probe costs O(k), not O(N).
    fn pick_relays(&mut self, target: &NodeId) -> Vec<NodeId> {
        let want = self.cfg.indirect_probes;
        let n = self.order.len();
        let mut relays: Vec<NodeId> = Vec::with_capacity(want);
        if n <= 4 * want {
            // Small table: take them all in a random order.
            let mut all: Vec<NodeId> = self
                .order
                .iter()
                .filter(|id| *id != target && self.members.get(*id).is_some_and(|v| !v.suspect))
                .cloned()
                .collect();
            all.shuffle(&mut self.rng);
            all.truncate(want);
            return all;
        }
        for _ in 0..want * 8 {
            if relays.len() == want {
                break;
            }
            let id = &self.order[self.rng.random_range(0..n)];
            let ok = id != target
                && !relays.contains(id)
                && self.members.get(id).is_some_and(|v| !v.suspect);
            if ok {
                relays.push(id.clone());
            }
        }
        relays
    }

    /// An ack arrived. Returns outputs (a forwarded ack when we were a relay).
    pub fn on_ack(&mut self, seq: u64) -> Vec<DetectorOutput> {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq {
                p.acked = true;
                return Vec::new();
            }
        }
        // The answer to a probe our late tick left inconclusive: the target is alive, which
        // is what that probe asked. The probe of it now running counts as answered.
        if self.retry.as_ref().is_some_and(|r| r.seq == seq) {
            let target = self.retry.take().map(|r| r.target);
            if let Some(p) = self.probe.as_mut() {
                if Some(&p.target) == target.as_ref() {
                    p.acked = true;
                }
            }
            return Vec::new();
        }
        let Some(r) = self.relays.remove(&seq) else {
            return Vec::new();
        };
        vec![DetectorOutput::Send {
            to: r.requester,
            msg: SwimMsg::Ack(Ack {
                seq: r.orig_seq,
                from: r.target,
                digest: [0; 32],
                updates: Vec::new(),
            }),
        }]
    }

    /// A relay reports it could not reach our target either.
    pub fn on_nack(&mut self, seq: u64) {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq && p.nacks < p.expected_nacks {
                p.nacks += 1;
            }
        }
    }

    /// Someone asks us to probe `target` for them.
    pub fn on_indirect_ping(&mut self, req: &IndirectPing) -> Vec<DetectorOutput> {
        let seq = self.seq();
        self.relays.insert(
            seq,
            Relay {
                requester: req.from.clone(),
                orig_seq: req.seq,
                target: req.target.clone(),
            },
        );
        vec![
            DetectorOutput::Send {
                to: req.target.clone(),
                msg: SwimMsg::Ping(Ping {
                    seq,
                    from: self.me.clone(),
                    updates: Vec::new(),
                }),
            },
            DetectorOutput::SetTimer {
                after_ms: self.cfg.probe_timeout_ms,
                timer: Timer::RelayTimeout { seq },
            },
        ]
    }

    /// Our relay ping timed out: tell the requester (Lifeguard Nack).
    pub fn on_relay_timeout(&mut self, seq: u64) -> Vec<DetectorOutput> {
        let Some(r) = self.relays.remove(&seq) else {
            return Vec::new();
        };
        vec![DetectorOutput::Send {
            to: r.requester,
            msg: SwimMsg::Nack(Nack {
                seq: r.orig_seq,
                from: self.me.clone(),
            }),
        }]
    }

    fn expected_confirmations(&self, n: usize) -> u32 {
        let k = self
            .cfg
            .suspicion_confirmations
            .unwrap_or(self.cfg.indirect_probes) as u32;
        if (n as u32).saturating_sub(2) < k {
            0
        } else {
            k
        }
    }

    /// `id` became Suspect at `incarnation` (asserted by `origin`) in a
    /// cluster of `n` live members. Starts the timer, or counts `origin` as a
    /// confirmation if already suspecting. Returns (new confirmation?, outputs).
    pub fn suspect(
        &mut self,
        id: &NodeId,
        incarnation: u64,
        origin: &NodeId,
        n: usize,
        now: u64,
    ) -> (bool, Vec<DetectorOutput>) {
        if *id == self.me {
            return (false, Vec::new());
        }
        if let Some(v) = self.members.get_mut(id) {
            v.incarnation = incarnation;
            v.suspect = true;
        }
        match self.suspicions.get(id) {
            Some(s) if s.incarnation == incarnation => return self.confirm(id, origin, now),
            Some(s) if s.incarnation > incarnation => return (false, Vec::new()),
            _ => {}
        }
        let (min_ms, max_ms) = self.cfg.suspicion_bounds_ms(n);
        let k = self.expected_confirmations(n);
        self.next_token += 1;
        let s = Suspicion {
            incarnation,
            start_ms: now,
            confirmers: BTreeSet::from([origin.clone()]),
            k,
            min_ms,
            max_ms,
            token: self.next_token,
        };
        let after_ms = suspicion_timeout_ms(min_ms, max_ms, k, 0);
        let timer = Timer::Suspicion {
            id: id.clone(),
            incarnation,
            token: s.token,
        };
        self.suspicions.insert(id.clone(), s);
        (true, vec![DetectorOutput::SetTimer { after_ms, timer }])
    }

    fn confirm(&mut self, id: &NodeId, origin: &NodeId, now: u64) -> (bool, Vec<DetectorOutput>) {
        self.next_token += 1;
        let token = self.next_token;
        let Some(s) = self.suspicions.get_mut(id) else {
            return (false, Vec::new());
        };
        if s.confirmations() >= s.k || s.confirmers.contains(origin) {
            return (false, Vec::new());
        }
        s.confirmers.insert(origin.clone());
        s.token = token;
        let timeout = suspicion_timeout_ms(s.min_ms, s.max_ms, s.k, s.confirmations());
        let after_ms = (s.start_ms + timeout).saturating_sub(now);
        let timer = Timer::Suspicion {
            id: id.clone(),
            incarnation: s.incarnation,
            token,
        };
        (true, vec![DetectorOutput::SetTimer { after_ms, timer }])
    }

    /// Current suspicion timeout (ms from start) for `id`, if suspected.
    pub fn suspicion_timeout_of(&self, id: &NodeId) -> Option<u64> {
        self.suspicions
            .get(id)
            .map(|s| suspicion_timeout_ms(s.min_ms, s.max_ms, s.k, s.confirmations()))
    }

    /// `id` refuted (Alive at a higher incarnation): cancel suspicion.
    pub fn alive(&mut self, id: &NodeId, incarnation: u64) {
        if self
            .suspicions
            .get(id)
            .is_some_and(|s| s.incarnation < incarnation)
        {
            self.suspicions.remove(id);
        }
        self.upsert_member(id, incarnation, false);
    }

    /// Suspicion timer fired.
    pub fn on_suspicion_timer(
        &mut self,
        id: &NodeId,
        incarnation: u64,
        token: u64,
    ) -> Vec<DetectorOutput> {
        match self.suspicions.get(id) {
            Some(s) if s.token == token && s.incarnation == incarnation => {
                self.suspicions.remove(id);
                vec![DetectorOutput::ConfirmDead(id.clone(), incarnation)]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
