//! The typed inputs the membership side sends the failure detector, and how the
//! [`Detector`] turns each into outputs.
//!
//! Owns: [`ToDetector`] (the contract between the two halves) and
//! [`Detector::handle`] / [`Detector::handle_timer`]. The same enum is the payload of the
//! actix message the Membership actor sends the FailureDetector actor, and of the
//! synchronous router in `sim::node`, so the simulator exercises exactly the code the
//! actors run.
//!
//! Invariants: inputs are handled in the order membership produced them; every output is a
//! send (which membership decorates with gossip), a timer (kept by the detector's host), a
//! verdict or a regossip request — never a direct table change.

use super::core::{Detector, DetectorOutput, Timer};
use troupe_protocol::swim::{IndirectPing, NodeId, Update};

/// What the membership side tells the failure detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToDetector {
    /// The node joined: start probing.
    Start,
    /// The node is leaving: stop probing; outstanding timers become stale.
    Stop,
    /// An ack for probe (or relayed probe) `seq` arrived.
    Ack { seq: u64 },
    /// A relay could not reach our probe target either.
    Nack { seq: u64 },
    /// Someone asks us to probe `target` for them.
    IndirectPing(IndirectPing),
    /// `id` is (again) Alive at `incarnation`: probe it, cancel older suspicion.
    Alive { id: NodeId, incarnation: u64 },
    /// `update.member` is Suspect, asserted by `update.origin`, in a cluster of `live`
    /// members. `known` is true when the table already held this exact Suspect record (the
    /// origin may be a new independent confirmation, which is then re-gossiped).
    Suspected {
        update: Update,
        live: usize,
        known: bool,
    },
    /// `id` is Dead, Left or reaped: stop probing it.
    Remove { id: NodeId },
    /// Many new Alive members at once (bootstrap).
    AddBulk(Vec<(NodeId, u64)>),
    /// We refuted a suspicion about ourselves: Lifeguard says we were the slow one.
    Refuted,
}

impl Detector {
    /// Apply one input from the membership side.
    pub fn handle(&mut self, input: ToDetector, now: u64) -> Vec<DetectorOutput> {
        match input {
            ToDetector::Start => self.start(now),
            ToDetector::Stop => {
                self.stop();
                Vec::new()
            }
            ToDetector::Ack { seq } => self.on_ack(seq),
            ToDetector::Nack { seq } => {
                self.on_nack(seq);
                Vec::new()
            }
            ToDetector::IndirectPing(ip) => self.on_indirect_ping(&ip),
            ToDetector::Alive { id, incarnation } => {
                self.alive(&id, incarnation);
                Vec::new()
            }
            ToDetector::Suspected {
                update,
                live,
                known,
            } => {
                let (id, inc) = (&update.member.id, update.member.incarnation);
                if !known {
                    self.upsert_member(id, inc, true);
                }
                let (new, mut outs) = self.suspect(id, inc, &update.origin, live, now);
                if new && known {
                    outs.push(DetectorOutput::Regossip(update));
                }
                outs
            }
            ToDetector::Remove { id } => {
                self.remove_member(&id);
                Vec::new()
            }
            ToDetector::AddBulk(members) => {
                self.add_members_bulk(members);
                Vec::new()
            }
            ToDetector::Refuted => {
                self.note_refuted();
                Vec::new()
            }
        }
    }

    /// Apply one fired timer (stale ones produce nothing). `now` is when it runs, which on
    /// a starved host may be well past when it was due.
    pub fn handle_timer(&mut self, timer: Timer, now: u64) -> Vec<DetectorOutput> {
        match timer {
            Timer::ProbeTick { gen } => self.on_tick(gen, now),
            Timer::ProbeTimeout { seq } => self.on_probe_timeout(seq),
            Timer::RelayTimeout { seq } => self.on_relay_timeout(seq),
            Timer::Suspicion {
                id,
                incarnation,
                token,
            } => self.on_suspicion_timer(&id, incarnation, token),
        }
    }
}
