//! The FailureDetector actor: a thin shell around the pure [`Detector`].
//!
//! Owns: the `Detector` (probe schedule, relays, suspicion timers, local health).
//! Receives: [`DetectorInputs`] from the Membership actor (inbound Ack/Nack/IndirectPing and
//! member changes, see [`ToDetector`]) and its own timers (`run_later`, each carrying the
//! core's [`Timer`] with its token and incarnation; stale ones are dropped by the core).
//! Emits: [`DetectorOutputs`] to the Membership actor — probes to send (Membership adds the
//! piggybacked gossip and puts them on the wire), `Suspect` / `ConfirmDead` verdicts and
//! regossip requests.
//!
//! Invariant: messages to Membership use `try_send` on a bounded mailbox; a full mailbox is
//! counted as an error and logged, never queued without bound. Time is a monotonic clock in
//! ms since the shared `epoch`.

use super::core::{Detector, DetectorOutput, Timer};
use super::inputs::ToDetector;
use crate::membership::actor::MembershipActor;
use crate::stats::ActorCounters;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Mailbox capacity of both membership actors.
pub const MAILBOX: usize = 4096;

/// Inputs from the Membership actor, in the order they were produced.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DetectorInputs(pub Vec<ToDetector>);

/// Outputs for the Membership actor (never `SetTimer`: timers stay here).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DetectorOutputs(pub Vec<DetectorOutput>);

pub struct FailureDetectorActor {
    det: Detector,
    membership: Addr<MembershipActor>,
    epoch: Instant,
    counters: Arc<ActorCounters>,
    membership_counters: Arc<ActorCounters>,
    /// When we last logged that our own ticks run late (at most once a minute).
    late_logged: Option<Instant>,
}

impl FailureDetectorActor {
    pub fn new(
        det: Detector,
        membership: Addr<MembershipActor>,
        epoch: Instant,
        counters: Arc<ActorCounters>,
        membership_counters: Arc<ActorCounters>,
    ) -> Self {
        FailureDetectorActor {
            det,
            membership,
            epoch,
            counters,
            membership_counters,
            late_logged: None,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&mut self, outs: Vec<DetectorOutput>, ctx: &mut Context<Self>) {
        let mut forward = Vec::new();
        for o in outs {
            match o {
                DetectorOutput::SetTimer { after_ms, timer } => {
                    ctx.run_later(Duration::from_millis(after_ms), move |act, ctx| {
                        act.fire(timer, ctx)
                    });
                }
                DetectorOutput::Inconclusive { target, late_ms } => {
                    if self
                        .late_logged
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        self.late_logged = Some(Instant::now());
                        log::warn!(
                            "failure detector: this node's probe tick ran {late_ms} ms late, so \
                             the unanswered probe of {target} is retried instead of suspected; \
                             a starved CPU or a paused process makes every member look slow \
                             (troupe_swim_probes_late_total counts these)"
                        );
                    }
                    forward.push(DetectorOutput::Inconclusive { target, late_ms });
                }
                other => forward.push(other),
            }
        }
        if forward.is_empty() {
            return;
        }
        self.membership_counters.sent();
        if let Err(e) = self.membership.try_send(DetectorOutputs(forward)) {
            self.counters.error();
            log::warn!("failure detector: membership mailbox refused outputs: {e}");
        }
    }

    fn fire(&mut self, timer: Timer, ctx: &mut Context<Self>) {
        let now = self.now();
        let outs = self.det.handle_timer(timer, now);
        self.emit(outs, ctx);
    }
}

impl Actor for FailureDetectorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.counters.started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.counters.stopped();
    }
}

impl Handler<DetectorInputs> for FailureDetectorActor {
    type Result = ();

    fn handle(&mut self, DetectorInputs(inputs): DetectorInputs, ctx: &mut Context<Self>) {
        self.counters.handled();
        let now = self.now();
        let mut outs = Vec::new();
        for input in inputs {
            outs.extend(self.det.handle(input, now));
        }
        self.emit(outs, ctx);
    }
}

/// The current Local Health Multiplier (for `members` and metrics).
#[derive(Message)]
#[rtype(result = "u32")]
pub struct GetHealth;

impl Handler<GetHealth> for FailureDetectorActor {
    type Result = u32;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> u32 {
        self.counters.received();
        self.det.lhm()
    }
}
