//! Key listing (`keys`): live keys in byte order across the ring, from a covering set of
//! replicas.
//!
//! 1. The plan: for every partition, its first `quorum` primaries that are up (fewer if
//!    fewer are up; none up: `unavailable`). Each node in the plan lists its own keys of the
//!    partitions it was given.
//! 2. A replica scans its storage from the cursor (`after`, exclusive) within the prefix,
//!    keeps the keys of its partitions, and answers at most `limit` entries, each with
//!    whether its object holds a live value and its clock, delete markers included; and
//!    `last`, the last key it examined (every key of its partitions up to `last` is in its
//!    answer; none: it reached the end). A scan examines at most [`SCAN_BUDGET`] stored
//!    keys per request, so a prefix of mostly other partitions' keys cannot hold a replica.
//! 3. The coordinator keeps the keys up to the smallest `last` (beyond it some replica may
//!    not have looked), and per key takes the answer whose clock descends the others' (a
//!    replica that missed a delete or a write is overruled by one that has it); with
//!    concurrent clocks the key is live if any answer is. It returns the first `limit`
//!    live keys and a cursor when more may follow.
//!
//! Invariants: a page never returns a key twice or out of order, and pages that follow
//! cursors cover the key space once; every reply is bounded by `limit` keys and every
//! replica answer by `limit` entries. Listing is as fresh as its quorum: a key written at
//! `w=one` to a replica outside the plan appears once read repair or anti-entropy spreads
//! it.

use super::requests::Request;
use super::*;
use crate::memtable::Scan;
use crate::ring::PartitionTable;
use std::collections::{BTreeMap, BTreeSet};
use troupe_protocol::data::{DataReq, KeyEntry};
use troupe_protocol::object::{Object, VersionVector};

/// Stored keys one replica examines for one `keys` request at most.
pub const SCAN_BUDGET: usize = 50_000;
/// Keys per storage scan page.
const PAGE: usize = 1024;

/// Node -> the partitions it lists.
type Plan = BTreeMap<NodeId, BTreeSet<u32>>;

/// One replica's answer: entries and the last key it examined (`None`: the end).
pub(super) type Page = (Vec<KeyEntry>, Option<Vec<u8>>);

/// `keys [prefix] [limit] [after]`.
#[derive(Message)]
#[rtype(result = "Result<KeysReply, ClientError>")]
pub struct ClientKeys {
    pub prefix: Option<Vec<u8>>,
    pub limit: usize,
    pub after: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysReply {
    pub keys: Vec<Vec<u8>>,
    /// Where to continue when more may follow.
    pub cursor: Option<Vec<u8>>,
}

pub(crate) struct KeysState {
    pub(super) reply: Option<oneshot::Sender<Result<KeysReply, ClientError>>>,
    pub(super) waiting: BTreeSet<NodeId>,
    pub(super) answers: Vec<Page>,
    pub(super) failed: Vec<String>,
    pub(super) limit: usize,
    pub(super) max_bytes: usize,
    pub(super) rpcs: Vec<u64>,
}

/// One replica's listing (step 2), read through `scan`.
pub(super) async fn scan_keys(
    scan: Recipient<Scan>,
    table: Arc<PartitionTable>,
    partitions: BTreeSet<u32>,
    prefix: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
    limit: usize,
    max_bytes: usize,
) -> Result<Page, ClientError> {
    let prefix = prefix.unwrap_or_default();
    // The smallest key after `after`: `after` with a zero byte appended.
    let mut start = match after {
        Some(mut a) if a.as_slice() >= prefix.as_slice() => {
            a.push(0);
            a
        }
        _ => prefix.clone(),
    };
    let end = prefix_end(&prefix);
    let mut entries = Vec::new();
    let mut examined = 0usize;
    let mut bytes = 0usize;
    loop {
        let page = scan
            .send(Scan {
                start: Some(start.clone()),
                end: end.clone(),
                limit: PAGE,
            })
            .await
            .map_err(|e| {
                ClientError::new(
                    ErrorCode::Internal,
                    format!("storage did not answer the scan: {e}"),
                )
            })?
            .map_err(|e| ClientError::new(ErrorCode::Internal, e.to_string()))?;
        for e in &page.entries {
            examined += 1;
            let Some(value) = &e.value else { continue };
            if !partitions.contains(&table.partition_of(&e.key)) {
                continue;
            }
            // An undecodable value is not a replicated object: not a listed key.
            let Ok(o) = Object::decode(value) else {
                continue;
            };
            let entry = KeyEntry {
                key: e.key.clone(),
                live: is_live(&o),
                clock: o.encoded_context(),
            };
            bytes += entry.key.len() + entry.clock.len() + 16;
            entries.push(entry);
            // Bounded in count and in bytes (an answer must fit in one peer frame).
            if entries.len() >= limit || bytes >= max_bytes {
                return Ok((entries, Some(e.key.clone())));
            }
        }
        match page.next {
            None => return Ok((entries, None)),
            Some(next) if examined >= SCAN_BUDGET => {
                // Everything before `next` was examined.
                let last = page.entries.last().map(|e| e.key.clone()).unwrap_or(next);
                return Ok((entries, Some(last)));
            }
            Some(next) => start = next,
        }
    }
}

/// Whether a listing shows the key: a plain value, or a typed state that reads as something
/// (a set with members, a counter other than 0, a register). A deleted counter or set keeps
/// its state (its replicas' counters must not be reused) but reads as absent, so it is not
/// listed.
fn is_live(o: &Object) -> bool {
    use troupe_protocol::crdt::Typed;
    !o.live_values().is_empty()
        || o.typed_values().iter().any(|t| match t {
            Typed::Counter(c) => c.value() != 0,
            Typed::Set(s) => !s.is_empty(),
            Typed::Register(_) => true,
        })
}

/// The first key after every key that starts with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Step 3: the merged page.
pub(super) fn merge(answers: &[Page], limit: usize, max_bytes: usize) -> KeysReply {
    let cutoff = answers
        .iter()
        .filter_map(|(_, last)| last.as_ref())
        .min()
        .cloned();
    let mut by_key: BTreeMap<&[u8], Vec<(bool, Option<VersionVector>)>> = BTreeMap::new();
    for (entries, _) in answers {
        for e in entries {
            if cutoff
                .as_ref()
                .is_some_and(|c| e.key.as_slice() > c.as_slice())
            {
                continue;
            }
            by_key
                .entry(&e.key)
                .or_default()
                .push((e.live, VersionVector::decode(&e.clock).ok()));
        }
    }
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for (key, views) in by_key {
        let newest = views.iter().find(|(_, c)| {
            c.as_ref().is_some_and(|c| {
                views
                    .iter()
                    .all(|(_, o)| o.as_ref().is_some_and(|o| c.descends(o)))
            })
        });
        let live = match newest {
            Some((live, _)) => *live,
            None => views.iter().any(|(live, _)| *live),
        };
        if live {
            // Full in count or in bytes (the reply must fit in one client frame).
            if keys.len() == limit || (bytes + key.len() > max_bytes && !keys.is_empty()) {
                let cursor = keys.last().cloned();
                return KeysReply { keys, cursor };
            }
            bytes += key.len() + 5;
            keys.push(key.to_vec());
        }
    }
    KeysReply {
        keys,
        cursor: cutoff,
    }
}

impl Coordinator {
    /// Bytes of keys one listing answer or reply may carry: half a peer frame.
    pub(super) fn keys_bytes(&self) -> usize {
        (self.cfg.max_batch_bytes / 2).max(64 * 1024)
    }

    /// Step 1: the plan, node -> partitions it lists.
    fn keys_plan(&mut self) -> Result<(Arc<PartitionTable>, Plan), ClientError> {
        let p = self.placement();
        // While the ring is in transition the stable layout's owners hold the data (a new
        // owner may not yet): they are the ones listed.
        let table = p.stable.clone().unwrap_or_else(|| p.table.clone());
        let n = table.effective_n();
        let k = self.cfg.r.required(n).max(1);
        let mut plan: BTreeMap<NodeId, BTreeSet<u32>> = BTreeMap::new();
        for part in 0..table.partitions() {
            let up: Vec<&NodeId> = table
                .primaries(part)
                .iter()
                .filter(|id| **id == self.cfg.me || p.is_up(id))
                .take(k)
                .collect();
            if up.is_empty() {
                return Err(ClientError::new(
                    ErrorCode::Unavailable,
                    format!("no primary of partition {part} is up; keys cannot be listed"),
                ));
            }
            for id in up {
                plan.entry(id.clone()).or_default().insert(part);
            }
        }
        Ok((table, plan))
    }

    pub(super) fn keys_answer(
        &mut self,
        req: u64,
        node: &NodeId,
        ans: Result<Page, String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(Request::Keys(st)) = self.requests.get_mut(&req) else {
            return;
        };
        if !st.waiting.remove(node) {
            return;
        }
        match ans {
            Ok(a) => st.answers.push(a),
            Err(e) => st.failed.push(format!("{node}: {e}")),
        }
        if st.waiting.is_empty() {
            self.finish_keys(req, ctx);
        }
    }

    /// Every node answered, or the deadline passed.
    pub(super) fn finish_keys(&mut self, req: u64, ctx: &mut Context<Self>) {
        let Some(Request::Keys(mut st)) = self.forget(req) else {
            return;
        };
        let _ = ctx;
        let Some(to) = st.reply.take() else { return };
        let mut missing: Vec<String> = st
            .waiting
            .iter()
            .map(|n| format!("{n}: no answer"))
            .collect();
        missing.append(&mut st.failed);
        let result = if missing.is_empty() {
            Ok(merge(&st.answers, st.limit, st.max_bytes))
        } else {
            Err(ClientError::new(
                ErrorCode::Unavailable,
                format!(
                    "listing needs every replica in its plan; {}",
                    missing.join("; ")
                ),
            ))
        };
        let _ = to.send(result);
    }
}

impl Handler<ClientKeys> for Coordinator {
    type Result = ResponseFuture<Result<KeysReply, ClientError>>;

    fn handle(&mut self, msg: ClientKeys, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let (tx, rx) = oneshot::channel();
        let fail = |e: ClientError| -> Self::Result { Box::pin(async move { Err(e) }) };
        if let Some(e) = self.overloaded() {
            return fail(e);
        }
        let Some(scan) = self.storage_scan.clone() else {
            return fail(ClientError::new(
                ErrorCode::Internal,
                "this node cannot list keys (no storage scan)",
            ));
        };
        let (table, plan) = match self.keys_plan() {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        let req = self.next_id();
        self.requests.insert(
            req,
            Request::Keys(KeysState {
                reply: Some(tx),
                waiting: plan.keys().cloned().collect(),
                answers: Vec::new(),
                failed: Vec::new(),
                limit: msg.limit,
                max_bytes: self.keys_bytes(),
                rpcs: Vec::new(),
            }),
        );
        self.arm_deadline(req, self.cfg.request_timeout, ctx);
        for (node, parts) in plan {
            if node == self.cfg.me {
                let fut = scan_keys(
                    scan.clone(),
                    table.clone(),
                    parts,
                    msg.prefix.clone(),
                    msg.after.clone(),
                    msg.limit,
                    self.keys_bytes(),
                );
                let me = node.clone();
                self.local_ops += 1;
                super::local::finish_on_actor(ctx, fut, move |act, res, ctx| {
                    act.local_ops -= 1;
                    act.keys_answer(req, &me, res.map_err(|e| e.msg), ctx);
                });
            } else {
                let body = DataReq::Keys {
                    prefix: msg.prefix.clone(),
                    after: msg.after.clone(),
                    limit: msg.limit as u32,
                    partitions: parts.into_iter().collect(),
                };
                self.rpc(req, &node, body, ctx);
            }
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(ClientError::new(
                    ErrorCode::Internal,
                    "the coordinator dropped the listing",
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_protocol::object::{ActorId, Value};

    fn entry(key: &str, live: bool, writes: u64) -> KeyEntry {
        let o = (0..writes).fold(Object::new(), |o, i| {
            let v = if live || i + 1 < writes {
                Value::data(i.to_string())
            } else {
                Value::Deleted
            };
            o.update(&o.context(), v, ActorId(1)).unwrap()
        });
        KeyEntry {
            key: key.into(),
            live,
            clock: o.encoded_context(),
        }
    }

    #[test]
    fn a_newer_replica_overrules_a_stale_one_and_pages_stop_at_the_shortest_answer() {
        // Replica A saw k2 deleted (3 writes); B is stale (2 writes, live). k4 only on B,
        // but A's answer stopped at k3: k4 waits for the next page.
        let a = (
            vec![
                entry("k1", true, 1),
                entry("k2", false, 3),
                entry("k3", true, 1),
            ],
            Some(b"k3".to_vec()),
        );
        let b = (
            vec![
                entry("k1", true, 1),
                entry("k2", true, 2),
                entry("k4", true, 1),
            ],
            None,
        );
        let page = merge(&[a, b], 10, 1 << 20);
        assert_eq!(page.keys, vec![b"k1".to_vec(), b"k3".to_vec()]);
        assert_eq!(page.cursor, Some(b"k3".to_vec()));
    }

    #[test]
    fn a_full_page_continues_after_its_last_key() {
        let a = (
            vec![
                entry("a", true, 1),
                entry("b", true, 1),
                entry("c", true, 1),
            ],
            None,
        );
        let page = merge(&[a], 2, 1 << 20);
        assert_eq!(page.keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(page.cursor, Some(b"b".to_vec()));
        let a = (vec![entry("a", true, 1)], None);
        assert_eq!(merge(&[a], 2, 1 << 20).cursor, None, "exhausted: no cursor");
        // Full in bytes: the page stops early with a cursor (never empty).
        let a = (vec![entry("aaaa", true, 1), entry("bbbb", true, 1)], None);
        let page = merge(&[a], 10, 6);
        assert_eq!(page.keys, vec![b"aaaa".to_vec()]);
        assert_eq!(page.cursor, Some(b"aaaa".to_vec()));
    }

    #[test]
    fn prefix_ends_are_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
