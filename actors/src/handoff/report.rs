//! `admin transfers`: what this node is fetching and what the ring waits for.

use super::fetch::lock;
use super::*;

/// `admin transfers`.
#[derive(Message)]
#[rtype(result = "TransfersReport")]
pub struct TransfersStatus;

/// One incoming stream, as `admin transfers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub source: String,
    pub target: String,
    pub partitions: Vec<u32>,
    pub state: String,
    pub keys: u64,
    pub bytes: u64,
    /// Keys the source holds for these partitions (its estimate), when known.
    pub estimate_keys: Option<u64>,
    pub bytes_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub idle_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransfersReport {
    pub node: String,
    pub stable_version: u64,
    pub current_version: u64,
    pub in_transition: bool,
    /// Why fetching has not started (waiting for acks, or the ack delay).
    pub waiting: Option<String>,
    /// Members of the current layout that have not synced it.
    pub unsynced: Vec<String>,
    pub leaving: bool,
    /// Partitions this node still has to fetch, and has fetched, for the current layout.
    pub partitions_pending: Vec<u32>,
    pub partitions_done: Vec<u32>,
    pub streams: Vec<StreamRow>,
    /// Partitions waiting to be deleted here (no longer owned).
    pub to_drop: Vec<u32>,
}

impl Handoff {
    pub(super) fn report(&self) -> TransfersReport {
        let cur = self.book.current();
        let needs = self.book.needs();
        let waiting = if self.book.transition().is_none() || self.book.synced_current() {
            None
        } else if !self.book.may_proceed() {
            Some("a fresh node: waiting for the cluster's transfer state".into())
        } else if !self.book.acked_current() {
            Some("acknowledging the new layout (every write started before it must end)".into())
        } else if !self.book.all_acked() {
            let missing: Vec<String> = self.book.unacked().into_iter().map(|m| m.0).collect();
            Some(format!(
                "waiting for {} to acknowledge the new layout (a member that is down holds the transition until it is back or removed)",
                missing.join(", ")
            ))
        } else {
            None
        };
        let streams = self
            .streams
            .iter()
            .map(|(src, s)| {
                let p = lock(&s.progress);
                let secs = s.started.elapsed().as_secs_f64().max(0.001);
                let rate = (p.bytes as f64 / secs) as u64;
                let key_rate = p.keys as f64 / secs;
                let eta = p
                    .estimate
                    .filter(|_| key_rate > 0.0)
                    .map(|e| (e.saturating_sub(p.keys) as f64 / key_rate) as u64);
                StreamRow {
                    source: src.0.clone(),
                    target: self.cfg.me.0.clone(),
                    partitions: s.partitions.clone(),
                    state: if s.resumed { "resumed" } else { "running" }.into(),
                    keys: p.keys,
                    bytes: p.bytes,
                    estimate_keys: p.estimate,
                    bytes_per_sec: rate,
                    eta_secs: eta,
                    idle_ms: p.last_progress.elapsed().as_millis() as u64,
                }
            })
            .collect();
        TransfersReport {
            node: self.cfg.me.0.clone(),
            stable_version: self.book.stable().version,
            current_version: cur.version,
            in_transition: self.book.transition().is_some(),
            waiting,
            unsynced: self.book.unsynced().into_iter().map(|m| m.0).collect(),
            leaving: self.leaving,
            partitions_pending: needs
                .iter()
                .map(|n| n.partition)
                .filter(|p| !self.done.contains(p))
                .collect(),
            partitions_done: self.done.iter().copied().collect(),
            streams,
            to_drop: self.to_drop.clone(),
        }
    }
}

impl Handler<TransfersStatus> for Handoff {
    type Result = MessageResult<TransfersStatus>;

    fn handle(&mut self, _: TransfersStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.report())
    }
}
