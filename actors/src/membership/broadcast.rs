//! The gossip retransmit queue of one node (sans-IO), and the byte estimates its budget uses.
//!
//! Owns: `Broadcasts` (one entry per subject, or per (subject, suspector) for Suspect
//! records), the compact form of an update and `estimate_update_size`.
//!
//! Invariants: a compact update (suspect, dead, left, alive refutation of a known run) is
//! always picked before any full alive record; within a class least-sent, then newest; an
//! update is dropped after `limit` transmissions; `estimate_update_size` is an upper bound
//! of the update's MessagePack (named) encoding.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use troupe_protocol::swim::{NodeId, Status, Update};

#[derive(Clone, Debug)]
struct Queued {
    update: Update,
    /// 0 for compact updates, 1 for full alive records: compact ones always go first.
    class: u8,
    transmits: u32,
    order: u64,
    size: usize,
}

type QKey = (NodeId, NodeId);
type QIndex = (u8, u32, Reverse<u64>, NodeId, NodeId);

/// Estimated bytes of a Ping/Ack/Gossip without its updates, beyond the sender's id: tags,
/// field names, sequence number and the Ack's 32-byte digest.
pub const MESSAGE_HEADER_BYTES: usize = 96;

/// Whether `u` is a compact record (see `troupe_protocol::swim::MemberInfo`).
pub fn is_compact(u: &Update) -> bool {
    u.member.peer_addr.is_empty()
}

/// `u` without its addresses.
pub fn compact(mut u: Update) -> Update {
    u.member.client_addr.clear();
    u.member.peer_addr.clear();
    u.member.admin_addr.clear();
    u
}

/// Retransmit queue: one entry per subject, or per (subject, suspector) for
/// Suspect records so independent confirmations travel too.
#[derive(Clone, Debug, Default)]
pub(super) struct Broadcasts {
    entries: BTreeMap<QKey, Queued>,
    index: BTreeSet<QIndex>,
    next_order: u64,
}

impl Broadcasts {
    /// Updates still queued.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn idx(key: &QKey, q: &Queued) -> QIndex {
        (
            q.class,
            q.transmits,
            Reverse(q.order),
            key.0.clone(),
            key.1.clone(),
        )
    }

    fn remove(&mut self, key: &QKey) {
        if let Some(q) = self.entries.remove(key) {
            self.index.remove(&Self::idx(key, &q));
        }
    }

    /// Queue `update` for retransmission, compact when `compact_form` (non-alive records
    /// are always compact).
    pub(super) fn enqueue(&mut self, update: Update, compact_form: bool) {
        let update = if compact_form || update.member.status != Status::Alive {
            compact(update)
        } else {
            update
        };
        let subject = update.member.id.clone();
        let rank = update.member.rank();
        let stale: Vec<QKey> = self
            .entries
            .range((subject.clone(), NodeId::default())..)
            .take_while(|(k, _)| k.0 == subject)
            .filter(|(_, q)| q.update.member.rank() != rank)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
        let origin_key = if update.member.status == Status::Suspect {
            update.origin.clone()
        } else {
            NodeId::default()
        };
        let key = (subject, origin_key);
        self.remove(&key);
        self.next_order += 1;
        let q = Queued {
            size: estimate_update_size(&update),
            class: u8::from(!is_compact(&update)),
            update,
            transmits: 0,
            order: self.next_order,
        };
        self.index.insert(Self::idx(&key, &q));
        self.entries.insert(key, q);
    }

    /// Least-sent then newest first; but non-Alive news about the recipient
    /// itself always goes first so it can refute without delay.
    pub(super) fn select(
        &mut self,
        to: Option<&NodeId>,
        budget: usize,
        max_updates: usize,
        limit: u32,
    ) -> Vec<Update> {
        let mut left = budget;
        let mut picked: Vec<QKey> = Vec::new();
        if let Some(to) = to {
            for (k, q) in self
                .entries
                .range((to.clone(), NodeId::default())..)
                .take_while(|(k, _)| k.0 == *to)
            {
                if q.update.member.status != Status::Alive && q.size <= left {
                    left -= q.size;
                    picked.push(k.clone());
                }
            }
        }
        for (_, _, _, a, b) in self.index.iter() {
            if picked.len() >= max_updates || left < MIN_UPDATE_BYTES {
                break;
            }
            if to == Some(a) {
                continue;
            }
            let Some(q) = self.entries.get(&(a.clone(), b.clone())) else {
                continue;
            };
            if q.size <= left {
                left -= q.size;
                picked.push((a.clone(), b.clone()));
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            let Some(mut q) = self.entries.remove(&key) else {
                continue;
            };
            self.index.remove(&Self::idx(&key, &q));
            out.push(q.update.clone());
            q.transmits += 1;
            if q.transmits < limit {
                self.index.insert(Self::idx(&key, &q));
                self.entries.insert(key, q);
            }
        }
        out
    }
}

/// Smallest possible update estimate (compact, empty ids): below this nothing fits.
const MIN_UPDATE_BYTES: usize = 84;

/// MessagePack (named) size of one update, an upper bound used for the byte budget: field
/// names and map headers (84 bytes compact, 120 with the three address fields), integers
/// at their widest (9 bytes), and each string with its length prefix (2 bytes past 31).
pub fn estimate_update_size(u: &Update) -> usize {
    let m = &u.member;
    let s = |x: &str| x.len() + if x.len() > 31 { 3 } else { 1 };
    let base = 80 + s(&m.id.0) + s(&u.origin.0);
    if is_compact(u) {
        base
    } else {
        base + 36 + s(&m.client_addr) + s(&m.peer_addr) + s(&m.admin_addr)
    }
}
