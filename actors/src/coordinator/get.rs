//! The get flow: ask every primary, answer at `r` with the join, then read repair the
//! replicas that answered older versions (see ARCHITECTURE.md, "Get — a quorum read").

use super::local::{show_key, Apply, LocalDone, LocalOp};
use super::quorum::{GetOutcome, GetTracker, Progress};
use super::requests::{decode_context, get_resp, GetState, Request};
use super::*;
use troupe_protocol::data::DataReq;
use troupe_protocol::object::Object;

/// What a get whose tracker decided `outcome` answers (`n`: the replicas it asked).
fn get_result(
    outcome: GetOutcome<Object>,
    key: &[u8],
    as_type: Option<troupe_protocol::crdt::TypeKind>,
    n: usize,
) -> Result<GetReply, ClientError> {
    match outcome {
        GetOutcome::Found(None) => Ok(GetReply {
            values: Vec::new(),
            context: Vec::new(),
            typed: None,
        }),
        GetOutcome::Found(Some(o)) => read_reply(key, &o, as_type),
        GetOutcome::Unavailable(f) => Err(ClientError::new(
            ErrorCode::Unavailable,
            f.describe(n),
        )),
        GetOutcome::NotCaughtUp(f) => Err(ClientError::new(
            ErrorCode::Unavailable,
            format!(
                "no replica that answered holds a version covering the `after` context yet ({}); retry later",
                f.describe(n)
            ),
        )),
    }
}

/// What a read of `o` answers: a plain get's live values (refused on a typed key), or a
/// typed read's joined state (refused on a key of plain values or another type).
fn read_reply(
    key: &[u8],
    o: &Object,
    as_type: Option<troupe_protocol::crdt::TypeKind>,
) -> Result<GetReply, ClientError> {
    let typed = match as_type {
        Some(t) => super::next::typed_state(key, o, t)?,
        None => {
            if let Some(k) = super::next::kind_of(key, o)? {
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "key {} holds a {k}, not a plain value: use {}",
                        show_key(key),
                        k.ops()
                    ),
                ));
            }
            None
        }
    };
    Ok(GetReply {
        values: o
            .siblings()
            .filter_map(|(_, v)| v.as_data())
            .map(<[u8]>::to_vec)
            .collect(),
        context: o.encoded_context(),
        typed,
    })
}

impl Coordinator {
    pub(super) fn start_get(
        &mut self,
        msg: ClientGet,
        reply: ReplyTo<GetReply>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(e) = self.overloaded() {
            return self.reply(reply, Err(e), |_| DataResp::Stored, ctx);
        }
        let p = self.placement();
        let n = p.read_n();
        let setup = self
            .quorum(msg.r, self.cfg.r, n, "r")
            .and_then(|r| Ok((r, decode_context(msg.after.as_deref(), "after")?)));
        let (r, after) = match setup {
            Ok(v) => v,
            Err(e) => return self.reply(reply, Err(e), get_resp, ctx),
        };
        // Borrowed from the placement (its own `Arc`): no copy of the list per get. While
        // the ring is in transition these are the stable layout's primaries.
        let primaries = p.read_primaries(&msg.key);
        // This node the only replica, and memory answers: the get is over before it would
        // be registered (no other answer to wait for, no deadline, nothing to repair). The
        // tracker's rule still decides the outcome, as for any get.
        if let [only] = primaries {
            if *only == self.cfg.me {
                if let Some(ans) = self.read_memory(&msg.key) {
                    let ans = ans.map(|o| (!o.is_empty()).then_some(o)).map_err(|e| e.msg);
                    let after = after.filter(|a| !a.is_empty());
                    let outcome = GetTracker::single(&only.0, r, after, ans);
                    let result = get_result(outcome, &msg.key, msg.as_type, n);
                    return self.reply(reply, result, get_resp, ctx);
                }
            }
        }
        let names = primaries.iter().map(|n| n.0.clone()).collect();
        let req = self.next_id();
        self.requests.insert(
            req,
            Request::Get(GetState {
                key: msg.key.clone(),
                n,
                // An empty `after` (say, from a not-found read) covers nothing: no constraint.
                tracker: GetTracker::new(names, r, after.filter(|a| !a.is_empty())),
                reply: Some(reply),
                rpcs: Vec::new(),
                as_type: msg.as_type,
            }),
        );
        self.arm_deadline(req, self.cfg.request_timeout, ctx);
        let mut local = None;
        for node in primaries {
            if *node == self.cfg.me {
                local = Some(node.clone());
            } else if !p.is_up(node) {
                self.get_answer(req, node, Err("down (membership)".into()), ctx);
            } else {
                let key = msg.key.clone();
                self.rpc(req, node, DataReq::Get { key }, ctx);
            }
        }
        // Last: a read from memory answers at once, and may finish the get.
        if let Some(node) = local {
            self.read_local(msg.key, ctx, move |act, res, ctx| {
                let ans = res.map(|o| (!o.is_empty()).then_some(o)).map_err(|e| e.msg);
                act.get_answer(req, &node, ans, ctx);
            });
        }
    }

    pub(super) fn get_answer(
        &mut self,
        req: u64,
        node: &NodeId,
        ans: Result<Option<Object>, String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(Request::Get(st)) = self.requests.get_mut(&req) else {
            return;
        };
        let progress = st.tracker.add_answer(&node.0, ans);
        let done = st.tracker.all_answered();
        self.get_progress(req, progress, ctx);
        if done {
            self.finish_get(req, ctx);
        }
    }

    pub(super) fn get_progress(
        &mut self,
        req: u64,
        progress: Progress<GetOutcome<Object>>,
        ctx: &mut Context<Self>,
    ) {
        let Progress::Reply(outcome) = progress else {
            return;
        };
        let Some(Request::Get(st)) = self.requests.get_mut(&req) else {
            return;
        };
        let Some(to) = st.reply.take() else {
            return;
        };
        let result = get_result(outcome, &st.key, st.as_type, st.n);
        self.reply(to, result, get_resp, ctx);
    }

    /// Every primary answered or the deadline passed: read repair, then forget the get.
    pub(super) fn finish_get(&mut self, req: u64, ctx: &mut Context<Self>) {
        let Some(Request::Get(st)) = self.forget(req) else {
            return;
        };
        let Some((joined, stale)) = st.tracker.repair() else {
            return;
        };
        let encoded = joined.encode();
        let repair = self.next_id();
        self.requests.insert(
            repair,
            Request::Repair {
                pending: 0,
                rpcs: Vec::new(),
            },
        );
        let mut pending = 0;
        for name in stale {
            if self.repairs_inflight >= self.cfg.max_repairs {
                self.stats.read_repairs_skipped.fetch_add(1, Relaxed);
                continue;
            }
            self.repairs_inflight += 1;
            self.stats.read_repairs.fetch_add(1, Relaxed);
            let node = NodeId(name);
            if node == self.cfg.me {
                let op = LocalOp {
                    key: st.key.clone(),
                    digest: None,
                    apply: Apply::Join {
                        object: joined.clone(),
                        encoded: None,
                    },
                    done: LocalDone::Repair,
                };
                self.write_local(op, ctx);
            } else {
                pending += 1;
                let put = DataReq::Put {
                    key: st.key.clone(),
                    object: encoded.clone(),
                };
                self.rpc(repair, &node, put, ctx);
            }
        }
        match self.requests.get_mut(&repair) {
            Some(Request::Repair { pending: p, .. }) if pending > 0 => {
                *p = pending;
                self.arm_deadline(repair, self.cfg.request_timeout, ctx);
            }
            _ => {
                self.forget(repair);
            }
        }
    }
}
