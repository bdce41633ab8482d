//! Membership table, merge rules and infection-style dissemination (sans-IO).
//!
//! Owns: `MemberList` — every known member (including ourselves) keyed by
//! `NodeId`, the gossip retransmit queue (a `broadcast::Broadcasts`), the table digest and the events
//! subscribers are told about.
//!
//! Invariants:
//! - Exactly one entry per id; our own entry is always present and is only
//!   changed by us (refutation or leave), never overwritten by gossip.
//! - Merge is a total order on `(incarnation, run_id, status)`: a record
//!   replaces the current one only if its rank is strictly greater, so merge
//!   is commutative and idempotent and every node converges.
//! - Gossip about us that is not `Alive` at `>=` our incarnation (or comes
//!   from another run of us) is refuted by raising our incarnation above it.
//! - An update is retransmitted at most `lambda * ceil(log10(N+1))` times (memberlist's
//!   `retransmitLimit`); within the per-message byte budget, compact updates (suspect, dead,
//!   left, and alive refutations of a run the receiver knows) go before every full alive
//!   record, then least-sent, then newest.
//! - A compact record (empty addresses) is only applied to a member run we hold; it is
//!   ignored for an unknown member or another run (the full record arrives on its own).
//! - Time is never read: callers pass virtual `now` milliseconds.

use super::broadcast::Broadcasts;
pub use super::broadcast::{compact, estimate_update_size, is_compact, MESSAGE_HEADER_BYTES};
use crate::idmap::IdMap;
use crate::membership::config::SwimConfig;
use troupe_protocol::swim::{MemberInfo, NodeId, Status, Update};

/// What subscribers are told. A rejoin after restart is reported as `MemberUp`.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    MemberUp(MemberInfo),
    MemberSuspect(MemberInfo),
    MemberDown(MemberInfo),
    MemberLeft(MemberInfo),
}

/// Result of merging one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Stale, duplicate, or about an unknown dead member.
    Ignored,
    /// It was about us; we raised our incarnation to `incarnation`.
    /// `suspected` is true when it claimed we were Suspect/Dead/Left.
    Refuted { incarnation: u64, suspected: bool },
    /// The table changed.
    Changed {
        prev: Option<Status>,
        info: MemberInfo,
        rejoined: bool,
    },
    /// Same Suspect record we already hold (a possible confirmation).
    SameSuspect,
}

#[derive(Clone, Debug)]
struct Entry {
    info: MemberInfo,
    changed_ms: u64,
}

/// The member table of one node.
#[derive(Clone, Debug)]
pub struct MemberList {
    me: NodeId,
    /// The records by id (iteration order is deterministic, not sorted).
    members: IdMap<NodeId, Entry>,
    leaving: bool,
    queue: Broadcasts,
    events: Vec<MemberEvent>,
    /// Order-independent digest: the lane-wise wrapping sum of every record's hash, kept up
    /// to date on each change (O(1) instead of hashing the whole table per Ack).
    digest_sum: [u64; 4],
    /// Records that are Dead or Left (reaping scans only when there are some).
    gone: usize,
    /// Cached count of Alive/Suspect entries (including us).
    live: usize,
    /// Grows whenever an id is added or reaped (callers cache id lists against it).
    ids_version: u64,
    cfg: SwimConfig,
}

fn is_live(s: Status) -> bool {
    matches!(s, Status::Alive | Status::Suspect)
}

fn is_gone(s: Status) -> bool {
    matches!(s, Status::Dead | Status::Left)
}

/// blake3 of the fields the digest covers, as four lanes.
fn record_hash(i: &MemberInfo) -> [u64; 4] {
    let mut h = blake3::Hasher::new();
    h.update(&(i.id.0.len() as u32).to_le_bytes());
    h.update(i.id.0.as_bytes());
    h.update(&i.incarnation.to_le_bytes());
    h.update(&[i.status.code()]);
    h.update(&i.run_id.to_le_bytes());
    let b = h.finalize();
    let mut out = [0u64; 4];
    for (lane, c) in out.iter_mut().zip(b.as_bytes().chunks_exact(8)) {
        *lane = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
    }
    out
}

impl MemberList {
    /// A table containing only ourselves (forced Alive).
    pub fn new(mut me: MemberInfo, cfg: SwimConfig) -> Self {
        me.status = Status::Alive;
        let id = me.id.clone();
        let mut list = MemberList {
            me: id,
            members: IdMap::default(),
            leaving: false,
            queue: Broadcasts::default(),
            events: Vec::new(),
            digest_sum: [0; 4],
            gone: 0,
            live: 1,
            ids_version: 0,
            cfg,
        };
        list.push(Entry {
            info: me,
            changed_ms: 0,
        });
        list
    }

    fn push(&mut self, e: Entry) {
        self.add_hash(&e.info, false);
        self.members.insert(e.info.id.clone(), e);
    }

    fn entry(&self, id: &NodeId) -> Option<&Entry> {
        self.members.get(id)
    }

    /// Add (or with `remove`, take away) one record's share of the digest and counts.
    fn add_hash(&mut self, info: &MemberInfo, remove: bool) {
        let h = record_hash(info);
        for (acc, x) in self.digest_sum.iter_mut().zip(h) {
            *acc = if remove {
                acc.wrapping_sub(x)
            } else {
                acc.wrapping_add(x)
            };
        }
        let g = is_gone(info.status) as usize;
        self.gone = if remove { self.gone - g } else { self.gone + g };
    }

    /// Replace the record of a known member (digest and counts follow); `changed_ms` moves
    /// to `now` when given.
    fn set_info(&mut self, info: MemberInfo, now: Option<u64>) {
        self.add_hash(&info, false);
        let Some(e) = self.members.get_mut(&info.id) else {
            return;
        };
        if let Some(now) = now {
            e.changed_ms = now;
        }
        let old = std::mem::replace(&mut e.info, info);
        self.add_hash(&old, true);
    }

    /// Insert an unknown member silently (no event, no gossip). Used for
    /// bulk bootstrap; returns false if the id was already known.
    pub fn preload(&mut self, mut info: MemberInfo, now: u64) -> bool {
        if self.members.contains_key(&info.id) {
            return false;
        }
        info.status = Status::Alive;
        self.live += 1;
        self.ids_version += 1;
        self.push(Entry {
            info,
            changed_ms: now,
        });
        true
    }

    pub fn me(&self) -> &MemberInfo {
        &self
            .entry(&self.me)
            .expect("our own entry is always present")
            .info
    }
    pub fn my_id(&self) -> &NodeId {
        &self.me
    }
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }
    pub fn get(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.entry(id).map(|e| &e.info)
    }
    /// All known records (including ourselves and unreaped Dead/Left), in table order
    /// (deterministic for the same sequence of changes, not sorted).
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values().map(|e| &e.info)
    }
    /// Every record with the `now` (ms) of its last status change, sorted by id.
    pub fn entries(&self) -> impl Iterator<Item = (&MemberInfo, u64)> {
        let mut all: Vec<(&MemberInfo, u64)> = self
            .members
            .values()
            .map(|e| (&e.info, e.changed_ms))
            .collect();
        all.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        all.into_iter()
    }
    /// Members that are Alive or Suspect, including ourselves.
    pub fn live_count(&self) -> usize {
        self.live
    }
    pub fn drain_events(&mut self) -> Vec<MemberEvent> {
        std::mem::take(&mut self.events)
    }
    pub fn pending_broadcasts(&self) -> usize {
        self.queue.len()
    }
    /// Changes whenever an id is added to or reaped from the table.
    pub fn ids_version(&self) -> u64 {
        self.ids_version
    }
    /// Number of records (any status, including us).
    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Merge one gossiped record. `gossip` controls whether an accepted change
    /// is queued for further dissemination.
    pub fn apply(&mut self, update: &Update, now: u64, gossip: bool) -> Merge {
        if update.member.id == self.me {
            return self.apply_about_me(&update.member);
        }
        let cur = self.entry(&update.member.id);
        if is_compact(update) {
            match cur {
                Some(cur) if cur.info.run_id == update.member.run_id => {}
                _ => return Merge::Ignored,
            }
        }
        // Most gossip is news we already hold: settle that before copying anything.
        if let Some(cur) = cur {
            let (u, c) = (&update.member, &cur.info);
            if u.rank() < c.rank() || (u.rank() == c.rank() && u.status != Status::Suspect) {
                return Merge::Ignored;
            }
        }
        let filled;
        let update = match cur {
            Some(cur) if is_compact(update) => {
                let mut full = update.clone();
                full.member.client_addr = cur.info.client_addr.clone();
                full.member.peer_addr = cur.info.peer_addr.clone();
                full.member.admin_addr = cur.info.admin_addr.clone();
                filled = full;
                &filled
            }
            _ => update,
        };
        let u = &update.member;
        let Some(cur) = self.entry(&u.id) else {
            if !matches!(u.status, Status::Alive | Status::Suspect) {
                return Merge::Ignored;
            }
            self.insert(update, None, false, now, gossip);
            return Merge::Changed {
                prev: None,
                info: u.clone(),
                rejoined: false,
            };
        };
        let (cur_rank, cur_status, cur_run) = (cur.info.rank(), cur.info.status, cur.info.run_id);
        if u.rank() > cur_rank {
            let rejoined = u.run_id != cur_run;
            self.insert(update, Some(cur_status), rejoined, now, gossip);
            Merge::Changed {
                prev: Some(cur_status),
                info: u.clone(),
                rejoined,
            }
        } else if u.rank() == cur_rank && u.status == Status::Suspect {
            Merge::SameSuspect
        } else {
            Merge::Ignored
        }
    }

    fn insert(
        &mut self,
        update: &Update,
        prev: Option<Status>,
        rejoined: bool,
        now: u64,
        gossip: bool,
    ) {
        let info = update.member.clone();
        let was_live = matches!(prev, Some(Status::Alive | Status::Suspect)) && !rejoined;
        match info.status {
            Status::Alive if prev != Some(Status::Alive) || rejoined => {
                self.events.push(MemberEvent::MemberUp(info.clone()))
            }
            Status::Suspect => {
                if !was_live {
                    self.events.push(MemberEvent::MemberUp(info.clone()));
                }
                if prev != Some(Status::Suspect) || rejoined {
                    self.events.push(MemberEvent::MemberSuspect(info.clone()));
                }
            }
            Status::Dead if prev != Some(Status::Dead) => {
                self.events.push(MemberEvent::MemberDown(info.clone()))
            }
            Status::Left if prev != Some(Status::Left) => {
                self.events.push(MemberEvent::MemberLeft(info.clone()))
            }
            _ => {}
        }
        let changed = prev != Some(info.status) || rejoined;
        if prev.is_none() {
            self.ids_version += 1;
        }
        // A known run's news travels compact; a new member or run needs its addresses.
        let compact_form = prev.is_some() && !rejoined;
        let was = prev.is_some_and(is_live) as usize;
        self.live = self.live + is_live(info.status) as usize - was;
        match prev {
            Some(_) => self.set_info(info, changed.then_some(now)),
            None => self.push(Entry {
                info,
                changed_ms: now,
            }),
        }
        if gossip {
            self.queue.enqueue(update.clone(), compact_form);
        }
    }

    fn apply_about_me(&mut self, u: &MemberInfo) -> Merge {
        if self.leaving {
            return Merge::Ignored;
        }
        let mine = self.me().clone();
        let suspected = u.status != Status::Alive;
        let other_run = u.run_id != mine.run_id;
        let refute = if suspected || other_run {
            u.incarnation >= mine.incarnation
        } else {
            u.incarnation > mine.incarnation
        };
        if !refute {
            return Merge::Ignored;
        }
        let incarnation = u.incarnation + 1;
        // A refutation is about a run the others know unless they hold another run of us.
        self.bump_self(incarnation, Status::Alive, !other_run);
        Merge::Refuted {
            incarnation,
            suspected,
        }
    }

    fn bump_self(&mut self, incarnation: u64, status: Status, compact_form: bool) {
        let me = self.me.clone();
        let Some(mut info) = self.get(&me).cloned() else {
            return;
        };
        let was = is_live(info.status) as usize;
        info.incarnation = incarnation;
        info.status = status;
        self.live = self.live + is_live(status) as usize - was;
        self.set_info(info.clone(), None);
        let update = Update {
            member: info,
            origin: me,
        };
        self.queue.enqueue(update, compact_form);
    }

    /// Gossip our own Alive record again (used on join so seeds spread us).
    pub fn announce_self(&mut self) {
        let inc = self.me().incarnation;
        let status = self.me().status;
        self.bump_self(inc, status, false);
    }

    /// Our detector suspects `id` at `incarnation`.
    pub fn suspect(&mut self, id: &NodeId, incarnation: u64, now: u64) -> Merge {
        self.local_verdict(id, incarnation, Status::Suspect, now)
    }

    /// `admin remove`: declare a dead member gone for good (`Left` at its incarnation,
    /// which outranks `Dead`). Refused for a live member, which must leave itself; a
    /// removed member that comes back refutes with a newer incarnation and rejoins.
    pub fn remove(&mut self, id: &NodeId, now: u64) -> Result<Option<Update>, String> {
        let Some(cur) = self.members.get(id) else {
            return Err(format!("{id} is not a member this node knows"));
        };
        match cur.info.status {
            Status::Alive | Status::Suspect => Err(format!(
                "{id} is {} (membership): a member that is up leaves with `troupe admin leave` on that node; remove is for a member that will not come back",
                if cur.info.status == Status::Alive { "alive" } else { "suspect" }
            )),
            Status::Left => Ok(None),
            Status::Dead => {
                let mut member = cur.info.clone();
                member.status = Status::Left;
                let update = Update {
                    member,
                    origin: self.me.clone(),
                };
                self.apply(&update, now, true);
                Ok(Some(update))
            }
        }
    }

    /// Our suspicion of `id` at `incarnation` expired.
    pub fn confirm_dead(&mut self, id: &NodeId, incarnation: u64, now: u64) -> Merge {
        self.local_verdict(id, incarnation, Status::Dead, now)
    }

    fn local_verdict(&mut self, id: &NodeId, inc: u64, status: Status, now: u64) -> Merge {
        let Some(cur) = self.entry(id) else {
            return Merge::Ignored;
        };
        if cur.info.incarnation != inc || *id == self.me {
            return Merge::Ignored;
        }
        let mut member = cur.info.clone();
        member.status = status;
        let update = Update {
            member,
            origin: self.me.clone(),
        };
        self.apply(&update, now, true)
    }

    /// Leave gracefully: announce `Left` at a fresh incarnation.
    pub fn leave(&mut self) {
        let inc = self.me().incarnation + 1;
        self.bump_self(inc, Status::Left, true);
        self.leaving = true;
    }

    /// Retransmit limit for the current cluster size: memberlist's
    /// `retransmitMult * ceil(log10(N+1))`. With the gossip fan-out every member that hears
    /// an update passes it on this many times, which reaches all N with high probability.
    pub fn retransmit_limit(&self) -> u32 {
        self.cfg.retransmit_mult * self.log_n()
    }

    /// Retransmit limit of a refutation (see `SwimConfig::refute_retransmit_mult`).
    pub fn refute_retransmit_limit(&self) -> u32 {
        self.cfg
            .refute_retransmit_mult
            .max(self.cfg.retransmit_mult)
            * self.log_n()
    }

    fn log_n(&self) -> u32 {
        let n = self.live_count() as f64;
        ((n + 1.0).log10().ceil() as u32).max(1)
    }

    /// Pick updates to piggyback on one outgoing message to `to`, so that the whole
    /// message stays within `gossip_budget_bytes`.
    pub fn select_gossip(&mut self, to: Option<&NodeId>) -> Vec<Update> {
        let limits = (self.retransmit_limit(), self.refute_retransmit_limit());
        let header = MESSAGE_HEADER_BYTES + self.me.0.len();
        self.queue.select(
            to,
            self.cfg.gossip_budget_bytes.saturating_sub(header),
            self.cfg.gossip_max_updates,
            limits,
        )
    }

    /// Digest of the table: the lane-wise wrapping sum of each record's blake3 over
    /// (id, incarnation, status, run_id). Independent of order, so equal tables have equal
    /// digests; kept up to date incrementally.
    pub fn digest(&self) -> [u8; 32] {
        let mut d = [0u8; 32];
        for (c, lane) in d.chunks_exact_mut(8).zip(self.digest_sum) {
            c.copy_from_slice(&lane.to_le_bytes());
        }
        d
    }

    /// Full table for push-pull.
    pub fn export(&self) -> Vec<MemberInfo> {
        self.members.values().map(|e| e.info.clone()).collect()
    }

    /// Merge a peer's full table. Remote `Dead` is downgraded to `Suspect` so
    /// the member gets a chance to refute (as memberlist does). New third-party
    /// entries are not re-gossiped (anti-entropy covers them); changes to known
    /// entries and the sender's own record are.
    pub fn merge_state(
        &mut self,
        from: &NodeId,
        members: &[MemberInfo],
        now: u64,
    ) -> Vec<(Update, Merge)> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let mut member = m.clone();
            if member.status == Status::Dead {
                member.status = Status::Suspect;
            }
            let gossip = self.members.contains_key(&member.id) || member.id == *from;
            let update = Update {
                member,
                origin: from.clone(),
            };
            let r = self.apply(&update, now, gossip);
            out.push((update, r));
        }
        out
    }

    /// Re-queue a Suspect record carrying a new independent confirmation.
    pub fn regossip(&mut self, update: Update) {
        self.queue.enqueue(update, true);
    }

    /// Forget Dead/Left members whose last change is older than `reap_after_ms`.
    pub fn reap(&mut self, now: u64) -> Vec<NodeId> {
        let after = self.cfg.reap_after_ms;
        if self.gone == 0 {
            return Vec::new();
        }
        let gone: Vec<NodeId> = self
            .members
            .values()
            .filter(|e| {
                e.info.id != self.me
                    && matches!(e.info.status, Status::Dead | Status::Left)
                    && now.saturating_sub(e.changed_ms) >= after
            })
            .map(|e| e.info.id.clone())
            .collect();
        for id in &gone {
            let Some(e) = self.members.remove(id) else {
                continue;
            };
            self.add_hash(&e.info, true);
            self.ids_version += 1;
        }
        // (reaped entries are Dead/Left, so `live` is unchanged)
        gone
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
