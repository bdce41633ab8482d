//! The holder's side of the transfers: answering a new owner's `Fetch` from a scan of
//! local data (a task per fetch, at most `MAX_SERVING` at once).

use super::*;

impl Handoff {
    pub(super) fn on_fetch(
        &mut self,
        from: NodeId,
        id: u64,
        partitions: Vec<u32>,
        after: Option<ByteBuf>,
        max_bytes: u32,
        ctx: &mut Context<Self>,
    ) {
        let q = self.book.current().table.partitions();
        if partitions.iter().any(|p| *p >= q) || self.serving >= MAX_SERVING {
            let reason = if self.serving >= MAX_SERVING {
                format!("{} is serving {MAX_SERVING} fetches already", self.cfg.me)
            } else {
                format!("a partition is out of range (cluster.partitions = {q})")
            };
            self.send(&from, TransferMsg::Refused { id, reason });
            return;
        }
        self.serving += 1;
        let (scan, bits) = (self.links.scan.clone(), self.bits());
        let keys_in = self.links.keys_in.clone().filter(|_| after.is_none());
        let parts = partitions.clone();
        let job = async move {
            let estimate = match keys_in {
                Some(k) => k.send(KeysIn(parts)).await.ok().flatten(),
                None => None,
            };
            let r = fetch::serve(
                scan,
                bits,
                partitions,
                after.map(|b| b.into_vec()),
                max_bytes,
            )
            .await;
            (r, estimate)
        };
        ctx.spawn(
            actix::fut::wrap_future(job).map(move |(r, estimate), act: &mut Self, _| {
                act.serving -= 1;
                let msg = match r {
                    Ok((objects, next)) => {
                        let bytes: usize = objects.iter().map(|(k, v)| k.len() + v.len()).sum();
                        act.stats.keys_sent.fetch_add(objects.len() as u64, Relaxed);
                        act.stats.bytes_sent.fetch_add(bytes as u64, Relaxed);
                        TransferMsg::Chunk {
                            id,
                            objects,
                            next,
                            estimate,
                        }
                    }
                    Err(reason) => TransferMsg::Refused { id, reason },
                };
                if !act.send(&from, msg) {
                    log::debug!("handoff: an answer to {from} could not be queued; it asks again");
                }
            }),
        );
    }
}
