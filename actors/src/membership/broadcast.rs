//! The gossip retransmit queue of one node (sans-IO), and the byte estimates its budget uses.
//!
//! Owns: `Broadcasts` (one entry per subject, or per (subject, suspector) for Suspect
//! records), the compact form of an update and `estimate_update_size`.
//!
//! Invariants: a compact update (suspect, dead, left, alive refutation of a known run) is
//! always picked before any full alive record; within a class least-sent, then newest; an
//! update is dropped after its retransmit limit (a larger one for refutations); `estimate_update_size` is an upper bound
//! of the update's MessagePack (named) encoding.

use crate::idmap::IdMap;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use troupe_protocol::swim::{NodeId, Status, Update};

#[derive(Clone, Debug)]
struct Queued {
    /// Who asserted it, for Suspect records (one entry per suspector); None otherwise.
    origin: Option<NodeId>,
    update: Update,
    /// 0 for compact updates, 1 for full alive records: compact ones always go first.
    class: u8,
    transmits: u32,
    /// A refutation (compact Alive: a known run at a raised incarnation); it gets the
    /// larger retransmit limit.
    refutation: bool,
    /// Unique per enqueue: ties the index entry to this record.
    order: u64,
    size: usize,
}

/// Selection order: class, then least sent, then newest. `order` is unique, so the key
/// is too, and the index never compares ids.
type QIndex = (u8, u32, Reverse<u64>);

impl Queued {
    fn idx(&self) -> QIndex {
        (self.class, self.transmits, Reverse(self.order))
    }
}

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
    /// Queued records by subject (a handful per subject at most).
    entries: IdMap<NodeId, Vec<Queued>>,
    /// Selection order -> subject.
    index: BTreeMap<QIndex, NodeId>,
    len: usize,
    next_order: u64,
}

impl Broadcasts {
    /// Updates still queued.
    pub(super) fn len(&self) -> usize {
        self.len
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
        let origin = (update.member.status == Status::Suspect).then(|| update.origin.clone());
        self.next_order += 1;
        let q = Queued {
            size: estimate_update_size(&update),
            class: u8::from(!is_compact(&update)),
            refutation: is_compact(&update) && update.member.status == Status::Alive,
            origin,
            update,
            transmits: 0,
            order: self.next_order,
        };
        self.index.insert(q.idx(), subject.clone());
        let list = self.entries.entry(subject).or_default();
        // Older news about the subject, and the same suspector's earlier record, go.
        let (index, len) = (&mut self.index, &mut self.len);
        list.retain(|old| {
            let keep = old.update.member.rank() == rank && old.origin != q.origin;
            if !keep {
                index.remove(&old.idx());
                *len -= 1;
            }
            keep
        });
        list.push(q);
        self.len += 1;
    }

    /// Least-sent then newest first; but non-Alive news about the recipient
    /// itself always goes first so it can refute without delay. An update is dropped after
    /// `limits.0` sends, a refutation after `limits.1`.
    pub(super) fn select(
        &mut self,
        to: Option<&NodeId>,
        budget: usize,
        max_updates: usize,
        limits: (u32, u32),
    ) -> Vec<Update> {
        let mut left = budget;
        let mut picked: Vec<(NodeId, u64)> = Vec::new();
        if let Some(list) = to.and_then(|to| self.entries.get(to)) {
            for q in list {
                if q.update.member.status != Status::Alive && q.size <= left {
                    left -= q.size;
                    picked.push((q.update.member.id.clone(), q.order));
                }
            }
        }
        let mut misfits = 0;
        for ((_, _, Reverse(order)), subject) in self.index.iter() {
            // A few records too large for what is left means the rest (of similar sizes)
            // will not fit either: stop rather than scan the whole queue per message.
            if picked.len() >= max_updates || left < MIN_UPDATE_BYTES || misfits >= MAX_MISFITS {
                break;
            }
            if to == Some(subject) {
                continue;
            }
            let Some(q) = self
                .entries
                .get(subject)
                .and_then(|l| l.iter().find(|q| q.order == *order))
            else {
                continue;
            };
            if q.size <= left {
                left -= q.size;
                picked.push((subject.clone(), *order));
            } else {
                misfits += 1;
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for (subject, order) in picked {
            let Some(list) = self.entries.get_mut(&subject) else {
                continue;
            };
            let Some(at) = list.iter().position(|q| q.order == order) else {
                continue;
            };
            let q = &mut list[at];
            self.index.remove(&q.idx());
            out.push(q.update.clone());
            q.transmits += 1;
            let limit = if q.refutation { limits.1 } else { limits.0 };
            if q.transmits < limit {
                self.index.insert(q.idx(), subject);
            } else {
                list.swap_remove(at);
                self.len -= 1;
                if list.is_empty() {
                    self.entries.remove(&subject);
                }
            }
        }
        out
    }
}

/// Records that did not fit before a selection gives up on the rest of the queue.
const MAX_MISFITS: usize = 8;

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
