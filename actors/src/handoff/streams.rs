//! The new owner's side of the transfers: the plan (which partition sets, from which
//! holder, how many streams at once), starting streams, and what their tasks report
//! (`Ask` for a fetch, `Moved` cursors, `StreamEnded`). The tasks themselves are in
//! `fetch`.

use super::fetch::{self, lock};
use super::*;

/// A stream's progress, shared with its task.
#[derive(Debug)]
pub struct StreamProgress {
    pub keys: u64,
    pub bytes: u64,
    pub estimate: Option<u64>,
    pub last_progress: Instant,
}

pub(super) struct Stream {
    pub(super) partitions: Vec<u32>,
    /// Started from a saved cursor (after a restart or another holder's stall).
    pub(super) resumed: bool,
    pub(super) started: Instant,
    pub(super) progress: Arc<Mutex<StreamProgress>>,
    pub(super) task: SpawnHandle,
}

/// A stream's request to its source; the chunk (objects, next, estimate) or why none.
pub(super) type ChunkAnswer =
    Result<(Vec<(ByteBuf, ByteBuf)>, Option<ByteBuf>, Option<u64>), String>;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Ask {
    pub(super) to: NodeId,
    pub(super) msg: TransferMsg,
    pub(super) reply: oneshot::Sender<ChunkAnswer>,
}

/// A stream's cursor moved (everything up to `after` is durable here).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Moved {
    pub(super) source: NodeId,
    pub(super) after: Option<Vec<u8>>,
}

/// A stream's task ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StreamEnded {
    pub(super) source: NodeId,
    pub(super) result: Result<(), String>,
}

impl Handoff {
    /// Rule 3: start streams for what is still needed, cut stalled ones, and mark this
    /// node synced once nothing is left.
    pub(super) fn fetch(&mut self, ctx: &mut Context<Self>) {
        let needs: Vec<book::Need> = self
            .book
            .needs()
            .into_iter()
            .filter(|n| !self.done.contains(&n.partition))
            .collect();
        if needs.is_empty() && self.streams.is_empty() {
            if self.book.mark_synced() {
                log::info!(
                    "handoff: this node holds everything it owns in layout {}",
                    self.book.current().version
                );
                self.changed(ctx);
            }
            return;
        }
        // Stalled streams are cut; their partitions are planned again below.
        let stalled: Vec<NodeId> = self
            .streams
            .iter()
            .filter(|(_, s)| lock(&s.progress).last_progress.elapsed() >= self.cfg.stall_timeout)
            .map(|(src, _)| src.clone())
            .collect();
        for src in stalled {
            if let Some(s) = self.streams.remove(&src) {
                log::warn!(
                    "handoff: the stream from {src} made no progress for {:?} ({} partition(s)); restarting it from its cursor on another holder if there is one",
                    self.cfg.stall_timeout,
                    s.partitions.len(),
                );
                ctx.cancel_future(s.task);
                self.stats.streams_stalled.fetch_add(1, Relaxed);
                self.avoid.insert(src);
                self.queue.push(s.partitions);
            }
        }
        let limit = self.cfg.transfer_limit.max(1);
        if self.streams.len() >= limit {
            return;
        }
        // The plan is made once (per layout, and again for what a failed stream left):
        // each source's partitions stay one stream, so a source scans its data once.
        let planned: BTreeSet<u32> = self
            .streams
            .values()
            .map(|s| &s.partitions)
            .chain(self.queue.iter())
            .flatten()
            .copied()
            .collect();
        let unplanned: Vec<book::Need> = needs
            .iter()
            .filter(|n| !planned.contains(&n.partition))
            .cloned()
            .collect();
        if !unplanned.is_empty() {
            self.plan(&unplanned);
        }
        // Start queued streams whose source is up and not streaming already.
        let mut i = 0;
        while self.streams.len() < limit && i < self.queue.len() {
            let parts = &self.queue[i];
            if !parts
                .iter()
                .any(|p| needs.iter().any(|n| n.partition == *p))
            {
                // Nothing of it is needed any more (the stable layout moved on by gossip).
                let parts = self.queue.remove(i);
                self.cursors.remove(&parts);
                continue;
            }
            let source = self.source_for(parts, &needs);
            match source {
                Some(src) => {
                    let parts = self.queue.remove(i);
                    self.start_stream(src, parts, ctx);
                }
                None if !self.any_holder_up(parts, &needs)
                    && self.some_holder_up(parts, &needs) =>
                {
                    // No up node holds all of the set (its source went down) but some hold
                    // part of it: split it over those; its partitions start over. While no
                    // holder of any of them is up (a restarted node that has not heard of
                    // its peers yet), the set and its cursor wait whole.
                    let parts = self.queue.remove(i);
                    self.cursors.remove(&parts);
                    let split: Vec<book::Need> = needs
                        .iter()
                        .filter(|n| parts.contains(&n.partition))
                        .cloned()
                        .collect();
                    let up = |id: &NodeId| self.is_up(id);
                    // Partitions no up node holds stay unplanned: a later tick plans them.
                    let (plan, _stuck) = assign(&split, up, &self.avoid);
                    self.queue.extend(plan.into_iter().map(|(_, p)| p));
                    // The split sets are further on in the queue: this loop reaches them.
                }
                None => i += 1,
            }
        }
    }

    /// Whether some up node holds every partition of `parts` (busy or not).
    pub(super) fn any_holder_up(&self, parts: &[u32], needs: &[book::Need]) -> bool {
        let Some(first) = parts.first() else {
            return false;
        };
        needs
            .iter()
            .find(|n| n.partition == *first)
            .is_some_and(|n| {
                n.sources.iter().any(|s| {
                    self.is_up(s)
                        && parts.iter().all(|p| {
                            needs
                                .iter()
                                .find(|m| m.partition == *p)
                                .is_some_and(|m| m.sources.contains(s))
                        })
                })
            })
    }

    /// Whether some up node holds at least one partition of `parts`.
    pub(super) fn some_holder_up(&self, parts: &[u32], needs: &[book::Need]) -> bool {
        needs
            .iter()
            .filter(|n| parts.contains(&n.partition))
            .any(|n| n.sources.iter().any(|s| self.is_up(s)))
    }

    /// Plans `needs` into partition sets, one per source (`book::assign`); a saved cursor's
    /// partition set is kept whole first, so a restarted node resumes where it was.
    pub(super) fn plan(&mut self, needs: &[book::Need]) {
        let wanted: BTreeSet<u32> = needs.iter().map(|n| n.partition).collect();
        let mut taken = BTreeSet::new();
        for parts in self.cursors.keys() {
            if parts
                .iter()
                .all(|p| wanted.contains(p) && !taken.contains(p))
            {
                taken.extend(parts.iter().copied());
                self.queue.push(parts.clone());
            }
        }
        let rest: Vec<book::Need> = needs
            .iter()
            .filter(|n| !taken.contains(&n.partition))
            .cloned()
            .collect();
        let up = |id: &NodeId| self.is_up(id);
        let (plan, stuck) = assign(&rest, up, &self.avoid);
        self.queue.extend(plan.into_iter().map(|(_, parts)| parts));
        if !stuck.is_empty() {
            // No holder is up for these yet: planned on a later tick, and said (at most
            // once a minute): the ring stays in transition until one is back.
            let now = Instant::now();
            if self
                .stuck_logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
            {
                self.stuck_logged = Some(now);
                log::warn!(
                    "handoff: no holder of {} partition(s) is up (e.g. partition {}); they wait for one (or `troupe admin remove` of the dead ones)",
                    stuck.len(),
                    stuck[0]
                );
            }
        }
    }

    /// The source for a planned partition set: a holder of every one of them that is up,
    /// not to be avoided if possible, the least busy first.
    pub(super) fn source_for(&self, parts: &[u32], needs: &[book::Need]) -> Option<NodeId> {
        let mut common: Option<BTreeSet<NodeId>> = None;
        for p in parts {
            let srcs: BTreeSet<NodeId> = needs
                .iter()
                .find(|n| n.partition == *p)
                .map(|n| n.sources.iter().cloned().collect())
                .unwrap_or_default();
            common = Some(match common {
                None => srcs,
                Some(c) => c.intersection(&srcs).cloned().collect(),
            });
        }
        let common: Vec<NodeId> = common
            .unwrap_or_default()
            .into_iter()
            .filter(|s| self.is_up(s) && !self.streams.contains_key(s))
            .collect();
        common
            .iter()
            .find(|s| !self.avoid.contains(*s))
            .or(common.first())
            .cloned()
    }

    pub(super) fn start_stream(
        &mut self,
        source: NodeId,
        partitions: Vec<u32>,
        ctx: &mut Context<Self>,
    ) {
        // A cursor of a stream that covered exactly these partitions resumes it; any
        // holder orders keys alike, so it is valid at another source too.
        let after = self.cursors.get(&partitions).cloned().flatten();
        self.cursors.insert(partitions.clone(), after.clone());
        let progress = Arc::new(Mutex::new(StreamProgress {
            keys: 0,
            bytes: 0,
            estimate: None,
            last_progress: Instant::now(),
        }));
        let limit = self.cfg.transfer_limit.max(1) as u64;
        let sctx = fetch::StreamCtx {
            actor: ctx.address(),
            join: self.links.join.clone(),
            source: source.clone(),
            partitions: partitions.clone(),
            chunk_bytes: self.cfg.chunk_bytes,
            progress: progress.clone(),
            max_bytes_per_sec: self.cfg.max_bytes_per_sec / limit,
        };
        log::info!(
            "handoff: fetching {} partition(s) from {source}{}",
            partitions.len(),
            if after.is_some() {
                " (resuming from the saved cursor)"
            } else {
                ""
            }
        );
        let src = source.clone();
        let task = ctx.spawn(
            actix::fut::wrap_future(fetch::run(sctx, after.clone())).map(
                move |result, _: &mut Self, ctx: &mut Context<Self>| {
                    ctx.notify(StreamEnded {
                        source: src,
                        result,
                    })
                },
            ),
        );
        self.streams.insert(
            source,
            Stream {
                partitions,
                resumed: after.is_some(),
                started: Instant::now(),
                progress,
                task,
            },
        );
    }
}

impl Handler<Ask> for Handoff {
    type Result = ();

    fn handle(&mut self, ask: Ask, _: &mut Context<Self>) {
        let id = self.next_id;
        self.next_id += 1;
        let msg = match ask.msg {
            TransferMsg::Fetch {
                partitions,
                after,
                max_bytes,
                ..
            } => TransferMsg::Fetch {
                id,
                partitions,
                after,
                max_bytes,
            },
            other => other,
        };
        if !self.send(&ask.to, msg) {
            let _ = ask.reply.send(Err(format!(
                "cannot queue to {} (unknown address, unreachable or its queue is full)",
                ask.to
            )));
            return;
        }
        self.pending.insert(id, (Instant::now(), ask.reply));
    }
}

impl Handler<Moved> for Handoff {
    type Result = ();

    fn handle(&mut self, m: Moved, ctx: &mut Context<Self>) {
        let Some(s) = self.streams.get(&m.source) else {
            return;
        };
        let parts = s.partitions.clone();
        self.cursors.insert(parts, m.after);
        self.dirty = true;
        self.save(ctx);
    }
}

impl Handler<StreamEnded> for Handoff {
    type Result = ();

    fn handle(&mut self, m: StreamEnded, ctx: &mut Context<Self>) {
        let Some(s) = self.streams.remove(&m.source) else {
            return;
        };
        let p = lock(&s.progress);
        self.stats.keys_received.fetch_add(p.keys, Relaxed);
        self.stats.bytes_received.fetch_add(p.bytes, Relaxed);
        drop(p);
        match m.result {
            Ok(()) => {
                self.stats.streams_completed.fetch_add(1, Relaxed);
                log::info!(
                    "handoff: {} partition(s) from {} complete",
                    s.partitions.len(),
                    m.source
                );
                self.cursors.remove(&s.partitions);
                self.done.extend(s.partitions);
            }
            Err(e) => {
                self.stats.streams_failed.fetch_add(1, Relaxed);
                log::warn!(
                    "handoff: the stream from {} failed: {e}; retrying from its cursor",
                    m.source
                );
                self.avoid.insert(m.source);
                self.queue.push(s.partitions);
            }
        }
        self.dirty = true;
        self.save(ctx);
    }
}
