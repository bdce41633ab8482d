//! Membership: who is in the cluster.
//!
//! - [`core`]: the pure member table (merge rules, digest, reaping, events).
//! - [`broadcast`]: the gossip retransmit queue and its byte estimates.
//! - [`driver`]: the pure membership half of a SWIM node ([`driver::MembershipCore`]).
//! - [`config`]: SWIM / Lifeguard tuning ([`config::SwimConfig`]).
//! - [`actor`]: the Membership actor that drives the core with real time and sockets, and
//!   [`start`] that wires it to the FailureDetector actor.
pub mod actor;
pub mod broadcast;
pub mod config;
pub mod core;
pub mod driver;

use crate::failure_detector::actor::FailureDetectorActor;
use crate::failure_detector::core::Detector;
use crate::peer::PeerTransport;
use crate::stats::Registry;
use actix::prelude::*;
use actor::MembershipActor;
use config::SwimConfig;
use driver::MembershipCore;
use std::time::Instant;
use troupe_protocol::swim::MemberInfo;

/// Starts the Membership and FailureDetector actors (each knows the other's address) on the
/// current arbiter and registers both in `registry`. Send [`actor::Join`] to begin.
pub fn start(
    me: MemberInfo,
    cfg: SwimConfig,
    seeds: &[String],
    transport: PeerTransport,
    registry: &Registry,
) -> (Addr<MembershipActor>, Addr<FailureDetectorActor>) {
    let epoch = Instant::now();
    let seed = me.run_id
        ^ u64::from_le_bytes(
            blake3::hash(me.id.0.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
    let (mem_counters, det_counters) = (
        registry.actor("membership"),
        registry.actor("failure_detector"),
    );
    let det_ctx = Context::<FailureDetectorActor>::new();
    let det_addr = det_ctx.address();
    let detector = Detector::new(me.id.clone(), cfg.clone(), seed);
    let core = MembershipCore::new(me, cfg, seed);
    let mem = MembershipActor::new(
        core,
        transport,
        det_addr.clone(),
        seeds,
        epoch,
        mem_counters.clone(),
        det_counters.clone(),
    )
    .start();
    det_ctx.run(FailureDetectorActor::new(
        detector,
        mem.clone(),
        epoch,
        det_counters,
        mem_counters,
    ));
    (mem, det_addr)
}
