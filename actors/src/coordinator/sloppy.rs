//! Sloppy quorum and hint delivery, the coordinator's side of hinted handoff
//! (`crate::hints` keeps the hints).
//!
//! - A coordinated write whose primary is down (membership says so, or the `Put` could not
//!   even be queued: `unavailable`) sends the object as a `DataReq::Hint` to the next
//!   fallback of the key's partition that is up and not asked yet; that fallback's
//!   `Stored` counts toward `w` (see `PutTracker::reroute`).
//! - When the put ends, every primary that holds neither the write nor an acknowledged hint
//!   (no fallback was left, the fallback failed, or the primary failed or timed out) gets a
//!   hint kept by this node, which does not count toward `w`.
//! - As a fallback, this node answers `DataReq::Hint` once the HintedHandoff actor has the
//!   hint on disk.
//! - [`DeliverHints`] from the HintedHandoff actor: a batch of replica `Put`s to a primary
//!   that is back, answered once all were stored.

use super::requests::Request;
use super::*;
use crate::hints::StoreHint;
use troupe_protocol::data::DataReq;

/// One hint delivery batch in flight.
pub(crate) struct HandoffState {
    pending: usize,
    /// The first failure, if any.
    failed: Option<String>,
    reply: Option<oneshot::Sender<Result<(), String>>>,
    pub(super) rpcs: Vec<u64>,
}

impl Coordinator {
    /// Lets this coordinator use hinted handoff: hints go to (and are delivered by) the
    /// HintedHandoff actor behind `hints`. Without it, writes use primaries only.
    pub fn with_hints(mut self, hints: Recipient<StoreHint>) -> Coordinator {
        self.hints = Some(hints);
        self
    }

    /// The fallbacks of `partition` that may take a hint now (up, not this node), in
    /// preference order; none when hinted handoff is off.
    pub(super) fn usable_fallbacks(&self, p: &Placement, partition: u32) -> Vec<NodeId> {
        if self.hints.is_none() {
            return Vec::new();
        }
        p.table
            .fallbacks(partition)
            .filter(|id| **id != self.cfg.me && p.is_up(id))
            .cloned()
            .collect()
    }

    /// Sends put `req`'s object for `primary` (not asked: `why`) as a hint to the next
    /// usable fallback. `false` if none is left: the caller records the primary's failure
    /// (and the put's end keeps a hint here, see `finish_put`).
    pub(super) fn hint_instead(
        &mut self,
        req: u64,
        primary: &NodeId,
        why: &str,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(Request::Put(st)) = self.requests.get_mut(&req) else {
            return false;
        };
        // Only a primary is stood in for (a fallback that fails is not replaced in turn:
        // the primary then gets this node's hint when the put ends).
        if !st.primaries().contains(primary) {
            return false;
        }
        let Some(tracker) = st.tracker.as_mut() else {
            return false;
        };
        while let Some(fallback) = st.fallbacks.pop_front() {
            if tracker.reroute(&primary.0, &fallback.0, why) {
                let hint = DataReq::Hint {
                    primary: primary.0.clone(),
                    key: st.key.clone(),
                    object: st.object.clone(),
                };
                self.rpc(req, &fallback, hint, ctx);
                return true;
            }
        }
        false
    }

    /// Forgets put `req`, keeping a hint here for each primary that holds neither the write
    /// nor an acknowledged hint.
    ///
    /// These hints do not count toward `w`, and the put may already have been answered
    /// (`timeout` or acknowledged): this node's own durable write was the put's first
    /// acknowledgement, and a hint on the same disk is not a second copy. Counting it would
    /// let `w = 2` succeed with the value on one node only, which one disk failure loses.
    /// The hint only makes the primary catch up sooner than anti-entropy would.
    pub(super) fn finish_put(&mut self, req: u64) {
        let Some(Request::Put(st)) = self.forget(req) else {
            return;
        };
        let (Some(hints), Some(tracker)) = (&self.hints, &st.tracker) else {
            return;
        };
        for primary in tracker.unacknowledged() {
            // Not awaited: the put is done; a hint that cannot be kept is counted dropped.
            hints.do_send(StoreHint {
                primary,
                key: st.key.clone(),
                object: st.object.clone(),
            });
        }
    }

    /// Another coordinator asks this node, a fallback, to keep a hint.
    pub(super) fn on_hint_request(
        &mut self,
        from: NodeId,
        id: u64,
        msg: StoreHint,
        ctx: &mut Context<Self>,
    ) {
        let fail = |msg: String| DataResp::Failed {
            code: ErrorCode::Unavailable.as_str().to_string(),
            msg,
        };
        let Some(hints) = self.hints.clone() else {
            let resp = fail(format!(
                "{} keeps no hints (handoff.enabled = false)",
                self.cfg.me
            ));
            return self.send(&from, DataMsg::Resp { id, resp }, ctx);
        };
        let me = self.cfg.me.clone();
        super::local::finish_on_actor(ctx, hints.send(msg), move |act, res, ctx| {
            let resp = match res {
                Ok(Ok(())) => DataResp::Stored,
                Ok(Err(e)) => fail(format!("{me}: {e}")),
                Err(e) => fail(format!("{me}: the hint store is not running ({e})")),
            };
            act.send(&from, DataMsg::Resp { id, resp }, ctx);
        });
    }

    /// An answer to one `Put` of a delivery batch.
    pub(super) fn handoff_answer(&mut self, req: u64, node: &NodeId, resp: DataResp) {
        let Some(Request::Handoff(st)) = self.requests.get_mut(&req) else {
            return;
        };
        st.pending -= 1;
        if let DataResp::Failed { code, msg } = resp {
            st.failed
                .get_or_insert_with(|| format!("{node}: {code}: {msg}"));
        }
        if st.pending == 0 {
            if let Some(Request::Handoff(mut st)) = self.forget(req) {
                if let Some(tx) = st.reply.take() {
                    let _ = tx.send(st.failed.map_or(Ok(()), Err));
                }
            }
        }
    }

    /// A delivery batch's deadline passed: it failed (the hints stay and are tried again).
    pub(super) fn handoff_deadline(&mut self, req: u64) {
        if let Some(Request::Handoff(mut st)) = self.forget(req) {
            if let Some(tx) = st.reply.take() {
                let _ = tx.send(Err(format!(
                    "{} of the batch not acknowledged within {:?}",
                    st.pending, self.cfg.request_timeout
                )));
            }
        }
    }
}

impl Handler<DeliverHints> for Coordinator {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: DeliverHints, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        if msg.hints.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        // Client requests first: hints wait for a quieter moment (the batch is retried).
        if self.inflight() >= self.cfg.max_inflight / 2 {
            let e = format!("{} requests in flight; hints wait", self.inflight());
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        let req = self.next_id();
        self.requests.insert(
            req,
            Request::Handoff(HandoffState {
                pending: msg.hints.len(),
                failed: None,
                reply: Some(tx),
                rpcs: Vec::new(),
            }),
        );
        for (key, object) in msg.hints {
            self.rpc(req, &msg.to, DataReq::Put { key, object }, ctx);
        }
        self.arm_deadline(req, self.cfg.request_timeout, ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the coordinator stopped".into()))
        })
    }
}
