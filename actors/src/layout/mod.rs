//! The layout actor: keeps this node's ring layout (the partition table the nodes agree on),
//! persists it, publishes it to the coordinator and gossips it with peers.
//!
//! Owns the [`book::LayoutBook`] (the pure rules: when to compute the next layout, which of
//! two layouts to keep) and wires it to:
//! - membership's ring view (a `watch` receiver: joins, and members that *left*);
//! - the peer transport: [`LayoutMsg`]s on the bulk lane. Every `gossip_interval` it sends
//!   its (version, digest) to one random up member; the side with the older layout gets the
//!   newer one. A node that takes or computes a new layout pushes it at once to up to
//!   `push_fanout` random up members, which push it on when it is new to them;
//! - the data directory: `LAYOUT` ([`store`]), written on a blocking thread after every
//!   change, one write at a time, the newest layout last;
//! - the coordinator: a `watch` channel of the current [`Layout`].
//!
//! Invariants:
//! - What is published only ever gets newer (the book's order), and every layout published
//!   is written to disk afterwards (a crash in between is repaired by gossip: a node that
//!   restarts with an older layout takes the newer one from any peer that has it).
//! - Inbound messages are `try_send`ed by the peer reader into a bounded mailbox and dropped
//!   when it is full: gossip repeats, so a dropped message costs one round.

pub mod book;
pub mod store;

use crate::membership::actor::RingMembers;
use crate::peer::{LayoutInbound, PeerTransport};
use crate::ring::{Layout, PartitionConfig};
use actix::prelude::*;
use book::{DigestAnswer, LayoutBook, MembersView, Received};
use rand::seq::IteratorRandom;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use troupe_protocol::layout::LayoutMsg;
use troupe_protocol::swim::{NodeId, Status};

/// Settings.
#[derive(Debug, Clone)]
pub struct LayoutConfig {
    pub me: NodeId,
    pub partitions: PartitionConfig,
    pub data_dir: PathBuf,
    /// How often a digest goes to one random up member.
    pub gossip_interval: Duration,
    /// Up members a new layout is pushed to at once.
    pub push_fanout: usize,
    pub mailbox: usize,
}

/// The current layout's receiver, for the coordinator.
#[derive(Message)]
#[rtype(result = "watch::Receiver<Layout>")]
pub struct WatchLayout;

pub struct LayoutActor {
    cfg: LayoutConfig,
    book: LayoutBook,
    transport: Option<PeerTransport>,
    ring: watch::Receiver<RingMembers>,
    tx: watch::Sender<Layout>,
    /// A write of `LAYOUT` is running; `dirty`: the layout changed since it started.
    saving: bool,
    dirty: bool,
    /// Refused layouts are logged at most once a minute (gossip repeats them every round).
    last_refusal_log: Option<Instant>,
}

impl LayoutActor {
    /// `initial` is what the data directory held, or a fresh one-member layout.
    pub fn new(
        cfg: LayoutConfig,
        initial: Layout,
        transport: Option<PeerTransport>,
        ring: watch::Receiver<RingMembers>,
    ) -> LayoutActor {
        let (tx, _) = watch::channel(initial.clone());
        LayoutActor {
            book: LayoutBook::new(cfg.me.clone(), cfg.partitions, initial),
            cfg,
            transport,
            ring,
            tx,
            saving: false,
            dirty: false,
            last_refusal_log: None,
        }
    }

    fn view(&mut self) -> MembersView {
        let v = self.ring.borrow_and_update();
        MembersView {
            members: v.members.iter().map(|m| m.id.clone()).collect(),
            departed: v.departed.clone(),
        }
    }

    /// Up members other than this node, with their peer addresses.
    fn up_peers(&self) -> Vec<(NodeId, String)> {
        self.ring
            .borrow()
            .members
            .iter()
            .filter(|m| m.id != self.cfg.me && matches!(m.status, Status::Alive | Status::Suspect))
            .map(|m| (m.id.clone(), m.peer_addr.clone()))
            .collect()
    }

    fn send(&self, to: &NodeId, msg: LayoutMsg) {
        let Some(t) = &self.transport else { return };
        let addr = self
            .ring
            .borrow()
            .members
            .iter()
            .find(|m| m.id == *to)
            .map(|m| m.peer_addr.clone());
        match addr {
            Some(addr) => t.send_layout(to, &addr, msg),
            None => log::debug!("layout: no address for {to} yet; a later round will reach it"),
        }
    }

    /// A new layout is held: publish it, write it, push it.
    fn took(&mut self, old: &Layout, ctx: &mut Context<Self>) {
        let new = self.book.current().clone();
        log::info!(
            "ring layout {} -> {}: {} member(s), {} of {} partition replicas moved, digest {}",
            old.version,
            new.version,
            new.table.members().len(),
            old.table.replica_moves(&new.table),
            new.table.partitions() as usize * new.table.effective_n(),
            &new.table.digest_hex()[..16]
        );
        self.tx.send_replace(new.clone());
        self.dirty = true;
        self.save(ctx);
        let peers = self.up_peers();
        let wire = new.to_wire();
        for (id, _) in peers
            .iter()
            .choose_multiple(&mut rand::rng(), self.cfg.push_fanout)
        {
            self.send(id, LayoutMsg::Full(wire.clone()));
        }
    }

    fn save(&mut self, ctx: &mut Context<Self>) {
        if self.saving || !self.dirty {
            return;
        }
        self.saving = true;
        self.dirty = false;
        let layout = self.book.current().clone();
        let dir = self.cfg.data_dir.clone();
        let write = tokio::task::spawn_blocking(move || store::save(&dir, &layout));
        ctx.spawn(actix::fut::wrap_future(write).map(
            move |res, act: &mut Self, ctx| {
                act.saving = false;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log::error!(
                        "layout: cannot write {}/{}: {e}; the node keeps the layout in memory and takes it back from its peers after a restart",
                        act.cfg.data_dir.display(),
                        store::FILE
                    ),
                    Err(e) => log::error!("layout: the write task failed: {e}"),
                }
                act.save(ctx);
            },
        ));
    }

    fn on_view_changed(&mut self, ctx: &mut Context<Self>) {
        let view = self.view();
        let old = self.book.current().clone();
        if self.book.on_view(&view).is_some() {
            self.took(&old, ctx);
        } else if self.book.is_standalone() && view.members.len() > 1 {
            // A fresh node takes a peer's layout before adding anyone (the book's rule
            // 5): announce ours now, and the peers answer with theirs or ask for ours.
            self.announce(self.cfg.push_fanout);
        }
    }

    /// Sends our (version, digest) to `fanout` random up members.
    fn announce(&self, fanout: usize) {
        let peers = self.up_peers();
        let cur = self.book.current();
        for (id, _) in peers.iter().choose_multiple(&mut rand::rng(), fanout) {
            let msg = LayoutMsg::Digest {
                version: cur.version,
                digest: cur.table.digest(),
            };
            self.send(id, msg);
        }
    }

    fn ours(&self) -> LayoutMsg {
        LayoutMsg::Full(self.book.current().to_wire())
    }
}

impl Actor for LayoutActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        // Membership's view: a watch coalesces changes, so this stream holds at most one.
        let rx = self.ring.clone();
        let changes = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        });
        ctx.add_stream(changes);
        ctx.run_interval(self.cfg.gossip_interval, |act, _| act.announce(1));
        // The view may already differ from the stored layout (seeds, this node's address).
        self.on_view_changed(ctx);
    }
}

impl StreamHandler<()> for LayoutActor {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        self.on_view_changed(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Membership stopped: the node is shutting down. Keep serving what we hold.
    }
}

/// `admin leave`: hold and push the layout without this node (the Handoff actor then
/// hands its data off). The new layout's version, or why not.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct LeaveRing;

impl Handler<LeaveRing> for LayoutActor {
    type Result = Result<u64, String>;

    fn handle(&mut self, _: LeaveRing, ctx: &mut Context<Self>) -> Self::Result {
        let old = self.book.current().clone();
        let next = self.book.leave()?;
        self.took(&old, ctx);
        Ok(next.version)
    }
}

impl Handler<WatchLayout> for LayoutActor {
    type Result = MessageResult<WatchLayout>;

    fn handle(&mut self, _: WatchLayout, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.tx.subscribe())
    }
}

impl Handler<LayoutInbound> for LayoutActor {
    type Result = ();

    fn handle(&mut self, msg: LayoutInbound, ctx: &mut Context<Self>) {
        match msg.msg {
            LayoutMsg::Digest { version, digest } => match self.book.on_digest(version, &digest) {
                DigestAnswer::SendOurs => self.send(&msg.from, self.ours()),
                DigestAnswer::Pull => self.send(&msg.from, LayoutMsg::Pull),
                DigestAnswer::Same => {}
            },
            LayoutMsg::Pull => self.send(&msg.from, self.ours()),
            LayoutMsg::Full(wire) => {
                let layout = match Layout::from_wire(wire) {
                    Ok(l) => l,
                    Err(e) => {
                        log::warn!("layout from {}: refused: {e}", msg.from);
                        return;
                    }
                };
                let view = self.view();
                let old = self.book.current().clone();
                match self.book.on_received(layout, &view) {
                    Received::Adopted { .. } => self.took(&old, ctx),
                    Received::Older => self.send(&msg.from, self.ours()),
                    Received::Same => {}
                    Received::Refused(why) => {
                        let now = Instant::now();
                        if self
                            .last_refusal_log
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                        {
                            self.last_refusal_log = Some(now);
                            log::error!("layout from {}: refused: {why}", msg.from);
                        }
                    }
                }
            }
        }
    }
}
