//! The tasks of the AntiEntropy actor: a round (its exchanges, one peer after the other,
//! and their repairs), the start-up rebuild, and the object side of answering a peer.
//!
//! A task holds no tree: it asks the actor to send requests (`Ask`) and to compare answers
//! (`Feed`, which moves the pure [`Exchange`] to the actor and back), so the trees are only
//! ever touched on the actor.

use super::actor::{hash_entries, AntiEntropy, Ask, Feed, RebuildPage, RoundEnded};
use super::exchange::{DiffKey, Exchange, Step};
use super::pacer::Pacer;
use super::tree::tree_hash;
use super::{AntiEntropyStats, RepairReport};
use crate::coordinator::JoinLocal;
use crate::memtable::{Get, Scan};
use actix::prelude::*;
use futures_util::future::join_all;
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use troupe_protocol::antientropy::{AeMsg, AeReq, AeResp, TreeShape};
use troupe_protocol::object::Object;
use troupe_protocol::swim::NodeId;

/// Keys fetched or read per request, and joins in flight at once (their WAL writes share
/// group commits).
const REPAIR_CHUNK: usize = 256;
/// Bytes of objects per `Push` frame and per `Objects` answer (a single larger object goes
/// alone): the bulk lane also carries membership's state exchanges.
const MAX_OBJECT_BYTES: usize = 1 << 20;
/// Entries per rebuild scan page.
const SCAN_PAGE: usize = 1024;

pub(super) struct RoundCtx {
    pub addr: Addr<AntiEntropy>,
    pub join: Recipient<JoinLocal>,
    pub get: Recipient<Get>,
    pub report: Arc<Mutex<RepairReport>>,
    pub stats: Arc<AntiEntropyStats>,
    pub shape: TreeShape,
    pub max_bytes_per_sec: u64,
}

impl RoundCtx {
    fn update(&self, f: impl FnOnce(&mut RepairReport)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// One request to `peer`, paced; the answer, or why there is none.
    ///
    /// Asked again once when unanswered: a frame written just as a peer's connection died
    /// (the peer restarted) is lost without an error, and every request is idempotent
    /// (questions, reads, joins).
    async fn ask(&self, pacer: &mut Pacer, peer: &NodeId, req: AeReq) -> Result<AeResp, String> {
        let sent = AeMsg::Req {
            id: 0,
            req: req.clone(),
        }
        .encode()
        .len() as u64;
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let (tx, rx) = oneshot::channel();
            self.addr
                .send(Ask {
                    peer: peer.clone(),
                    req: req.clone(),
                    reply: tx,
                })
                .await
                .map_err(|e| format!("anti-entropy actor: {e}"))?;
            match rx.await {
                Ok(answer) => break answer?,
                Err(_) if attempt < 2 => {
                    log::debug!("{peer} did not answer an anti-entropy request; asking again");
                }
                Err(_) => return Err(format!("{peer} did not answer in time ({attempt} tries)")),
            }
        };
        let received = AeMsg::Resp {
            id: 0,
            resp: resp.clone(),
        }
        .encode()
        .len() as u64;
        self.update(|r| r.bytes += sent + received);
        let wait = pacer.book(Instant::now(), sent + received);
        if !wait.is_zero() {
            // Pacing, not synchronisation: the throttle's whole point is to wait.
            tokio::time::sleep(wait).await;
        }
        if let AeResp::Refused { reason } = &resp {
            return Err(format!("{peer} refused: {reason}"));
        }
        Ok(resp)
    }

    /// One exchange with `peer` over `partitions`, repairs included.
    async fn exchange(
        &self,
        pacer: &mut Pacer,
        peer: &NodeId,
        partitions: Vec<u32>,
    ) -> Result<(), String> {
        let mut ex = Box::new(Exchange::new(self.shape, partitions));
        let mut seen = ex.counts;
        loop {
            match ex.next_step() {
                Step::Ask(req) => {
                    let resp = self.ask(pacer, peer, req).await?;
                    let (back, res) = self
                        .addr
                        .send(Feed(ex, resp))
                        .await
                        .map_err(|e| format!("anti-entropy actor: {e}"))?;
                    ex = back;
                    res.map_err(|e| format!("exchange with {peer}: {e}"))?;
                    let c = ex.counts;
                    let d_keys = c.keys_compared - seen.keys_compared;
                    let d_diff = c.keys_differing - seen.keys_differing;
                    let d_parts = c.partitions - seen.partitions;
                    self.stats.keys_compared.fetch_add(d_keys, Relaxed);
                    self.stats.keys_differing.fetch_add(d_diff, Relaxed);
                    self.update(|r| {
                        r.keys_compared += d_keys;
                        r.keys_differing += d_diff;
                        r.partitions_done += d_parts;
                    });
                    seen = c;
                }
                Step::Repair(keys) => {
                    let n = self.repair(pacer, peer, keys).await?;
                    self.stats.keys_repaired.fetch_add(n, Relaxed);
                    self.update(|r| r.keys_repaired += n);
                }
                Step::Done => return Ok(()),
            }
        }
    }

    /// Joins both sides' objects of `keys`: the peer's into ours, then ours (now holding
    /// both) into the peer's, unless the peer already holds exactly that. Returns the keys
    /// repaired: those whose every join worked.
    async fn repair(
        &self,
        pacer: &mut Pacer,
        peer: &NodeId,
        keys: Vec<DiffKey>,
    ) -> Result<u64, String> {
        let remote_hash: HashMap<&[u8], Option<u64>> =
            keys.iter().map(|d| (d.key.as_slice(), d.remote)).collect();
        let mut failed = 0u64;
        let mut push: Vec<(ByteBuf, ByteBuf)> = Vec::new();
        // The peer's objects, joined here.
        let mut want: Vec<Vec<u8>> = keys
            .iter()
            .filter(|d| d.remote.is_some())
            .map(|d| d.key.clone())
            .collect();
        while !want.is_empty() {
            let chunk: Vec<ByteBuf> = want
                .drain(..want.len().min(REPAIR_CHUNK))
                .map(ByteBuf::from)
                .collect();
            let asked = chunk.len();
            let AeResp::Objects { objects } = self
                .ask(
                    pacer,
                    peer,
                    AeReq::Fetch {
                        keys: chunk.clone(),
                    },
                )
                .await?
            else {
                return Err(format!("{peer} answered a fetch with something else"));
            };
            if objects.is_empty() {
                return Err(format!("{peer} answered no object of {asked}"));
            }
            // The rest of the chunk goes back to the front of the queue.
            let answered = objects.len().min(asked);
            want.splice(0..0, chunk[answered..].iter().map(|k| k.to_vec()));
            let joins = objects.into_iter().map(|(k, o)| async move {
                let object = Object::decode(&o?).ok()?;
                self.join_local(k.into_vec(), object).await
            });
            for joined in join_all(joins).await {
                match joined {
                    // The peer holds what we hold now: nothing to send back.
                    Some((k, _, hash)) if remote_hash.get(k.as_slice()) == Some(&hash) => {}
                    Some((k, bytes, _)) => push.push((k, bytes)),
                    None => failed += 1,
                }
            }
        }
        // Ours that the peer lacks entirely.
        let mine: Vec<Vec<u8>> = keys
            .iter()
            .filter(|d| d.remote.is_none() && d.local.is_some())
            .map(|d| d.key.clone())
            .collect();
        for chunk in mine.chunks(REPAIR_CHUNK) {
            let reads = chunk.iter().map(|k| read_bytes(&self.get, k.clone()));
            for (k, v) in chunk.iter().zip(join_all(reads).await) {
                match v {
                    Some(v) => push.push((ByteBuf::from(k.clone()), ByteBuf::from(v))),
                    None => failed += 1,
                }
            }
        }
        for batch in by_bytes(push) {
            let n = batch.len() as u32;
            match self
                .ask(pacer, peer, AeReq::Push { objects: batch })
                .await?
            {
                AeResp::Pushed { joined } => {
                    if joined < n {
                        log::warn!("{peer} joined {joined} of {n} pushed objects");
                    }
                    failed += u64::from(n.saturating_sub(joined));
                }
                _ => return Err(format!("{peer} answered a push with something else")),
            }
        }
        Ok((keys.len() as u64).saturating_sub(failed))
    }

    /// Joins `object` into our copy; the stored result (bytes and tree hash) if the join
    /// worked.
    async fn join_local(
        &self,
        key: Vec<u8>,
        object: Object,
    ) -> Option<(ByteBuf, ByteBuf, Option<u64>)> {
        match self
            .join
            .send(JoinLocal {
                key: key.clone(),
                object,
            })
            .await
        {
            Ok(Ok(stored)) => Some((
                ByteBuf::from(key),
                ByteBuf::from(stored.bytes),
                tree_hash(&stored.object),
            )),
            Ok(Err(e)) => {
                log::warn!("anti-entropy join failed: {}", e.msg);
                None
            }
            Err(e) => {
                log::warn!("anti-entropy join: coordinator gone: {e}");
                None
            }
        }
    }
}

/// Objects cut into frames of at most `MAX_OBJECT_BYTES` (one larger object goes alone).
fn by_bytes(objects: Vec<(ByteBuf, ByteBuf)>) -> Vec<Vec<(ByteBuf, ByteBuf)>> {
    let mut out: Vec<Vec<(ByteBuf, ByteBuf)>> = Vec::new();
    let mut size = 0;
    for (k, v) in objects {
        let n = k.len() + v.len() + 16;
        match out.last_mut() {
            Some(last) if size + n <= MAX_OBJECT_BYTES => last.push((k, v)),
            _ => {
                out.push(vec![(k, v)]);
                size = 0;
            }
        }
        size += n;
    }
    out
}

/// The stored bytes of `key` (`None`: absent, or storage failed: the key stays different
/// and the next round tries again).
async fn read_bytes(get: &Recipient<Get>, key: Vec<u8>) -> Option<Vec<u8>> {
    match get.send(Get { key }).await {
        Ok(Ok(v)) => v.and_then(|v| v.value),
        Ok(Err(e)) => {
            log::warn!("anti-entropy read failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// A round: one exchange per peer, in turn; errors are recorded and the round goes on.
pub(super) async fn run(rc: RoundCtx, plan: Vec<(NodeId, Vec<u32>)>) {
    let mut pacer = Pacer::new(rc.max_bytes_per_sec);
    let started = Instant::now();
    let mut failed = false;
    for (peer, partitions) in plan {
        rc.update(|r| r.current = Some(peer.to_string()));
        rc.stats.exchanges.fetch_add(1, Relaxed);
        if let Err(e) = rc.exchange(&mut pacer, &peer, partitions).await {
            log::warn!("anti-entropy exchange with {peer} ended early: {e}");
            rc.stats.exchanges_failed.fetch_add(1, Relaxed);
            failed = true;
            rc.update(|r| r.errors.push(e));
        }
        rc.update(|r| r.exchanges_done += 1);
    }
    if failed {
        rc.stats.rounds_failed.fetch_add(1, Relaxed);
    }
    {
        let mut r = rc.report.lock().unwrap_or_else(|p| p.into_inner());
        r.running = false;
        r.current = None;
        r.elapsed_ms = started.elapsed().as_millis() as u64;
        log::info!(
            "anti-entropy round {} done in {} ms: {} key(s) compared, {} differing, {} repaired, {} byte(s) exchanged, {} error(s)",
            r.round,
            r.elapsed_ms,
            r.keys_compared,
            r.keys_differing,
            r.keys_repaired,
            r.bytes,
            r.errors.len()
        );
    }
    rc.addr.do_send(RoundEnded);
}

/// The start-up rebuild: every stored key through paced scan pages.
pub(super) async fn rebuild(addr: Addr<AntiEntropy>, scan: Recipient<Scan>, rate: u64) {
    let mut pacer = Pacer::new(rate);
    let mut start: Option<Vec<u8>> = None;
    let mut failures = 0u32;
    loop {
        let page = scan
            .send(Scan {
                start: start.clone(),
                end: None,
                limit: SCAN_PAGE,
            })
            .await;
        let page = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                failures += 1;
                log::warn!("anti-entropy rebuild: scan failed ({e}); retrying");
                // Backoff, bounded: storage may be starting or overloaded.
                tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                continue;
            }
            Err(_) => return, // storage stopped: the node is shutting down
        };
        let bytes: u64 = page
            .entries
            .iter()
            .map(|e| (e.key.len() + e.value.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        let next = page.next;
        let Ok(entries) = tokio::task::spawn_blocking(move || hash_entries(page.entries)).await
        else {
            return;
        };
        let done = next.is_none();
        if addr.send(RebuildPage { entries, done }).await.is_err() {
            return;
        }
        if done {
            return;
        }
        start = next;
        let wait = pacer.book(Instant::now(), bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Answers a peer's `Fetch` (our stored objects) or `Push` (join theirs into ours).
pub(super) async fn serve_objects(
    req: AeReq,
    get: Recipient<Get>,
    join: Recipient<JoinLocal>,
) -> AeResp {
    match req {
        AeReq::Fetch { keys } => {
            let keys: Vec<ByteBuf> = keys.into_iter().take(REPAIR_CHUNK).collect();
            let values = join_all(keys.iter().map(|k| read_bytes(&get, k.to_vec()))).await;
            let mut objects = Vec::new();
            let mut size = 0;
            for (k, v) in keys.into_iter().zip(values) {
                size += k.len() + v.as_ref().map_or(0, Vec::len) + 16;
                if size > MAX_OBJECT_BYTES && !objects.is_empty() {
                    break; // the initiator asks again for the rest
                }
                objects.push((k, v.map(ByteBuf::from)));
            }
            AeResp::Objects { objects }
        }
        AeReq::Push { objects } => {
            let joins = objects.into_iter().map(|(k, o)| {
                let join = join.clone();
                async move {
                    let object = Object::decode(&o).ok()?;
                    join.send(JoinLocal {
                        key: k.into_vec(),
                        object,
                    })
                    .await
                    .ok()?
                    .ok()
                }
            });
            let joined = join_all(joins).await.into_iter().flatten().count();
            AeResp::Pushed {
                joined: joined as u32,
            }
        }
        _ => AeResp::Refused {
            reason: "BUG: a tree request reached the object server".into(),
        },
    }
}
