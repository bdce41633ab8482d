//! Measured scenarios shared by the simulation tests and the report example.
//!
//! Owns: the experiment recipes (join spread, crash detection, false
//! positives, pause tolerance) and their result structs. Invariants: every
//! scenario is a pure function of its arguments (seeded), warms the cluster
//! up for `WARMUP_PERIODS` before measuring, and reports times in protocol
//! periods of `probe_interval_ms`.

use super::{Sim, SimConfig};
use crate::membership::config::SwimConfig;
use crate::membership::core::MemberEvent;
use std::collections::BTreeSet;
use troupe_protocol::swim::Status;

/// Periods run before any measurement starts.
pub const WARMUP_PERIODS: u64 = 5;
/// Polling granularity for "everyone sees X" checks.
const POLL_MS: u64 = 50;

fn sim_cfg(loss: f64, seed: u64, swim: SwimConfig, count_bytes: bool) -> SimConfig {
    SimConfig {
        seed,
        loss,
        swim,
        count_bytes,
        ..SimConfig::default()
    }
}

fn warm(n: usize, cfg: SimConfig) -> Sim {
    let period = cfg.swim.probe_interval_ms;
    let mut sim = Sim::bootstrapped(cfg, n);
    sim.keep_log = false;
    sim.run_until(WARMUP_PERIODS * period);
    sim.keep_log = true;
    sim.log.clear();
    sim.seen.clear();
    sim.verdicts.clear();
    sim.traffic = Default::default();
    sim
}

/// Poll until `done(sim)` or `limit_ms` elapses; returns elapsed ms.
fn wait(sim: &mut Sim, limit_ms: u64, mut done: impl FnMut(&Sim) -> bool) -> Option<u64> {
    let start = sim.now;
    while sim.now - start <= limit_ms {
        if done(sim) {
            return Some(sim.now - start);
        }
        sim.run_for(POLL_MS);
    }
    None
}

/// Periods until every pre-existing node sees a newly joined node Alive.
pub fn join_spread(n: usize, loss: f64, seed: u64, max_periods: u64) -> Option<f64> {
    let cfg = sim_cfg(loss, seed, SwimConfig::default(), false);
    let period = cfg.swim.probe_interval_ms as f64;
    let mut sim = warm(n, cfg);
    let joiner = sim.join_new(&[0]);
    let others: Vec<usize> = (0..n).collect();
    wait(&mut sim, max_periods * period as u64, |s| {
        others.iter().all(|&i| s.sees(i, joiner, Status::Alive))
    })
    .map(|ms| ms as f64 / period)
}

/// Crash detection timings, in periods after the crash.
#[derive(Clone, Debug)]
pub struct CrashResult {
    pub first_suspect: Option<f64>,
    pub all_dead: Option<f64>,
    /// Lifeguard (min, max) suspicion timeout for this N, in periods.
    pub bounds: (f64, f64),
}

/// Crash node `n/2` and time first suspicion and full agreement on Dead.
pub fn crash_detection(n: usize, loss: f64, seed: u64, max_periods: u64) -> CrashResult {
    let cfg = sim_cfg(loss, seed, SwimConfig::default(), false);
    let period = cfg.swim.probe_interval_ms as f64;
    let (lo, hi) = cfg.swim.suspicion_bounds_ms(n);
    let mut sim = warm(n, cfg);
    sim.keep_log = false;
    let victim = n / 2;
    let vid = sim.id_of(victim);
    let t0 = sim.now;
    sim.crash(victim);
    let others = sim.healthy(&[victim]);
    let all_dead = wait(&mut sim, max_periods * period as u64, |s| {
        others.iter().all(|&i| {
            s.node(i)
                .member(&vid)
                .is_none_or(|m| matches!(m.status, Status::Dead | Status::Left))
        })
    });
    let first_suspect = sim
        .seen
        .iter()
        .filter(|((id, _), _)| *id == vid)
        .filter_map(|(_, s)| s.first_suspect.map(|(at, _)| at - t0))
        .min();
    CrashResult {
        first_suspect: first_suspect.map(|ms| ms as f64 / period),
        all_dead: all_dead.map(|ms| ms as f64 / period),
        bounds: (lo as f64 / period, hi as f64 / period),
    }
}

/// Outcome of a fault-free run under message loss.
#[derive(Clone, Debug, Default)]
pub struct FpResult {
    /// Distinct (member, incarnation) healthy members declared Dead.
    pub dead_declared: usize,
    /// Distinct (member, incarnation) healthy members suspected.
    pub suspected: usize,
    pub msgs_per_member_period: f64,
    pub bytes_per_member_period: f64,
    /// Largest LHM seen on any node at the end of the run.
    pub max_lhm_at_end: u32,
    /// The busiest single member's sends per period.
    pub max_member_msgs_per_period: f64,
    pub max_member_bytes_per_period: f64,
    /// Largest single message other than a full-state exchange.
    pub max_msg_bytes: u64,
    /// Share of `bytes_per_member_period` spent on full-state exchanges.
    pub state_bytes_per_member_period: f64,
    /// Each false death: (member, incarnation, ms after warm-up of the first Dead event,
    /// observers that saw it Dead, that member's detector-raised suspicions and their
    /// times), for tracing.
    pub deaths: Vec<String>,
}

/// Run `periods` periods with loss and no faults; count false positives.
pub fn false_positives(
    n: usize,
    loss: f64,
    periods: u64,
    seed: u64,
    swim: SwimConfig,
    count_bytes: bool,
) -> FpResult {
    let cfg = sim_cfg(loss, seed, swim, count_bytes);
    let period = cfg.swim.probe_interval_ms;
    let mut sim = warm(n, cfg);
    sim.keep_log = false;
    sim.run_for(periods * period);
    let t0 = WARMUP_PERIODS * period;
    let mut deaths = Vec::new();
    for ((id, inc), seen) in &sim.seen {
        let Some((at, observer)) = seen.first_dead else {
            continue;
        };
        let verdicts: Vec<String> = sim
            .verdicts
            .iter()
            .filter(|v| v.subject == *id && v.at + 60_000 >= at)
            .map(|v| format!("{:?}@{}by{}", v.status, v.at - t0, v.observer))
            .collect();
        deaths.push(format!(
            "{} inc {inc}: first suspect {:?}, first dead at {} ms by {observer}, seen dead by {}; detector verdicts (last 60 s) {verdicts:?}; its incarnation now {}",
            id.0,
            seen.first_suspect.map(|(t, o)| (t - t0, o)),
            at - t0,
            seen.dead_by,
            sim.slots_me(id).map_or(0, |x| x.incarnation),
        ));
    }
    let dead_declared = deaths.len();
    let suspected = sim
        .seen
        .values()
        .filter(|s| s.first_suspect.is_some())
        .count();
    let denom = (n as u64 * periods) as f64;
    let t = &sim.traffic;
    let busiest = |f: fn(&(u64, u64)) -> u64| {
        t.per_node.iter().map(f).max().unwrap_or(0) as f64 / periods as f64
    };
    FpResult {
        dead_declared,
        suspected,
        msgs_per_member_period: t.messages as f64 / denom,
        bytes_per_member_period: t.bytes as f64 / denom,
        max_lhm_at_end: (0..n).map(|i| sim.node(i).lhm()).max().unwrap_or(0),
        max_member_msgs_per_period: busiest(|x| x.0),
        max_member_bytes_per_period: busiest(|x| x.1),
        max_msg_bytes: t.max_gossip_msg_bytes,
        state_bytes_per_member_period: t.bytes_by_kind.get("state_exchange").copied().unwrap_or(0)
            as f64
            / denom,
        deaths,
    }
}

/// Pause node `n/3` for `pause_ms`, then run `after_periods` more periods.
/// Returns how many observers ever marked it Dead and whether everyone sees
/// it Alive at the end.
pub fn pause_outcome(
    n: usize,
    pause_ms: u64,
    loss: f64,
    seed: u64,
    after_periods: u64,
) -> (usize, bool) {
    let cfg = sim_cfg(loss, seed, SwimConfig::default(), false);
    let period = cfg.swim.probe_interval_ms;
    let mut sim = warm(n, cfg);
    let victim = n / 3;
    let vid = sim.id_of(victim);
    sim.pause(victim, pause_ms);
    sim.run_for(pause_ms + after_periods * period);
    let downs = sim
        .log
        .iter()
        .filter(|o| matches!(&o.event, MemberEvent::MemberDown(m) if m.id == vid))
        .count();
    let all_alive = sim
        .healthy(&[victim])
        .iter()
        .all(|&i| sim.sees(i, victim, Status::Alive));
    (downs, all_alive)
}

/// False accusations around one slow member (Lifeguard's motivating case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlowResult {
    /// Suspicions the slow member's detector raised about healthy members.
    pub suspicions_by_slow: u64,
    /// Healthy members the slow member declared dead.
    pub deaths_by_slow: u64,
    /// Suspicions the healthy members' detectors raised about the slow member.
    pub suspicions_about_slow: u64,
    /// Times a healthy member declared the slow member dead.
    pub deaths_about_slow: u64,
    /// Healthy members that saw another healthy member declared dead.
    pub other_deaths: usize,
    /// The slow member's LHM at the end.
    pub slow_lhm_end: u32,
}

impl SlowResult {
    /// Every false accusation (suspicion or death) made by or about the slow member.
    pub fn accusations(&self) -> u64 {
        self.suspicions_by_slow
            + self.deaths_by_slow
            + self.suspicions_about_slow
            + self.deaths_about_slow
    }
}

/// Make node `n/4` slow (every message and timer handled `delay` ms late) for `periods`.
pub fn slow_member(
    n: usize,
    loss: f64,
    periods: u64,
    seed: u64,
    swim: SwimConfig,
    delay: (u64, u64),
) -> SlowResult {
    let cfg = sim_cfg(loss, seed, swim, false);
    let period = cfg.swim.probe_interval_ms;
    let mut sim = warm(n, cfg);
    let slow = n / 4;
    let sid = sim.id_of(slow);
    let before: Vec<_> = (0..n).map(|i| sim.node(i).stats().clone()).collect();
    sim.set_slow(slow, Some(delay));
    sim.run_for(periods * period);
    let mut r = SlowResult {
        slow_lhm_end: sim.node(slow).lhm(),
        ..SlowResult::default()
    };
    let (b, a) = (&before[slow], sim.node(slow).stats());
    r.suspicions_by_slow = a.suspicions_raised - b.suspicions_raised;
    r.deaths_by_slow = a.suspicions_confirmed - b.suspicions_confirmed;
    for v in sim.verdicts.iter().filter(|v| v.subject == sid) {
        match v.status {
            Status::Suspect => r.suspicions_about_slow += 1,
            _ => r.deaths_about_slow += 1,
        }
    }
    let mut other_dead = BTreeSet::new();
    for o in &sim.log {
        match &o.event {
            MemberEvent::MemberDown(m) if m.id != sid && o.observer != slow => {
                other_dead.insert((m.id.clone(), m.incarnation));
            }
            _ => {}
        }
    }
    r.other_deaths = other_dead.len();
    r
}
