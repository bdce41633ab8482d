//! After a transition: what this node gave up, and deleting it (book rule 7), only once
//! every current owner was compared with this node's copy.

use super::*;

impl Handoff {
    /// The stable layout moved on from `old` (promoted here or by a peer): the partitions
    /// this node gave up are deleted `drop_delay` from now.
    pub(super) fn promoted(&mut self, old: &Layout) {
        let dropped = self.book.dropped_since(old);
        log::info!(
            "handoff: layout {} is stable: every member holds what it owns{}",
            self.book.stable().version,
            if dropped.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} partition(s) no longer owned here are deleted in {:?}",
                    dropped.len(),
                    self.cfg.drop_delay
                )
            }
        );
        for p in dropped {
            if !self.to_drop.contains(&p) {
                self.to_drop.push(p);
            }
        }
        if !self.to_drop.is_empty() {
            self.drop_after = Some(Instant::now() + self.cfg.drop_delay);
        }
    }

    /// Rule 7, `drop_delay` after promotion: delete the keys of partitions owned no more.
    pub(super) fn drop_partitions(&mut self, ctx: &mut Context<Self>) {
        if self.dropping || self.to_drop.is_empty() || self.book.transition().is_some() {
            return;
        }
        if self.drop_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        // Owned again meanwhile (a later layout): kept.
        let (stable, cur) = (self.book.stable().clone(), self.book.current().clone());
        let me = self.cfg.me.clone();
        self.to_drop.retain(|p| {
            !stable.table.primaries(*p).contains(&me) && !cur.table.primaries(*p).contains(&me)
        });
        if self.to_drop.is_empty() {
            return;
        }
        self.dropping = true;
        let parts = self.to_drop.clone();
        let (scan, write, bits) = (
            self.links.scan.clone(),
            self.links.write.clone(),
            self.bits(),
        );
        // Before anything is deleted, this node's copy of each partition is compared with
        // every current owner's by an anti-entropy exchange, and what an owner lacks is
        // joined there: a new owner fetched from one holder, and this one may hold a write
        // that holder missed.
        let mut plan: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for p in &parts {
            for owner in cur.table.primaries(*p) {
                plan.entry(owner.clone()).or_default().push(*p);
            }
        }
        let exchange = self.links.exchange.clone();
        let trees = self.links.trees.clone();
        let wanted = super::fetch::PartitionSet::new(&parts, bits);
        let job = async move {
            if let Some(ae) = exchange {
                let plan = plan.into_iter().collect();
                match ae.send(crate::antientropy::ExchangeWith { plan }).await {
                    Ok(Ok(r)) => log::info!(
                        "handoff: before deleting {} partition(s): {} key(s) compared with their owners, {} repaired",
                        parts.len(),
                        r.keys_compared,
                        r.keys_repaired
                    ),
                    Ok(Err(e)) => return Err(format!("the exchange with the new owners did not complete: {e}")),
                    Err(e) => return Err(format!("anti-entropy actor: {e}")),
                }
            }
            let mut start = None;
            let mut deleted = 0u64;
            loop {
                let page = scan
                    .send(Scan {
                        start: start.take(),
                        end: None,
                        limit: 1024,
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let mut gone = Vec::new();
                for e in page.entries {
                    if wanted.contains(&e.key) {
                        write
                            .send(Write {
                                key: e.key.clone(),
                                value: None,
                            })
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                        gone.push(crate::coordinator::LocalWrite::new(e.key, None));
                        deleted += 1;
                    }
                }
                // Anti-entropy's trees forget them too (else a later exchange would think
                // this node still holds them).
                if let Some(t) = &trees {
                    if !gone.is_empty() {
                        t.do_send(crate::coordinator::LocalWrites(gone));
                    }
                }
                match page.next {
                    Some(n) => start = Some(n),
                    None => return Ok::<_, String>((parts, deleted)),
                }
            }
        };
        let h = ctx.spawn(actix::fut::wrap_future(job).map(|res, act: &mut Self, ctx| {
            act.dropping = false;
            act.drop_task = None;
            match res {
                Ok((parts, deleted)) => {
                    log::info!(
                        "handoff: deleted {deleted} key(s) of {} partition(s) this node no longer owns",
                        parts.len()
                    );
                    act.stats
                        .partitions_dropped
                        .fetch_add(parts.len() as u64, Relaxed);
                    act.stats.keys_dropped.fetch_add(deleted, Relaxed);
                    act.to_drop.retain(|p| !parts.contains(p));
                    act.dirty = true;
                    act.save(ctx);
                }
                Err(e) => {
                    log::warn!("handoff: deleting partitions no longer owned failed: {e}; retried in 30 s");
                    act.drop_after = Some(Instant::now() + Duration::from_secs(30));
                }
            }
        }));
        self.drop_task = Some(h);
    }
}
