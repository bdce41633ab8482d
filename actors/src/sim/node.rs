//! `Node`: one simulated SWIM participant — a [`MembershipCore`] and a [`Detector`] joined
//! by a synchronous router.
//!
//! The two halves talk exactly as the Membership and FailureDetector actors do: membership
//! emits [`ToDetector`] inputs, the detector answers with [`DetectorOutput`]s, which go back
//! to membership (sends, verdicts, regossip) while timers stay with the detector. Here the
//! hand-offs are a function call instead of a mailbox, so the simulator tests the code the
//! actors run, only with virtual time.
//!
//! Contract with the host (the simulator): feed inbound messages to `handle_message` and
//! fired timers to `handle_timer`; execute the returned [`Effect`]s; call `drain_events`.

use crate::failure_detector::core::{Detector, DetectorOutput, Timer};
use crate::membership::config::SwimConfig;
use crate::membership::core::{MemberEvent, MemberList};
use crate::membership::driver::{MEffect, MembershipCore, MembershipTimer};
use troupe_protocol::swim::{MemberInfo, NodeId, SwimMsg};

/// A timer of either half.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeTimer {
    Detector(Timer),
    Membership(MembershipTimer),
}

/// Plain-data side effect for the host to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `msg` to `to` (at `addr` when known).
    Send {
        to: NodeId,
        addr: Option<String>,
        msg: SwimMsg,
    },
    /// Call `handle_timer(timer, now)` after `after_ms`.
    SetTimer { after_ms: u64, timer: NodeTimer },
}

/// One SWIM + Lifeguard participant.
#[derive(Debug)]
pub struct Node {
    mem: MembershipCore,
    det: Detector,
}

impl Node {
    /// `self_info.status` is forced to Alive. `seed` drives all randomness.
    pub fn new(self_info: MemberInfo, config: SwimConfig, seed: u64) -> Self {
        let id = self_info.id.clone();
        let mut mem = MembershipCore::new(self_info, config.clone(), seed);
        mem.record_verdicts();
        Node {
            mem,
            det: Detector::new(id, config, seed),
        }
    }

    pub fn id(&self) -> &NodeId {
        self.mem.id()
    }
    pub fn me(&self) -> &MemberInfo {
        self.mem.me()
    }
    /// Every known record, including us and unreaped Dead/Left members.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.mem.list().members().cloned().collect()
    }
    pub fn member(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.mem.member(id)
    }
    pub fn drain_events(&mut self) -> Vec<MemberEvent> {
        self.mem.drain_events()
    }
    /// Protocol counters.
    pub fn stats(&self) -> &crate::membership::driver::SwimStats {
        self.mem.stats()
    }
    /// Our detector's table-changing verdicts since the last call (see `Sim::verdicts`).
    pub fn drain_verdicts(&mut self) -> Vec<(NodeId, troupe_protocol::swim::Status)> {
        self.mem.drain_verdicts()
    }
    /// When we last received anything from `id`.
    pub fn last_heard(&self, id: &NodeId) -> Option<u64> {
        self.mem.last_heard(id)
    }

    /// Current Local Health Multiplier.
    pub fn lhm(&self) -> u32 {
        self.det.lhm()
    }
    pub fn member_list(&self) -> &MemberList {
        self.mem.list()
    }
    pub fn detector(&self) -> &Detector {
        &self.det
    }

    /// Install known Alive members silently (bootstrap).
    pub fn preload(&mut self, members: impl IntoIterator<Item = MemberInfo>) {
        let fx = self.mem.preload(members);
        self.route(fx, 0);
    }

    pub fn join(&mut self, seeds: &[NodeId]) -> Vec<Effect> {
        let fx = self.mem.join(seeds);
        self.route(fx, 0)
    }

    pub fn leave(&mut self, now: u64) -> Vec<Effect> {
        let fx = self.mem.leave();
        self.route(fx, now)
    }

    pub fn handle_message(&mut self, from: &NodeId, msg: SwimMsg, now: u64) -> Vec<Effect> {
        let fx = self.mem.handle_message(from, msg, now);
        self.route(fx, now)
    }

    pub fn handle_timer(&mut self, timer: NodeTimer, now: u64) -> Vec<Effect> {
        match timer {
            NodeTimer::Membership(t) => {
                let fx = self.mem.handle_timer(t, now);
                self.route(fx, now)
            }
            NodeTimer::Detector(t) => {
                let outs = self.det.handle_timer(t, now);
                self.route_detector(outs, now)
            }
        }
    }

    /// Run membership effects to completion: detector inputs are handled at once, and
    /// the detector's outputs fed back, until only sends and timers remain.
    fn route(&mut self, fx: Vec<MEffect>, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut work = fx;
        while !work.is_empty() {
            let mut next = Vec::new();
            for e in work {
                match e {
                    MEffect::Send { to, addr, msg } => out.push(Effect::Send { to, addr, msg }),
                    MEffect::SetTimer { after_ms, timer } => out.push(Effect::SetTimer {
                        after_ms,
                        timer: NodeTimer::Membership(timer),
                    }),
                    MEffect::ToDetector(input) => {
                        for o in self.det.handle(input, now) {
                            self.detector_output(o, now, &mut out, &mut next);
                        }
                    }
                }
            }
            work = next;
        }
        out
    }

    fn route_detector(&mut self, outs: Vec<DetectorOutput>, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut next = Vec::new();
        for o in outs {
            self.detector_output(o, now, &mut out, &mut next);
        }
        let more = self.route(next, now);
        out.extend(more);
        out
    }

    fn detector_output(
        &mut self,
        o: DetectorOutput,
        now: u64,
        out: &mut Vec<Effect>,
        next: &mut Vec<MEffect>,
    ) {
        match o {
            DetectorOutput::SetTimer { after_ms, timer } => out.push(Effect::SetTimer {
                after_ms,
                timer: NodeTimer::Detector(timer),
            }),
            other => next.extend(self.mem.handle_detector(other, now)),
        }
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
