//! The Admin actor and the admin-port listener.
//!
//! The admin port speaks the client framing with [`AdminRequest`]s: one console command and
//! its arguments per request. Each admin connection is a task that reads a request, asks the
//! Admin actor, and writes the answer before reading the next (operators do not pipeline).
//!
//! Commands: `status`, `actors`, `sync`; with storage attached (`with_storage`) also
//! `stats`, `flush`, `compact`, `gc` (see `storage.rs`); with membership attached
//! (`with_membership`) also `members`, `leave`, `fault`; with the coordinator
//! (`with_coordinator`) also `ring`, `preflist KEY`, `object KEY`.

mod replication;
mod storage;

pub use replication::CoordinatorHandles;

use crate::membership::actor::{Fault, Leave, ListMembers, MembershipActor};
use crate::memtable::{wal::Health, MemtableActor, SyncWal};
use crate::stats::{ActorCounters, Registry};
use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use troupe_protocol::admin::{
    ActorsReply, Addresses, AdminRequest, AdminResponse, MembersReply, StatusReply,
};
use troupe_protocol::{ErrorBody, ErrorCode, FrameCodec};

/// Facts about the node that `status` reports.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub version: String,
    pub started: Instant,
    pub addresses: Addresses,
    pub data_dir: String,
    pub durability: String,
}

pub struct Admin {
    info: NodeInfo,
    registry: Registry,
    health: Health,
    memtable: Addr<MemtableActor>,
    counters: Arc<ActorCounters>,
    connections: Arc<ActorCounters>,
    storage: Option<crate::storage::Storage>,
    membership: Option<Addr<MembershipActor>>,
    coordinator: Option<CoordinatorHandles>,
}

impl Admin {
    pub fn new(
        info: NodeInfo,
        registry: Registry,
        health: Health,
        memtable: Addr<MemtableActor>,
    ) -> Admin {
        Admin {
            counters: registry.actor("admin"),
            connections: registry.actor("connection"),
            info,
            registry,
            health,
            memtable,
            storage: None,
            membership: None,
            coordinator: None,
        }
    }

    /// Serves `ring`, `preflist` and `object`, and adds replication health to `status`.
    pub fn with_coordinator(mut self, handles: CoordinatorHandles) -> Admin {
        self.coordinator = Some(handles);
        self
    }

    /// Serves `members`, `leave` and `fault` from this Membership actor.
    pub fn with_membership(mut self, membership: Addr<MembershipActor>) -> Admin {
        self.membership = Some(membership);
        self
    }

    /// Adds the storage engine's commands (`stats`, `flush`, `compact`, `gc`), its poison
    /// state and its failing background work to `status`.
    pub fn with_storage(mut self, storage: crate::storage::Storage) -> Admin {
        self.storage = Some(storage);
        self
    }

    fn status(&self) -> StatusReply {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| self.storage.as_ref().and_then(|s| s.tables.poisoned()))
            .unwrap_or_else(|| "ok".into());
        StatusReply {
            node_id: self.info.node_id.clone(),
            version: self.info.version.clone(),
            uptime_secs: self.info.started.elapsed().as_secs(),
            addresses: self.info.addresses.clone(),
            data_dir: self.info.data_dir.clone(),
            durability: self.info.durability.clone(),
            health,
            connections: self.connections.instances(),
            replication: self.coordinator.as_ref().map_or_else(
                || "off".to_string(),
                |c| c.note.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            ),
            background: self
                .storage
                .as_ref()
                .map(|s| s.background_failures())
                .unwrap_or_default(),
        }
    }
}

impl Actor for Admin {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.counters.started();
    }
}

/// One admin command; replies with the encoded response frame.
#[derive(Message)]
#[rtype(result = "Vec<u8>")]
pub struct Command(pub AdminRequest);

fn ok<T: Serialize>(id: u64, body: T) -> Vec<u8> {
    AdminResponse {
        id,
        ok: Some(body),
        err: None,
    }
    .encode()
}

fn err(id: u64, code: ErrorCode, msg: impl Into<String>) -> Vec<u8> {
    AdminResponse::<()> {
        id,
        ok: None,
        err: Some(ErrorBody::new(code, msg)),
    }
    .encode()
}

#[derive(Serialize)]
struct Done {
    done: bool,
}

#[derive(Serialize)]
struct FaultReply {
    /// Peers whose traffic is dropped (`all`, node ids), empty when healed.
    dropping: Vec<String>,
}

impl Handler<Command> for Admin {
    type Result = ResponseFuture<Vec<u8>>;

    fn handle(&mut self, Command(req): Command, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let id = req.id;
        let reply = match req.op.as_str() {
            "status" => ok(id, self.status()),
            "actors" => ok(
                id,
                ActorsReply {
                    actors: self.registry.snapshot(),
                },
            ),
            "sync" => {
                let sync = self.memtable.send(SyncWal);
                return Box::pin(async move {
                    match sync.await {
                        Ok(Ok(())) => ok(id, Done { done: true }),
                        Ok(Err(e)) => err(id, ErrorCode::Internal, e.to_string()),
                        Err(e) => err(id, ErrorCode::Internal, e.to_string()),
                    }
                });
            }
            op if self.storage.is_some() && storage::command_names().contains(&op) => {
                match self
                    .storage
                    .as_ref()
                    .and_then(|s| storage::command(s, id, op))
                {
                    Some(fut) => return fut,
                    None => err(id, ErrorCode::Internal, "BUG: storage command not handled"),
                }
            }
            op if self.coordinator.is_some() && replication::command_names().contains(&op) => {
                if let Some(c) = &self.coordinator {
                    return replication::run(c, id, op, &req.args);
                }
                err(
                    id,
                    ErrorCode::Internal,
                    "BUG: replication command not handled",
                )
            }
            "members" | "leave" | "fault" => {
                let Some(m) = self.membership.clone() else {
                    return Box::pin(async move {
                        err(id, ErrorCode::Internal, "membership is not running")
                    });
                };
                let op = req.op.clone();
                return Box::pin(async move {
                    let failed = |e: MailboxError| err(id, ErrorCode::Internal, e.to_string());
                    match op.as_str() {
                        "members" => match m.send(ListMembers).await {
                            Ok(members) => ok(id, MembersReply { members }),
                            Err(e) => failed(e),
                        },
                        "leave" => match m.send(Leave).await {
                            Ok(()) => ok(id, Done { done: true }),
                            Err(e) => failed(e),
                        },
                        _ => match m.send(Fault(req.args)).await {
                            Ok(Ok(dropping)) => ok(id, FaultReply { dropping }),
                            Ok(Err(usage)) => err(id, ErrorCode::BadRequest, usage),
                            Err(e) => failed(e),
                        },
                    }
                });
            }
            other => {
                self.counters.error();
                err(
                    id,
                    ErrorCode::BadRequest,
                    format!("unknown admin command {other:?}; try: status, actors, sync, members, leave, fault"),
                )
            }
        };
        Box::pin(async move { reply })
    }
}

/// Accepts admin connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    admin: Addr<Admin>,
    max_frame_bytes: usize,
    shutdown: CancellationToken,
) {
    while let Some((stream, _)) = crate::net::accept(&listener, &shutdown, "admin").await {
        actix::spawn(serve_one(
            stream,
            admin.clone(),
            max_frame_bytes,
            shutdown.clone(),
        ));
    }
}

async fn serve_one(
    stream: TcpStream,
    admin: Addr<Admin>,
    max_frame_bytes: usize,
    shutdown: CancellationToken,
) {
    let mut framed = Framed::new(stream, FrameCodec::new(max_frame_bytes));
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = framed.next() => f,
        };
        let Some(Ok(body)) = frame else { return };
        let reply = match AdminRequest::decode(&body) {
            Ok(req) => match admin.send(Command(req)).await {
                Ok(bytes) => bytes,
                Err(_) => return,
            },
            Err(e) => err(0, e.code, e.msg),
        };
        if framed.send(Bytes::from(reply)).await.is_err() {
            return;
        }
    }
}
