//! The two ends of a fetch stream, as tasks: the holder's side (answer one `Fetch` from a
//! scan of local data) and the new owner's side (ask chunk after chunk, join every object
//! durably, move the cursor).
//!
//! A stream asks through the Handoff actor (`Ask`: it owns ids, deadlines and the
//! transport) and reports through shared progress and `Moved` messages; it never touches
//! the book. Every step is idempotent (a fetch is a read; a join of an object already
//! held changes nothing), so a stream that is cut, timed out or restarted simply asks
//! again from its cursor.

use super::streams::{Ask, Moved, StreamProgress};
use super::Handoff;
use crate::antientropy::pacer::Pacer;
use crate::coordinator::JoinLocal;
use crate::memtable::Scan;
use crate::ring::partition_for;
use actix::prelude::*;
use futures_util::future::join_all;
use serde_bytes::ByteBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;
use troupe_protocol::object::Object;
use troupe_protocol::swim::NodeId;
use troupe_protocol::transfer::{TransferMsg, MAX_CHUNK_BYTES};

/// Entries per scan page on the holder.
const SCAN_PAGE: usize = 512;
/// Entries a holder examines for one fetch at most (a chunk may come back empty, with a
/// cursor further on: the work per request stays bounded when few keys match).
const MAX_EXAMINED: usize = 32 * 1024;
/// Joins in flight at once on the new owner (their WAL writes share group commits).
const JOIN_CHUNK: usize = 256;

/// The holder's answer to one fetch: objects of `partitions` after `after`, in key order.
pub(super) async fn serve(
    scan: Recipient<Scan>,
    bits: u32,
    partitions: Vec<u32>,
    after: Option<Vec<u8>>,
    max_bytes: u32,
) -> Result<(Vec<(ByteBuf, ByteBuf)>, Option<ByteBuf>), String> {
    let max_bytes = max_bytes.clamp(1, MAX_CHUNK_BYTES) as usize;
    let mut start = after.map(|mut k| {
        k.push(0); // the smallest key after `after`
        k
    });
    let wanted = PartitionSet::new(&partitions, bits);
    let (mut out, mut bytes, mut examined) = (Vec::new(), 0usize, 0usize);
    loop {
        let page = scan
            .send(Scan {
                start: start.clone(),
                end: None,
                limit: SCAN_PAGE,
            })
            .await
            .map_err(|e| format!("storage: {e}"))?
            .map_err(|e| format!("storage: {e}"))?;
        for e in page.entries {
            examined += 1;
            let full = |bytes: usize| bytes >= max_bytes || examined >= MAX_EXAMINED;
            match e.value {
                Some(v) if wanted.contains(&e.key) => {
                    bytes += e.key.len() + v.len();
                    out.push((ByteBuf::from(e.key), ByteBuf::from(v)));
                    if full(bytes) {
                        let next = out.last().map(|(k, _)| k.clone());
                        return Ok((out, next));
                    }
                }
                _ if full(bytes) => return Ok((out, Some(ByteBuf::from(e.key)))),
                _ => {}
            }
        }
        match page.next {
            Some(n) => start = Some(n),
            None => return Ok((out, None)),
        }
    }
}

/// What a stream needs besides its cursor.
pub(super) struct StreamCtx {
    pub actor: Addr<Handoff>,
    pub join: Recipient<JoinLocal>,
    pub source: NodeId,
    pub partitions: Vec<u32>,
    pub chunk_bytes: u32,
    pub progress: Arc<Mutex<StreamProgress>>,
    pub max_bytes_per_sec: u64,
}

/// Runs a stream to its end (`Ok`) or its first failure. The actor retries or reassigns.
pub(super) async fn run(ctx: StreamCtx, mut after: Option<Vec<u8>>) -> Result<(), String> {
    let mut pacer = Pacer::new(ctx.max_bytes_per_sec);
    let mut unanswered = 0;
    loop {
        let (tx, rx) = oneshot::channel();
        let fetch = TransferMsg::Fetch {
            id: 0,
            partitions: ctx.partitions.clone(),
            after: after.clone().map(ByteBuf::from),
            max_bytes: ctx.chunk_bytes,
        };
        ctx.actor
            .send(Ask {
                to: ctx.source.clone(),
                msg: fetch,
                reply: tx,
            })
            .await
            .map_err(|e| format!("handoff actor: {e}"))?;
        let (objects, next, estimate) = match rx.await {
            Ok(r) => r?,
            // Fetches are reads: asking again is safe. Three misses in a row end the
            // stream (the actor then tries another holder).
            Err(_) if unanswered < 2 => {
                unanswered += 1;
                continue;
            }
            Err(_) => return Err(format!("{} did not answer in time (3 tries)", ctx.source)),
        };
        unanswered = 0;
        if let Some(est) = estimate {
            lock(&ctx.progress).estimate = Some(est);
        }
        let mut bytes = 0u64;
        for group in objects.chunks(JOIN_CHUNK) {
            let joins = group.iter().map(|(k, v)| {
                bytes += (k.len() + v.len()) as u64;
                let join = ctx.join.clone();
                let key = k.to_vec();
                let decoded = Object::decode(v);
                async move {
                    let object = decoded.map_err(|e| format!("undecodable object: {e}"))?;
                    match join.send(JoinLocal { key, object }).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(format!("local join: {}", e.msg)),
                        Err(e) => Err(format!("coordinator: {e}")),
                    }
                }
            });
            for r in join_all(joins).await {
                r?;
            }
        }
        // Every object up to `next` is durable here: the cursor may move.
        {
            let mut p = lock(&ctx.progress);
            p.keys += objects.len() as u64;
            p.bytes += bytes;
            p.last_progress = Instant::now();
        }
        after = next.map(|b| b.into_vec());
        ctx.actor.do_send(Moved {
            source: ctx.source.clone(),
            after: after.clone(),
        });
        if after.is_none() {
            return Ok(());
        }
        let wait = pacer.book(Instant::now(), bytes);
        if !wait.is_zero() {
            // Pacing, not synchronisation: the throttle's whole point is to wait.
            tokio::time::sleep(wait).await;
        }
    }
}

/// Which partitions a scan keeps: one bit per partition, so a key costs one hash and one
/// lookup however many partitions a stream carries.
pub(super) struct PartitionSet {
    bits: u32,
    member: Vec<bool>,
}

impl PartitionSet {
    pub(super) fn new(partitions: &[u32], bits: u32) -> PartitionSet {
        let mut member = vec![false; 1usize << bits];
        for p in partitions {
            if let Some(m) = member.get_mut(*p as usize) {
                *m = true;
            }
        }
        PartitionSet { bits, member }
    }

    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.member[partition_for(key, self.bits) as usize]
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_set_keeps_exactly_the_keys_of_its_partitions() {
        let bits = 4;
        let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("k{i}").into_bytes()).collect();
        let set = PartitionSet::new(&[1, 7, 99], bits); // 99 is out of range: ignored
        for k in &keys {
            let p = partition_for(k, bits);
            assert_eq!(set.contains(k), p == 1 || p == 7, "{k:?} in {p}");
        }
    }
}
