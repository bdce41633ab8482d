//! This node as a replica: answering the requests other coordinators send it (read its
//! object, join theirs in, coordinate a forwarded write).

use super::local::{Apply, LocalDone, LocalOp};
use super::requests::{bad_request, get_resp};
use super::*;
use troupe_protocol::data::DataReq;
use troupe_protocol::object::Object;

impl Coordinator {
    /// Another coordinator asks this replica something.
    pub(super) fn on_peer_request(
        &mut self,
        from: NodeId,
        id: u64,
        req: DataReq,
        ctx: &mut Context<Self>,
    ) {
        match req {
            DataReq::Keys {
                prefix,
                after,
                limit,
                partitions,
            } => {
                let fail = |code: ErrorCode, msg: String| DataResp::Failed {
                    code: code.as_str().to_string(),
                    msg,
                };
                let Some(scan) = self.storage_scan.clone() else {
                    let resp = fail(ErrorCode::Internal, "this node cannot list keys".into());
                    return self.send(&from, DataMsg::Resp { id, resp }, ctx);
                };
                // Scans count as local operations: bounded with everything in flight.
                if let Some(e) = self.overloaded() {
                    let resp = fail(e.code, e.msg);
                    return self.send(&from, DataMsg::Resp { id, resp }, ctx);
                }
                self.local_ops += 1;
                let limit =
                    (limit as usize).clamp(1, troupe_protocol::message::MAX_KEYS_LIMIT as usize);
                let table = self.placement().table.clone();
                let fut = super::keys::scan_keys(
                    scan,
                    table,
                    partitions.into_iter().collect(),
                    prefix,
                    after,
                    limit,
                    self.keys_bytes(),
                );
                super::local::finish_on_actor(ctx, fut, move |act, res, ctx| {
                    act.local_ops -= 1;
                    let resp = match res {
                        Ok((entries, last)) => DataResp::Keys { entries, last },
                        Err(e) => fail(e.code, e.msg),
                    };
                    act.send(&from, DataMsg::Resp { id, resp }, ctx);
                });
            }
            DataReq::Get { key } => {
                if let Some(e) = self.overloaded() {
                    return self.reply(ReplyTo::Peer { to: from, id }, Err(e), get_resp, ctx);
                }
                // The stored encoding goes out as is; the coordinator decodes it.
                self.read_local_bytes(key, ctx, move |act, res, ctx| {
                    let resp = match res {
                        Ok(object) => DataResp::Object { object },
                        Err(e) => DataResp::Failed {
                            code: e.code.as_str().to_string(),
                            msg: e.msg,
                        },
                    };
                    act.send(&from, DataMsg::Resp { id, resp }, ctx);
                });
            }
            DataReq::Put { key, object } => {
                let reply_to = ReplyTo::<()>::Peer {
                    to: from.clone(),
                    id,
                };
                if let Some(e) = self.overloaded() {
                    return self.reply(reply_to, Err(e), |_| DataResp::Stored, ctx);
                }
                match Object::decode(&object) {
                    Ok(o) => self.write_local(
                        LocalOp {
                            key,
                            digest: None,
                            apply: Apply::Join {
                                object: o,
                                encoded: Some(object),
                            },
                            done: LocalDone::ReplicaPut { to: from, id },
                        },
                        ctx,
                    ),
                    Err(e) => {
                        let e = bad_request(format!("undecodable object: {e}"));
                        self.reply(reply_to, Err(e), |_| DataResp::Stored, ctx)
                    }
                }
            }
            // Views differ while membership converges: a hint for this very node is its
            // write, joined now (kept as a hint it would never be delivered).
            DataReq::Hint {
                primary,
                key,
                object,
            } if primary == self.cfg.me.0 => {
                self.on_peer_request(from, id, DataReq::Put { key, object }, ctx)
            }
            DataReq::Hint {
                primary,
                key,
                object,
            } => {
                let msg = crate::hints::StoreHint {
                    primary,
                    key,
                    object,
                };
                self.on_hint_request(from, id, msg, ctx);
            }
            DataReq::Coordinate {
                key,
                value,
                context,
                w,
                typed,
            } => {
                let msg = ClientWrite {
                    key,
                    value,
                    context,
                    w,
                    typed,
                };
                self.start_write(msg, ReplyTo::Peer { to: from, id }, ctx);
            }
        }
    }
}
