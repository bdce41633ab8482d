//! The request table and the write flows: a coordinated write (local durable write first,
//! then the other primaries), a write forwarded to a primary, RPC bookkeeping, deadlines.
//! The get flow is in `get`, this node's answers to other coordinators in `replica`.
//!
//! Each flow is a [`Request`] in the coordinator's table with a deadline (one heap, one
//! tick); its quorum state is a pure tracker from [`super::quorum`], fed with answers.
//! Every RPC's end (answer, timeout, abandoned) is counted in `CoordinatorStats::peer_rpcs`.

use super::local::{show_key, Apply, LocalDone, LocalOp};
use super::quorum::{self, GetTracker, Progress, PutOutcome, PutTracker};
use super::*;
use crate::ring::PartitionTable;
use troupe_protocol::data::DataReq;
use troupe_protocol::object::{Object, Value, VersionVector};

/// One outstanding peer RPC: its request, the replica asked, what it asked, and when.
pub(crate) struct OutRpc {
    req: u64,
    node: NodeId,
    /// An index into `peer_stats::KINDS`.
    kind: usize,
    sent: std::time::Instant,
}

pub(crate) enum Request {
    Get(GetState),
    Put(PutState),
    Forward(ForwardState),
    Repair { pending: usize, rpcs: Vec<u64> },
    Keys(super::keys::KeysState),
    Handoff(super::sloppy::HandoffState),
}

impl Request {
    /// The peer RPCs this request sent (forgotten with it).
    fn rpcs(&mut self) -> &mut Vec<u64> {
        match self {
            Request::Get(st) => &mut st.rpcs,
            Request::Put(st) => &mut st.rpcs,
            Request::Forward(st) => &mut st.rpcs,
            Request::Repair { rpcs, .. } => rpcs,
            Request::Keys(st) => &mut st.rpcs,
            Request::Handoff(st) => &mut st.rpcs,
        }
    }
}

pub(crate) struct GetState {
    pub(super) key: Vec<u8>,
    pub(super) n: usize,
    pub(super) tracker: GetTracker<Object>,
    pub(super) reply: Option<ReplyTo<GetReply>>,
    pub(super) rpcs: Vec<u64>,
    /// A typed read's type (`ClientGet::as_type`).
    pub(super) as_type: Option<troupe_protocol::crdt::TypeKind>,
}

pub(crate) struct PutState {
    pub(super) key: Vec<u8>,
    n: usize,
    w: usize,
    /// The partition table the put started under: its primaries are the key's
    /// ([`PutState::primaries`]; shared, not copied per put).
    table: Arc<PartitionTable>,
    /// The key's partition (its primaries, and which fallbacks stand in for them).
    partition: u32,
    /// The object as written locally (storage encoding), kept for hints.
    pub(super) object: Vec<u8>,
    /// Fallbacks of the key's partition that are up and not asked yet, in order: the next
    /// one takes the hint of a primary that is down (sloppy quorum).
    pub(super) fallbacks: std::collections::VecDeque<NodeId>,
    /// Set once the local write is durable.
    pub(super) tracker: Option<PutTracker>,
    /// The layout version the put's primaries were chosen under (at its start).
    pub(super) layout_version: u64,
    /// What the client hears on success: the object the local write left.
    written: WriteReply,
    reply: Option<ReplyTo<WriteReply>>,
    rpcs: Vec<u64>,
}

impl PutState {
    /// The key's primaries when the put started, preferred coordinator first.
    pub(super) fn primaries(&self) -> &[NodeId] {
        self.table.primaries(self.partition)
    }
}

pub(crate) struct ForwardState {
    to: NodeId,
    reply: Option<ReplyTo<WriteReply>>,
    rpcs: Vec<u64>,
    /// The write, and the primaries after `to`: an `unavailable` answer means nothing was
    /// written, so the next primary that is up may try.
    write: ClientWrite,
    rest: Vec<NodeId>,
}

pub(super) fn bad_request(msg: String) -> ClientError {
    ClientError::new(ErrorCode::BadRequest, msg)
}

pub(super) fn decode_context(
    raw: Option<&[u8]>,
    what: &str,
) -> Result<Option<VersionVector>, ClientError> {
    match raw {
        None => Ok(None),
        // The context of a not-found read: the empty version vector.
        Some([]) => Ok(Some(VersionVector::new())),
        Some(bytes) => VersionVector::decode(bytes).map(Some).map_err(|e| {
            bad_request(format!(
                "{what} is not a context this database issued ({e}); pass back the context bin from a get or put reply unchanged"
            ))
        }),
    }
}

impl Coordinator {
    /// A request's quorum is checked strictly; the configured default is capped at the
    /// replicas there are (one node alone answers `r = 2` defaults with its one copy).
    pub(super) fn quorum(
        &self,
        asked: Option<Quorum>,
        default: Quorum,
        n: usize,
        what: &str,
    ) -> Result<usize, ClientError> {
        match asked {
            Some(q) => quorum::required(q, n, what).map_err(bad_request),
            None => Ok(default.required(n).max(1)),
        }
    }

    pub(super) fn start_write(
        &mut self,
        msg: ClientWrite,
        reply: ReplyTo<WriteReply>,
        ctx: &mut Context<Self>,
    ) {
        let forwarded = matches!(reply, ReplyTo::Peer { .. });
        if let Some(e) = self.overloaded() {
            return self.reply(reply, Err(e), put_resp, ctx);
        }
        let p = self.placement();
        let n = p.n();
        let setup = self
            .quorum(msg.w, self.cfg.w, n, "w")
            .and_then(|w| Ok((w, decode_context(msg.context.as_deref(), "context")?)));
        let (w, context) = match setup {
            Ok(v) => v,
            Err(e) => return self.reply(reply, Err(e), put_resp, ctx),
        };
        // The key's one blake3: the put keeps its partition for the fallbacks it may need,
        // and storage's bloom filters probe with the hash.
        let (partition, digest) = p.table.locate(&msg.key);
        let primaries = p.table.primaries(partition);
        if !primaries.contains(&self.cfg.me) {
            if !forwarded {
                return self.forward(msg, primaries.to_vec(), reply, ctx);
            }
            // Forwarded to us, but we are not a primary in our own view (views differ while
            // membership converges). Only a primary may issue a dot: refuse, unwritten.
            let e = ClientError::new(
                ErrorCode::Unavailable,
                format!(
                    "{} is not a primary of key {} in its ring view (version {}); nothing was written, retry",
                    self.cfg.me,
                    show_key(&msg.key),
                    p.version
                ),
            );
            return self.reply(reply, Err(e), put_resp, ctx);
        }
        // Before writing anything: are enough primaries up to reach w? With hinted handoff
        // on, each down primary may be stood in for by a distinct fallback that is up.
        let is_up = |id: &NodeId| *id == self.cfg.me || p.is_up(id);
        let up = primaries.iter().filter(|id| is_up(id)).count();
        // (Fallbacks are looked up only when the primaries that are up fall short.)
        let stand_ins = if up >= w {
            0
        } else {
            self.usable_fallbacks(&p, partition)
                .len()
                .min(primaries.len() - up)
        };
        if up + stand_ins < w {
            let down: Vec<String> = primaries
                .iter()
                .filter(|id| !is_up(id))
                .map(|id| format!("{id}: down (membership)"))
                .collect();
            let msg = format!(
                "needed {w} of {n} replicas up before writing, {} up{}; {}; nothing was written",
                up + stand_ins,
                if stand_ins > 0 {
                    format!(" ({stand_ins} of them fallbacks for down primaries)")
                } else {
                    String::new()
                },
                down.join("; ")
            );
            let e = ClientError::new(ErrorCode::Unavailable, msg);
            return self.reply(reply, Err(e), put_resp, ctx);
        }
        let value = match msg.value {
            Some(v) => Value::Data(v),
            None => Value::Deleted,
        };
        let typed = msg.typed.map(|op| {
            let wall_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.hlc = troupe_protocol::crdt::hlc_now(wall_ms, self.hlc);
            super::local::TypedWrite {
                op,
                now: self.hlc,
                max_set_members: self.cfg.max_set_members,
            }
        });
        let req = self.next_id();
        self.requests.insert(
            req,
            Request::Put(PutState {
                key: msg.key.clone(),
                n,
                w,
                table: p.table.clone(),
                partition,
                object: Vec::new(),
                fallbacks: Default::default(),
                tracker: None,
                layout_version: p.version,
                written: WriteReply::default(),
                reply: Some(reply),
                rpcs: Vec::new(),
            }),
        );
        // The deadline runs from now: a long wait for the key's lock or a slow local
        // write is part of the request's time.
        self.arm_deadline(req, self.cfg.request_timeout, ctx);
        self.write_local(
            LocalOp {
                key: msg.key,
                digest,
                apply: Apply::Update {
                    context: context.unwrap_or_default(),
                    value,
                    typed,
                },
                done: LocalDone::Coordinated {
                    req,
                    peers: n > 1 || p.stable.is_some(),
                },
            },
            ctx,
        );
    }

    /// This node is not a primary of the key: the first primary that is up coordinates.
    fn forward(
        &mut self,
        msg: ClientWrite,
        primaries: Vec<NodeId>,
        reply: ReplyTo<WriteReply>,
        ctx: &mut Context<Self>,
    ) {
        let p = self.placement.clone();
        let mut candidates = primaries.clone().into_iter().skip_while(|id| !p.is_up(id));
        let Some(to) = candidates.next() else {
            let names: Vec<String> = primaries.iter().map(|id| id.0.clone()).collect();
            let e = ClientError::new(
                ErrorCode::Unavailable,
                format!(
                    "no primary of key {} is up ({}); nothing was written",
                    show_key(&msg.key),
                    names.join(", ")
                ),
            );
            return self.reply(reply, Err(e), put_resp, ctx);
        };
        self.stats.forwarded.fetch_add(1, Relaxed);
        let req = self.next_id();
        let coord = DataReq::Coordinate {
            key: msg.key.clone(),
            value: msg.value.clone(),
            context: msg.context.clone(),
            w: msg.w,
            typed: msg.typed.clone(),
        };
        self.requests.insert(
            req,
            Request::Forward(ForwardState {
                to: to.clone(),
                reply: Some(reply),
                rpcs: Vec::new(),
                write: msg,
                rest: candidates.collect(),
            }),
        );
        self.rpc(req, &to, coord, ctx);
        // The primary may spend its own full timeout; give it that and a margin.
        self.arm_deadline(req, self.cfg.request_timeout * 2, ctx);
    }

    /// The coordinator's own durable write finished: send the object to the other
    /// primaries and count acknowledgements.
    pub(super) fn coordinated_local_done(
        &mut self,
        req: u64,
        res: Result<super::local::Stored, ClientError>,
        ctx: &mut Context<Self>,
    ) {
        let stored = match res {
            Ok(s) => s,
            Err(e) => {
                if let Some(Request::Put(mut st)) = self.forget(req) {
                    if let Some(to) = st.reply.take() {
                        self.reply(to, Err(e), put_resp, ctx);
                    }
                }
                return;
            }
        };
        let p = self.placement.clone();
        let Some(Request::Put(st)) = self.requests.get_mut(&req) else {
            return;
        };
        st.written = WriteReply::of(&stored.object);
        let primaries: Vec<String> = st
            .primaries()
            .iter()
            .filter(|id| **id != self.cfg.me)
            .map(|id| id.0.clone())
            .collect();
        // In transition the stable layout's primaries must acknowledge too (handoff rule
        // 1): `w` of them, or all of them when they are fewer. A stable primary that left
        // (`admin remove`) is no longer a ring member: it is not waited for.
        let also: Vec<&NodeId> = p
            .also_write(&st.key)
            .iter()
            .filter(|id| **id == self.cfg.me || p.members.contains_key(*id))
            .collect();
        let mut tracker = PutTracker::new(primaries, st.w);
        if !also.is_empty() {
            let me_in = also.contains(&&self.cfg.me);
            let group = also
                .iter()
                .filter(|id| ***id != self.cfg.me)
                .map(|id| id.0.clone())
                .collect();
            tracker = tracker.also_needs(group, st.w.min(also.len()), me_in);
        }
        // The object goes to every target: the other primaries, then the stable-only ones.
        let others: Vec<NodeId> = tracker
            .target_nodes()
            .into_iter()
            .map(NodeId)
            .filter(|id| *id != self.cfg.me)
            .collect();
        st.tracker = Some(tracker);
        let partition = st.partition;
        let key = match others.is_empty() {
            true => Vec::new(),
            false => st.key.clone(),
        };
        // Not kept by the local write when the put looked local-only at its start; the
        // layout may have changed since.
        let encoded = match stored.bytes.is_empty() && !others.is_empty() {
            true => stored.object.encode(),
            false => stored.bytes,
        };
        // Kept for the hints a failed target leaves; with no other target there is none.
        if !others.is_empty() {
            st.object = encoded.clone();
        }
        let fallbacks = self.usable_fallbacks(&p, partition);
        let Some(Request::Put(st)) = self.requests.get_mut(&req) else {
            return;
        };
        st.fallbacks = fallbacks.into();
        let first = st.tracker.as_mut().map(PutTracker::start);
        if let Some(progress) = first {
            self.put_progress(req, progress, ctx);
        }
        for node in others {
            if p.is_up(&node) {
                let put = DataReq::Put {
                    key: key.clone(),
                    object: encoded.clone(),
                };
                self.rpc(req, &node, put, ctx);
            } else if !self.hint_instead(req, &node, "down (membership)", ctx) {
                self.put_answer(req, &node, Err("down (membership)".into()), ctx);
            }
        }
        // With no other primary (one node), or all of them down, the put is complete now.
        match self.requests.get(&req) {
            Some(Request::Put(st)) if st.tracker.as_ref().is_some_and(PutTracker::all_answered) => {
                self.finish_put(req);
            }
            Some(_) => self.arm_deadline(req, self.cfg.request_timeout, ctx),
            None => {}
        }
    }

    /// Sends one request of flow `req` to `node`.
    pub(super) fn rpc(&mut self, req: u64, node: &NodeId, body: DataReq, ctx: &mut Context<Self>) {
        let id = self.next_id();
        let rpc = OutRpc {
            req,
            node: node.clone(),
            kind: super::peer_stats::kind_of(&body),
            sent: std::time::Instant::now(),
        };
        self.rpcs.insert(id, rpc);
        if let Some(r) = self.requests.get_mut(&req) {
            r.rpcs().push(id);
        }
        self.send(node, DataMsg::Req { id, req: body }, ctx);
    }

    /// Request `req` times out `after` from now, or earlier if it already had an earlier
    /// deadline (see [`Deadlines::arm`](super::deadlines::Deadlines::arm)).
    pub(super) fn arm_deadline(&mut self, req: u64, after: Duration, _: &mut Context<Self>) {
        self.deadlines.arm(req, std::time::Instant::now() + after);
    }

    /// Fires every deadline that has passed, soonest first (a periodic tick; see
    /// `Actor::started`). A deadline fires once; the handler may arm a new one.
    pub(super) fn expire_deadlines(&mut self, ctx: &mut Context<Self>) {
        for req in self.deadlines.take_due(std::time::Instant::now()) {
            self.deadline(req, ctx);
        }
    }

    /// Removes request `req` and forgets its outstanding RPCs (late answers are dropped;
    /// such an RPC is counted `abandoned`).
    pub(super) fn forget(&mut self, req: u64) -> Option<Request> {
        self.deadlines.forget(req);
        let mut r = self.requests.remove(&req)?;
        for id in r.rpcs().drain(..) {
            if let Some(rpc) = self.rpcs.remove(&id) {
                self.stats
                    .peer_rpcs
                    .ended(&rpc.node, rpc.kind, "abandoned", None);
            }
        }
        Some(r)
    }

    /// Request `req`'s deadline passed: its RPCs still outstanding are counted `timeout` and
    /// dropped (what follows forgets the request or, for a put still writing locally, has
    /// sent none yet).
    fn expire_rpcs(&mut self, req: u64) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        for id in r.rpcs().iter() {
            if let Some(rpc) = self.rpcs.remove(id) {
                self.stats
                    .peer_rpcs
                    .ended(&rpc.node, rpc.kind, "timeout", None);
            }
        }
    }

    /// A replica answered one of our RPCs (or it failed to leave this node).
    pub(super) fn on_rpc_answer(
        &mut self,
        from: &NodeId,
        rpc: u64,
        resp: DataResp,
        ctx: &mut Context<Self>,
    ) {
        // Only the node asked may answer (an id is never matched across nodes).
        if self.rpcs.get(&rpc).is_none_or(|r| &r.node != from) {
            return; // its request already finished, or a stranger's answer
        }
        let Some(OutRpc {
            req,
            node,
            kind,
            sent,
        }) = self.rpcs.remove(&rpc)
        else {
            return;
        };
        let code = match &resp {
            DataResp::Failed { code, .. } => Some(code.as_str()),
            _ => None,
        };
        let result = super::peer_stats::result_label(code);
        self.stats
            .peer_rpcs
            .ended(&node, kind, result, Some(sent.elapsed()));
        let failed = |resp: &DataResp| match resp {
            DataResp::Failed { code, msg } => Some(format!("{code}: {msg}")),
            _ => None,
        };
        match self.requests.get_mut(&req) {
            Some(Request::Keys(_)) => {
                let ans = match resp {
                    DataResp::Keys { entries, last } => Ok((entries, last)),
                    other => Err(failed(&other).unwrap_or_else(|| "unexpected answer".into())),
                };
                self.keys_answer(req, &node, ans, ctx);
            }
            Some(Request::Get(_)) => {
                let ans = match resp {
                    DataResp::Object { object: None } => Ok(None),
                    DataResp::Object {
                        object: Some(bytes),
                    } => Object::decode(&bytes)
                        .map(|o| (!o.is_empty()).then_some(o))
                        .map_err(|e| format!("undecodable object: {e}")),
                    other => Err(failed(&other).unwrap_or_else(|| "unexpected answer".into())),
                };
                self.get_answer(req, &node, ans, ctx);
            }
            Some(Request::Put(_)) => {
                let ans = match resp {
                    DataResp::Stored => Ok(()),
                    other => Err(failed(&other).unwrap_or_else(|| "unexpected answer".into())),
                };
                self.put_answer(req, &node, ans, ctx);
            }
            Some(Request::Forward(_)) => {
                let Some(Request::Forward(mut st)) = self.forget(req) else {
                    return;
                };
                if matches!(&resp, DataResp::Failed { code, .. } if code == "unavailable")
                    && !st.rest.is_empty()
                {
                    if let Some(to) = st.reply.take() {
                        // Nothing was written there: the next primary may coordinate.
                        return self.forward(st.write, st.rest, to, ctx);
                    }
                }
                let result = match resp {
                    DataResp::Written {
                        context,
                        values,
                        typed,
                    } => Ok(written_reply(context, values, typed)),
                    DataResp::Failed { code, msg } => Err(ClientError::new(
                        ErrorCode::parse(&code),
                        format!("{msg} (coordinated by {})", st.to),
                    )),
                    _ => Err(ClientError::new(
                        ErrorCode::Timeout,
                        format!("{} answered a forwarded write oddly; it may or may not have been applied", st.to),
                    )),
                };
                if let Some(to) = st.reply.take() {
                    self.reply(to, result, put_resp, ctx);
                }
            }
            Some(Request::Repair { pending, .. }) => {
                *pending -= 1;
                self.repairs_inflight -= 1;
                if *pending == 0 {
                    self.forget(req);
                }
            }
            Some(Request::Handoff(_)) => self.handoff_answer(req, &node, resp),
            None => {}
        }
    }

    pub(super) fn put_answer(
        &mut self,
        req: u64,
        node: &NodeId,
        ans: Result<(), String>,
        ctx: &mut Context<Self>,
    ) {
        // A primary that could not be asked at all (nothing was queued to it) may be stood
        // in for by a fallback, as if membership had said it was down.
        if let Err(e) = &ans {
            if e.starts_with("unavailable") && self.hint_instead(req, node, e, ctx) {
                return;
            }
        }
        let Some(Request::Put(st)) = self.requests.get_mut(&req) else {
            return;
        };
        let Some(tracker) = st.tracker.as_mut() else {
            return;
        };
        let progress = tracker.add_answer(&node.0, ans);
        let done = tracker.all_answered();
        self.put_progress(req, progress, ctx);
        if done {
            self.finish_put(req);
        }
    }

    pub(super) fn put_progress(
        &mut self,
        req: u64,
        progress: Progress<PutOutcome>,
        ctx: &mut Context<Self>,
    ) {
        let Progress::Reply(outcome) = progress else {
            return;
        };
        let Some(Request::Put(st)) = self.requests.get_mut(&req) else {
            return;
        };
        let Some(to) = st.reply.take() else {
            return;
        };
        let result = match outcome {
            PutOutcome::Acknowledged => Ok(std::mem::take(&mut st.written)),
            PutOutcome::Indeterminate(f) => Err(ClientError::new(
                ErrorCode::Timeout,
                format!(
                    "write of key {} is durable on {} replica(s), not the {} asked for; it may or may not become visible ({})",
                    show_key(&st.key),
                    f.got,
                    f.needed,
                    f.describe(st.n)
                ),
            )),
        };
        self.reply(to, result, put_resp, ctx);
    }

    /// A request's deadline passed: answer what is still unanswered, then forget it.
    pub(super) fn deadline(&mut self, req: u64, ctx: &mut Context<Self>) {
        self.expire_rpcs(req);
        match self.requests.get_mut(&req) {
            Some(Request::Keys(_)) => self.finish_keys(req, ctx),
            Some(Request::Get(st)) => {
                let progress = st.tracker.timed_out();
                self.get_progress(req, progress, ctx);
                self.finish_get(req, ctx);
            }
            Some(Request::Put(st)) => {
                let Some(tracker) = st.tracker.as_mut() else {
                    // The local write has not finished: the client hears `timeout` now (it
                    // may yet be applied); the request stays until that write answers, then
                    // replicates what it wrote and is forgotten after one more timeout.
                    if let Some(to) = st.reply.take() {
                        let e = ClientError::new(
                            ErrorCode::Timeout,
                            format!(
                                "the local write of key {} did not finish within {:?}; it may or may not have been applied",
                                show_key(&st.key),
                                self.cfg.request_timeout
                            ),
                        );
                        self.reply(to, Err(e), put_resp, ctx);
                    }
                    return;
                };
                let progress = tracker.timed_out();
                self.put_progress(req, progress, ctx);
                self.finish_put(req);
            }
            Some(Request::Forward(_)) => {
                let Some(Request::Forward(mut st)) = self.forget(req) else {
                    return;
                };
                let e = ClientError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the write was forwarded to primary {} which did not answer within {:?}; it may or may not have been applied",
                        st.to, self.cfg.request_timeout
                    ),
                );
                if let Some(to) = st.reply.take() {
                    self.reply(to, Err(e), put_resp, ctx);
                }
            }
            Some(Request::Repair { pending, .. }) => {
                self.repairs_inflight -= *pending;
                self.forget(req);
            }
            Some(Request::Handoff(_)) => self.handoff_deadline(req),
            None => {}
        }
    }
}

pub(super) fn get_resp(r: GetReply) -> DataResp {
    // Gets are never answered to peers through `reply` (replicas answer objects).
    DataResp::Written {
        context: r.context,
        values: None,
        typed: None,
    }
}

/// What the client of a forwarded write hears from the primary's `Written` answer.
pub(super) fn written_reply(
    context: Vec<u8>,
    values: Option<Vec<serde_bytes::ByteBuf>>,
    typed: Option<Vec<u8>>,
) -> WriteReply {
    WriteReply {
        context,
        values: values.map(|vs| vs.into_iter().map(|v| v.into_vec()).collect()),
        // A state that does not decode (a newer peer) reads as none: the write happened.
        typed: typed.and_then(|b| troupe_protocol::crdt::Typed::decode(&b).ok()),
    }
}

/// A forwarded write's answer: the values travel with the context they belong to.
pub(super) fn put_resp(w: WriteReply) -> DataResp {
    DataResp::Written {
        context: w.context,
        values: w
            .values
            .map(|vs| vs.into_iter().map(serde_bytes::ByteBuf::from).collect()),
        typed: w.typed.map(|t| t.encode()),
    }
}
