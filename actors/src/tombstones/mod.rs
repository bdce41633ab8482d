//! The tombstone actor: garbage-collects delete markers once no copy or hint anywhere
//! could bring back what they deleted.
//!
//! Owns the [`book::GcBook`] (markers this replica holds, since when) and runs GC rounds
//! ([`book::Round`]) over the peer bulk lane ([`TombMsg`]). Wired to:
//! - the coordinator: [`TombstoneWritten`] for every delete marker it stores (from client
//!   deletes, replica puts, read repair, hints and anti-entropy alike), and
//!   [`PurgeTombstones`] to delete markers under the key locks;
//! - the Memtable: a paged `Scan` at start-up (markers written before this process), and
//!   `Get` to check that a marker is still held;
//! - the hinted-handoff actor: [`HintsPending`];
//! - membership's ring view and the layout (`watch` receivers): who the primaries and the
//!   members are, and whether they are up.
//!
//! A round, run every `round_interval` by the first primary of a key's partition (its
//! owner) for markers it has held for `cluster.tombstone_grace`:
//! 1. `Check` to every other member, and the same check here: no hint for the key pending
//!    there, and each other primary holds exactly this marker (same clock hash).
//! 2. Once every member passed an entry (a member that does not answer within
//!    `round_timeout` fails them all): `Purge` to the other primaries, and a purge here.
//!    Each deletes the marker only if it still holds exactly it.
//!
//! No round runs while the ring is in transition (`crate::handoff`), nor while any member
//! is down or unknown: a member we cannot ask may hold a
//! hint with an older value. Markers wait (counted as held), they are never dropped early.

pub mod book;

use crate::coordinator::{PurgeTombstones, TombstoneWritten};
use crate::hints::HintsPending;
use crate::membership::actor::RingMembers;
use crate::memtable::{Get, Scan};
use crate::peer::{PeerTransport, TombInbound};
use crate::ring::Layout;
use actix::prelude::*;
use book::{GcBook, Hash, Round};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use troupe_protocol::object::Object;
use troupe_protocol::swim::{NodeId, Status};
use troupe_protocol::tomb::{clock_hash, TombEntry, TombMsg, MAX_ENTRIES};

/// Settings.
#[derive(Debug, Clone)]
pub struct TombstoneConfig {
    pub me: NodeId,
    /// `cluster.tombstone_grace`.
    pub grace: Duration,
    pub round_interval: Duration,
    pub round_timeout: Duration,
    pub max_tracked: usize,
    pub mailbox: usize,
}

impl TombstoneConfig {
    /// Rounds every quarter of the grace, between 200 ms and 30 s.
    pub fn new(me: NodeId, grace: Duration) -> TombstoneConfig {
        TombstoneConfig {
            me,
            grace,
            round_interval: (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(30)),
            round_timeout: Duration::from_secs(10),
            max_tracked: 4_000_000,
            mailbox: 4096,
        }
    }
}

/// Counters for `admin stats` and /metrics.
#[derive(Debug, Default)]
pub struct TombStats {
    /// Markers in the book, within their grace / past it (gauges).
    pub held_young: AtomicU64,
    pub held_ripe: AtomicU64,
    pub dropped: AtomicU64,
    pub rounds: AtomicU64,
    /// Ticks that ran no round because a member was down or unknown.
    pub rounds_blocked: AtomicU64,
    /// Entries a round kept (a hint pending, or a primary without the marker).
    pub kept: AtomicU64,
    /// Reports the book had no room for.
    pub untracked: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TombSnapshot {
    pub held_in_grace: u64,
    pub held_past_grace: u64,
    pub dropped: u64,
    pub rounds: u64,
    pub rounds_blocked: u64,
    pub kept: u64,
    pub untracked: u64,
}

impl TombStats {
    /// The counters by name (`admin stats` section `tombstones`).
    pub fn named(&self) -> BTreeMap<&'static str, u64> {
        let s = self.snapshot();
        BTreeMap::from([
            ("held_in_grace", s.held_in_grace),
            ("held_past_grace", s.held_past_grace),
            ("dropped", s.dropped),
            ("rounds", s.rounds),
            ("rounds_blocked", s.rounds_blocked),
            ("kept", s.kept),
            ("untracked", s.untracked),
        ])
    }

    pub fn snapshot(&self) -> TombSnapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        TombSnapshot {
            held_in_grace: l(&self.held_young),
            held_past_grace: l(&self.held_ripe),
            dropped: l(&self.dropped),
            rounds: l(&self.rounds),
            rounds_blocked: l(&self.rounds_blocked),
            kept: l(&self.kept),
            untracked: l(&self.untracked),
        }
    }
}

/// What the actor talks to.
pub struct TombstoneLinks {
    pub transport: Option<PeerTransport>,
    pub members: watch::Receiver<RingMembers>,
    pub layout: watch::Receiver<Layout>,
    pub get: Recipient<Get>,
    pub scan: Recipient<Scan>,
    pub purge: Recipient<PurgeTombstones>,
    pub hints: Option<Recipient<HintsPending>>,
    /// The Handoff actor's stable layout while the ring is in transition: no round runs
    /// then (a partition's owners are changing; a new owner may not hold a marker yet).
    pub transition: Option<watch::Receiver<crate::handoff::Transition>>,
}

pub struct TombstoneActor {
    cfg: TombstoneConfig,
    links: TombstoneLinks,
    book: GcBook,
    round: Option<(Round<NodeId>, Instant)>,
    next_id: u64,
    stats: Arc<TombStats>,
}

/// Why one entry failed a member's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Pass,
    HintPending,
    /// This node does not hold exactly that marker (a newer write, or purged).
    NotHeld,
}

impl TombstoneActor {
    pub fn new(cfg: TombstoneConfig, links: TombstoneLinks) -> TombstoneActor {
        let retry = cfg.round_interval * 4;
        TombstoneActor {
            book: GcBook::new(cfg.grace, retry, cfg.max_tracked),
            cfg,
            links,
            round: None,
            next_id: rand::random::<u64>() >> 1,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<TombStats> {
        self.stats.clone()
    }

    fn publish(&self) {
        let (young, ripe) = self.book.counts(Instant::now());
        self.stats.held_young.store(young as u64, Relaxed);
        self.stats.held_ripe.store(ripe as u64, Relaxed);
        self.stats.untracked.store(self.book.overflow, Relaxed);
    }

    /// The members a round must ask (every member but us that has not left), or the
    /// first one that is down or unknown.
    fn members_to_ask(&self, layout: &Layout) -> Result<Vec<(NodeId, String)>, NodeId> {
        let view = self.links.members.borrow();
        let known: BTreeMap<&NodeId, _> = view.members.iter().map(|m| (&m.id, m)).collect();
        let mut ask = Vec::new();
        for m in &view.members {
            if m.id == self.cfg.me || view.departed.contains(&m.id) {
                continue;
            }
            match m.status {
                Status::Alive | Status::Suspect => ask.push((m.id.clone(), m.peer_addr.clone())),
                _ => return Err(m.id.clone()),
            }
        }
        // A layout member membership does not know yet cannot be asked.
        if let Some(id) = layout
            .table
            .members()
            .iter()
            .find(|id| !known.contains_key(id))
        {
            return Err(id.clone());
        }
        Ok(ask)
    }

    fn peer_addr(&self, id: &NodeId) -> Option<String> {
        let view = self.links.members.borrow();
        view.members
            .iter()
            .find(|m| &m.id == id)
            .map(|m| m.peer_addr.clone())
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.publish();
        if let Some((round, started)) = &mut self.round {
            if started.elapsed() >= self.cfg.round_timeout {
                round.timed_out();
                self.finish_round(ctx);
            }
            return;
        }
        if self
            .links
            .transition
            .as_ref()
            .is_some_and(|t| t.borrow().stable_for(&self.links.layout.borrow()).is_some())
        {
            if self.book.counts(Instant::now()).1 > 0 {
                self.stats.rounds_blocked.fetch_add(1, Relaxed);
            }
            return;
        }
        let layout = self.links.layout.borrow().clone();
        let ask = match self.members_to_ask(&layout) {
            Ok(ask) => ask,
            Err(down) => {
                if self.book.counts(Instant::now()).1 > 0 {
                    self.stats.rounds_blocked.fetch_add(1, Relaxed);
                    log::debug!("tombstone GC waits: member {down} is down or unknown");
                }
                return;
            }
        };
        let table = layout.table.clone();
        let me = self.cfg.me.clone();
        let due = self.book.due(Instant::now(), MAX_ENTRIES, |k| {
            table.primaries(table.partition_of(k)).first() == Some(&me)
        });
        if due.is_empty() {
            return;
        }
        self.stats.rounds.fetch_add(1, Relaxed);
        let id = self.next_id;
        self.next_id += 1;
        let asked = ask.iter().map(|(n, _)| n.clone()).chain([me.clone()]);
        self.round = Some((Round::new(id, due.clone(), asked), Instant::now()));
        if let Some(t) = &self.links.transport {
            for (node, addr) in &ask {
                let entries = due
                    .iter()
                    .map(|(k, h)| TombEntry {
                        key: serde_bytes::ByteBuf::from(k.clone()),
                        hash: *h,
                        must_hold: table.primaries(table.partition_of(k)).contains(node),
                    })
                    .collect();
                t.send_tomb(node, addr, TombMsg::Check { id, entries });
            }
        }
        // Our own check: we are a primary, so we must hold it too.
        let entries = due.into_iter().map(|(k, h)| (k, h, true)).collect();
        let fut = self.check(entries);
        let fut = actix::fut::wrap_future::<_, Self>(fut).map(move |checks, act, ctx| {
            // A marker we no longer hold exactly is forgotten (a later write replaced it,
            // or another round purged it).
            if let Some((round, _)) = act.round.as_ref().filter(|(r, _)| r.id == id) {
                for ((key, hash), c) in round.entries.iter().zip(&checks) {
                    if *c == Check::NotHeld {
                        act.book.forget(key, *hash);
                    }
                }
            }
            let ok: Vec<bool> = checks.iter().map(|c| *c == Check::Pass).collect();
            act.on_verdict(id, &act.cfg.me.clone(), &ok, ctx);
        });
        ctx.spawn(fut);
    }

    /// Checks entries (key, hash, must_hold) here: no hint pending, and held if asked.
    fn check(
        &self,
        entries: Vec<(Vec<u8>, Hash, bool)>,
    ) -> impl std::future::Future<Output = Vec<Check>> + 'static {
        let hints = self.links.hints.clone();
        let get = self.links.get.clone();
        async move {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _, _)| k.clone()).collect();
            let pending = match hints {
                // A hint actor that does not answer: assume hints are pending (keep).
                Some(h) => h
                    .send(HintsPending { keys })
                    .await
                    .unwrap_or_else(|_| vec![true; entries.len()]),
                None => vec![false; entries.len()],
            };
            let mut out = Vec::with_capacity(entries.len());
            for (i, (key, hash, must_hold)) in entries.into_iter().enumerate() {
                if pending.get(i).copied().unwrap_or(true) {
                    out.push(Check::HintPending);
                } else if must_hold && !holds(&get, key, hash).await {
                    out.push(Check::NotHeld);
                } else {
                    out.push(Check::Pass);
                }
            }
            out
        }
    }

    fn on_verdict(&mut self, id: u64, from: &NodeId, ok: &[bool], ctx: &mut Context<Self>) {
        let Some((round, _)) = &mut self.round else {
            return;
        };
        if round.id == id && round.verdict(from, ok) {
            self.finish_round(ctx);
        }
    }

    /// The round is decided: purge what every member passed, here and on the other
    /// primaries.
    ///
    /// Why this cannot bring deleted data back. An older value of the key could come
    /// back only from somewhere it still exists: a replica, a hint, or a message in
    /// flight. Every primary holds this exact marker (it checked its stored object's
    /// clock hash), and a marker's clock covers every version it deleted, so no primary
    /// holds an older value; read repair and anti-entropy only move what primaries hold.
    /// No member has a hint pending for the key, so no handoff can deliver an older
    /// value later. A message in flight is older than the grace period the marker was
    /// held for (peer frames and requests time out within seconds). And a purge deletes
    /// only the exact marker checked: a write that lands meanwhile changes the clock hash
    /// and is kept. A member we could not ask blocks the round, so its hints count too.
    fn finish_round(&mut self, ctx: &mut Context<Self>) {
        let Some((round, _)) = self.round.take() else {
            return;
        };
        let cleared = round.cleared();
        self.stats
            .kept
            .fetch_add((round.entries.len() - cleared.len()) as u64, Relaxed);
        let layout = self.links.layout.borrow().clone();
        let table = &layout.table;
        let mut per_node: BTreeMap<NodeId, Vec<TombEntry>> = BTreeMap::new();
        for (key, hash) in &cleared {
            for node in table.primaries(table.partition_of(key)) {
                if node != &self.cfg.me {
                    per_node.entry(node.clone()).or_default().push(TombEntry {
                        key: serde_bytes::ByteBuf::from(key.clone()),
                        hash: *hash,
                        must_hold: true,
                    });
                }
            }
        }
        if let Some(t) = &self.links.transport {
            for (node, entries) in per_node {
                if let Some(addr) = self.peer_addr(&node) {
                    t.send_tomb(&node, &addr, TombMsg::Purge { entries });
                }
            }
        }
        let entries = round.entries;
        let purge = self.links.purge.send(PurgeTombstones {
            entries: cleared.clone(),
        });
        let fut = actix::fut::wrap_future::<_, Self>(purge).map(move |res, act, _| {
            let done = res.unwrap_or_else(|_| vec![false; cleared.len()]);
            let purged: BTreeMap<&Vec<u8>, bool> =
                cleared.iter().map(|(k, _)| k).zip(done).collect();
            let flags: Vec<bool> = entries
                .iter()
                .map(|(k, _)| purged.get(k).copied().unwrap_or(false))
                .collect();
            act.stats
                .dropped
                .fetch_add(flags.iter().filter(|f| **f).count() as u64, Relaxed);
            act.book.round_ended(&entries, &flags, Instant::now());
            act.publish();
        });
        ctx.spawn(fut);
    }

    /// A peer's check: answer its verdict.
    fn on_check(
        &mut self,
        from: NodeId,
        id: u64,
        entries: Vec<TombEntry>,
        ctx: &mut Context<Self>,
    ) {
        let entries = entries
            .into_iter()
            .map(|e| (e.key.into_vec(), e.hash, e.must_hold))
            .collect();
        let fut = self.check(entries);
        let fut = actix::fut::wrap_future::<_, Self>(fut).map(move |checks, act, _| {
            let ok = checks.iter().map(|c| *c == Check::Pass).collect();
            if let (Some(t), Some(addr)) = (&act.links.transport, act.peer_addr(&from)) {
                t.send_tomb(&from, &addr, TombMsg::Verdict { id, ok });
            }
        });
        ctx.spawn(fut);
    }

    /// The owner cleared these markers: purge our copies.
    fn on_purge(&mut self, entries: Vec<TombEntry>, ctx: &mut Context<Self>) {
        let entries: Vec<(Vec<u8>, Hash)> = entries
            .into_iter()
            .map(|e| (e.key.into_vec(), e.hash))
            .collect();
        let purge = self.links.purge.send(PurgeTombstones {
            entries: entries.clone(),
        });
        let fut = actix::fut::wrap_future::<_, Self>(purge).map(move |res, act, _| {
            for ((key, hash), purged) in entries.iter().zip(res.unwrap_or_default()) {
                if purged {
                    act.stats.dropped.fetch_add(1, Relaxed);
                    act.book.forget(key, *hash);
                }
            }
            act.publish();
        });
        ctx.spawn(fut);
    }
}

/// Whether this replica's stored object for `key` is exactly the marker `hash`.
async fn holds(get: &Recipient<Get>, key: Vec<u8>, hash: Hash) -> bool {
    match get.send(Get { key }).await {
        Ok(Ok(Some(v))) => v
            .value
            .and_then(|b| Object::decode(&b).ok())
            .is_some_and(|o| o.is_tombstone_only() && clock_hash(&o) == hash),
        _ => false,
    }
}

/// A page of the start-up scan: the delete markers in it.
#[derive(Message)]
#[rtype(result = "()")]
struct Scanned(Vec<(Vec<u8>, Hash)>);

/// Pages through every stored object and reports the delete markers (start-up: markers
/// written before this process started). Each page waits for the actor to take the last.
async fn scan_markers(scan: Recipient<Scan>, to: Addr<TombstoneActor>) {
    let mut start = None;
    loop {
        let page = match scan
            .send(Scan {
                start,
                end: None,
                limit: 1000,
            })
            .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return log::warn!("tombstone GC: the start-up scan failed: {e}"),
            Err(_) => return,
        };
        let markers = page
            .entries
            .into_iter()
            .filter_map(|e| {
                let o = Object::decode(e.value.as_deref()?).ok()?;
                o.is_tombstone_only().then(|| (e.key, clock_hash(&o)))
            })
            .collect();
        if to.send(Scanned(markers)).await.is_err() {
            return;
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return,
        }
    }
}

impl Actor for TombstoneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        actix::spawn(scan_markers(self.links.scan.clone(), ctx.address()));
        ctx.run_interval(self.cfg.round_interval, |act, ctx| act.tick(ctx));
        // The held gauges every second, not only per round (a round may be 30 s apart).
        ctx.run_interval(Duration::from_secs(1), |act, _| act.publish());
    }
}

impl Handler<Scanned> for TombstoneActor {
    type Result = ();

    fn handle(&mut self, msg: Scanned, _: &mut Context<Self>) {
        let now = Instant::now();
        for (key, hash) in msg.0 {
            self.book.observe(&key, hash, now);
        }
    }
}

impl Handler<TombstoneWritten> for TombstoneActor {
    type Result = ();

    fn handle(&mut self, msg: TombstoneWritten, _: &mut Context<Self>) {
        self.book.observe(&msg.key, msg.hash, Instant::now());
    }
}

impl Handler<TombInbound> for TombstoneActor {
    type Result = ();

    fn handle(&mut self, msg: TombInbound, ctx: &mut Context<Self>) {
        if msg.msg.entries() > MAX_ENTRIES {
            log::warn!(
                "tombstone GC message from {} with {} entries (limit {MAX_ENTRIES}); ignored",
                msg.from,
                msg.msg.entries()
            );
            return;
        }
        match msg.msg {
            TombMsg::Check { id, entries } => self.on_check(msg.from, id, entries, ctx),
            TombMsg::Verdict { id, ok } => self.on_verdict(id, &msg.from, &ok, ctx),
            TombMsg::Purge { entries } => self.on_purge(entries, ctx),
        }
    }
}
