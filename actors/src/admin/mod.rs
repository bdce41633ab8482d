//! The Admin actor and the admin-port listener.
//!
//! The admin port speaks the client framing with [`AdminRequest`]s: one console command and
//! its arguments per request. Each admin connection is a task that reads a request, asks the
//! Admin actor, and writes the answer before reading the next (operators do not pipeline).
//!
//! Every command is in one table, [`commands::COMMANDS`]: a request is looked up there
//! first (an unknown name is answered with "did you mean"), refused when what it needs is
//! not attached (storage: `with_storage`, see `storage.rs`; membership: `with_membership`;
//! the coordinator: `with_coordinator`, see `replication.rs`), refused when destructive
//! (`leave`, `fault`) without a `--yes` argument, and `fault` refused unless the node runs
//! with fault injection enabled (`with_fault_injection`). `log-level` sets the process-wide
//! `log::max_level` (the logger is initialised permissive, so this gate decides).

mod antientropy;
pub mod commands;
mod replication;
mod storage;

pub use antientropy::AntiEntropyHandles;
use commands::Needs;
pub use replication::CoordinatorHandles;

use crate::membership::actor::{Fault, ListMembers, MembershipActor};
use crate::memtable::{wal::Health, MemtableActor, SyncWal};
use crate::stats::{ActorCounters, Registry};
use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use troupe_protocol::admin::{
    ActorsReply, Addresses, AdminRequest, AdminResponse, MembersReply, StatusReply,
};
use troupe_protocol::swim::NodeId;
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

/// A section of `admin stats` another actor shares: its counters by name, read without a
/// message.
pub type StatsSection =
    Arc<dyn Fn() -> std::collections::BTreeMap<&'static str, u64> + Send + Sync>;

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
    antientropy: Option<AntiEntropyHandles>,
    /// Sections other actors add to `stats` (`with_stats_section`).
    sections: Vec<(&'static str, StatsSection)>,
    /// The Handoff actor (`transfers`, `leave`).
    transfers: Option<TransferHandles>,
    /// The HintedHandoff actor (`hints`) and its counters (in `stats`).
    hints: Option<(
        Recipient<crate::hints::ListHints>,
        Arc<crate::hints::HintStats>,
    )>,
    /// `fault` is served only when the node was started with `--enable-fault-injection`.
    fault_injection: bool,
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
            antientropy: None,
            sections: Vec::new(),
            hints: None,
            transfers: None,
            fault_injection: false,
        }
    }

    /// Adds a section to `stats`: counters `read` takes from shared atomics (no message).
    pub fn with_stats_section(mut self, name: &'static str, read: StatsSection) -> Admin {
        self.sections.push((name, read));
        self
    }

    /// Serves `fault` (with membership attached): set from `--enable-fault-injection`.
    pub fn with_fault_injection(mut self, enabled: bool) -> Admin {
        self.fault_injection = enabled;
        self
    }

    /// Serves `ring`, `preflist` and `object`, and adds replication health to `status`.
    pub fn with_coordinator(mut self, handles: CoordinatorHandles) -> Admin {
        self.coordinator = Some(handles);
        self
    }

    /// Serves `repair` and adds anti-entropy's counters to `stats`.
    pub fn with_antientropy(mut self, handles: AntiEntropyHandles) -> Admin {
        self.antientropy = Some(handles);
        self
    }

    /// Serves `transfers` and `leave` (hand off, then depart).
    pub fn with_transfers(mut self, h: TransferHandles) -> Admin {
        self.transfers = Some(h);
        self
    }

    /// Serves `hints`, and adds the hint counters to `stats`.
    pub fn with_hints(
        mut self,
        list: Recipient<crate::hints::ListHints>,
        stats: Arc<crate::hints::HintStats>,
    ) -> Admin {
        self.hints = Some((list, stats));
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
            log_level: log_level(),
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
struct LeaveReply {
    leaving: bool,
    message: String,
}

/// The Handoff actor's admin side.
#[derive(Clone)]
pub struct TransferHandles {
    pub status: Recipient<crate::handoff::TransfersStatus>,
    pub leave: Recipient<crate::handoff::StartLeave>,
}

#[derive(Serialize)]
struct FaultReply {
    /// Peers whose traffic is dropped (`all`, node ids), empty when healed.
    dropping: Vec<String>,
}

#[derive(Serialize)]
struct LogLevelReply {
    log_level: String,
}

#[derive(Serialize)]
struct HelpReply {
    commands: &'static [commands::Spec],
}

/// The process-wide log level as `status` and `log-level` show it.
fn log_level() -> String {
    log::max_level().to_string().to_lowercase()
}

impl Admin {
    /// Why `spec` may not run here, if it may not: something it needs is not attached, or
    /// it is destructive and not confirmed.
    fn refusal(&self, spec: &commands::Spec, confirmed: bool) -> Option<String> {
        let missing = match spec.needs {
            Needs::Node => None,
            Needs::Storage => self.storage.is_none().then_some("the storage engine"),
            Needs::Membership => self.membership.is_none().then_some("membership"),
            Needs::Coordinator => self.coordinator.is_none().then_some("replication"),
            Needs::AntiEntropy => self.antientropy.is_none().then_some("anti-entropy"),
            Needs::Hints => self.hints.is_none().then_some("hinted handoff"),
            Needs::Transfers => self.transfers.is_none().then_some("partition transfers"),
            Needs::FaultInjection => {
                if !self.fault_injection {
                    return Some(format!(
                        "fault injection is off on this node; start it with --enable-fault-injection (config node.enable_fault_injection = true) to use {}",
                        spec.name
                    ));
                }
                self.membership.is_none().then_some("membership")
            }
        };
        if let Some(what) = missing {
            return Some(format!(
                "{} is not available: {what} is not running on this node",
                spec.name
            ));
        }
        (spec.destructive && !confirmed).then(|| {
            format!(
                "refused: {} is destructive ({}); run it again with --yes to confirm",
                spec.name, spec.summary
            )
        })
    }
}

impl Handler<Command> for Admin {
    type Result = ResponseFuture<Vec<u8>>;

    fn handle(&mut self, Command(req): Command, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let id = req.id;
        log::debug!("admin command {} {:?}", req.op, req.args);
        let Some(spec) = commands::find(&req.op) else {
            self.counters.error();
            let reply = err(id, ErrorCode::BadRequest, commands::unknown(&req.op));
            return Box::pin(async move { reply });
        };
        // `--yes` confirms a destructive command; it is no argument of the command itself.
        let confirmed = req.args.iter().any(|a| a == "--yes");
        let args: Vec<String> = req.args.into_iter().filter(|a| a != "--yes").collect();
        if let Some(why) = self.refusal(spec, confirmed) {
            self.counters.error();
            let reply = err(id, ErrorCode::BadRequest, why);
            return Box::pin(async move { reply });
        }
        let reply = match spec.name {
            "help" => match args.first() {
                None => ok(
                    id,
                    HelpReply {
                        commands: commands::COMMANDS,
                    },
                ),
                Some(name) => match commands::find(name) {
                    Some(spec) => ok(id, spec),
                    None => err(id, ErrorCode::BadRequest, commands::unknown(name)),
                },
            },
            "status" => ok(id, self.status()),
            "actors" => ok(
                id,
                ActorsReply {
                    actors: self.registry.snapshot(),
                },
            ),
            "log-level" => match args.first().map(|l| l.parse::<log::LevelFilter>()) {
                None => ok(
                    id,
                    LogLevelReply {
                        log_level: log_level(),
                    },
                ),
                Some(Ok(level)) => {
                    log::set_max_level(level);
                    log::info!("log level set to {} by an admin command", log_level());
                    ok(
                        id,
                        LogLevelReply {
                            log_level: log_level(),
                        },
                    )
                }
                Some(Err(_)) => err(
                    id,
                    ErrorCode::BadRequest,
                    format!(
                        "log level must be one of off, error, warn, info, debug, trace, not {:?}",
                        args[0]
                    ),
                ),
            },
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
            op if spec.needs == Needs::Storage => {
                let hints = self.hints.as_ref().map(|(_, s)| s.snapshot());
                match self.storage.as_ref().and_then(|s| {
                    let sections = self.sections.iter().map(|(n, f)| (*n, f())).collect();
                    storage::command(s, id, op, sections, hints)
                }) {
                    Some(fut) => return fut,
                    None => err(id, ErrorCode::Internal, "BUG: storage command not handled"),
                }
            }
            "transfers" | "leave" => {
                let Some(t) = self.transfers.clone() else {
                    return Box::pin(async move {
                        err(id, ErrorCode::Internal, "BUG: transfers checked above")
                    });
                };
                let leave = spec.name == "leave";
                return Box::pin(async move {
                    if leave {
                        match t.leave.send(crate::handoff::StartLeave).await {
                            Ok(Ok(msg)) => ok(
                                id,
                                LeaveReply {
                                    leaving: true,
                                    message: msg,
                                },
                            ),
                            Ok(Err(why)) => err(id, ErrorCode::BadRequest, why),
                            Err(e) => err(id, ErrorCode::Internal, e.to_string()),
                        }
                    } else {
                        match t.status.send(crate::handoff::TransfersStatus).await {
                            Ok(r) => ok(id, r),
                            Err(e) => err(id, ErrorCode::Internal, e.to_string()),
                        }
                    }
                });
            }
            "remove" => {
                let Some(m) = self.membership.clone() else {
                    return Box::pin(async move {
                        err(id, ErrorCode::Internal, "BUG: membership checked above")
                    });
                };
                let node = args.iter().find(|a| !a.starts_with("--")).cloned();
                return Box::pin(async move {
                    let Some(node) = node else {
                        return err(id, ErrorCode::BadRequest, "usage: remove NODE --yes");
                    };
                    match m
                        .send(crate::membership::actor::RemoveMember(NodeId(node.clone())))
                        .await
                    {
                        Ok(Ok(())) => ok(
                            id,
                            LeaveReply {
                                leaving: true,
                                message: format!("{node} is removed (status left); its partitions are copied to their new owners: `troupe admin transfers` on the others shows progress"),
                            },
                        ),
                        Ok(Err(why)) => err(id, ErrorCode::BadRequest, why),
                        Err(e) => err(id, ErrorCode::Internal, e.to_string()),
                    }
                });
            }
            "hints" => {
                let Some((list, _)) = &self.hints else {
                    return Box::pin(async move {
                        err(id, ErrorCode::Internal, "BUG: hints not attached")
                    });
                };
                let r = list.send(crate::hints::ListHints);
                return Box::pin(async move {
                    r.await.map_or_else(
                        |e| err(id, ErrorCode::Internal, e.to_string()),
                        |v| ok(id, v),
                    )
                });
            }
            op if spec.needs == Needs::Coordinator => {
                if let Some(c) = &self.coordinator {
                    return replication::run(c, id, op, &args);
                }
                err(
                    id,
                    ErrorCode::Internal,
                    "BUG: replication command not handled",
                )
            }
            "repair" => match &self.antientropy {
                Some(a) => return antientropy::run(a, id, &args),
                None => err(id, ErrorCode::Internal, "BUG: anti-entropy checked above"),
            },
            op @ ("members" | "fault") => {
                let Some(m) = self.membership.clone() else {
                    return Box::pin(async move {
                        err(id, ErrorCode::Internal, "BUG: membership checked above")
                    });
                };
                return Box::pin(async move {
                    let failed = |e: MailboxError| err(id, ErrorCode::Internal, e.to_string());
                    match op {
                        "members" => match m.send(ListMembers).await {
                            Ok(members) => ok(id, MembersReply { members }),
                            Err(e) => failed(e),
                        },
                        _ => match m.send(Fault(args)).await {
                            Ok(Ok(dropping)) => ok(id, FaultReply { dropping }),
                            Ok(Err(usage)) => err(id, ErrorCode::BadRequest, usage),
                            Err(e) => failed(e),
                        },
                    }
                });
            }
            other => err(
                id,
                ErrorCode::Internal,
                format!("BUG: {other} is in the command table but not dispatched"),
            ),
        };
        Box::pin(async move { reply })
    }
}

/// Accepts admin connections until `shutdown` is cancelled.
/// `token`: the hash of `auth.admin_token` (`None`: no token needed). A request without it
/// gets `unauthorized` and the connection is closed; tokens are compared as blake3 hashes
/// (constant time) and never logged.
/// Admin connections open at once; more are closed at accept.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;

pub async fn serve(
    listener: TcpListener,
    admin: Addr<Admin>,
    max_frame_bytes: usize,
    token: Option<blake3::Hash>,
    shutdown: CancellationToken,
    tls: Option<Arc<crate::tls::NodeTls>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    while let Some((stream, addr)) = crate::net::accept(&listener, &shutdown, "admin").await {
        // Bounded: each connection may buffer a frame of up to `max_frame_bytes`.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!(
                "admin connection from {addr} refused: {MAX_ADMIN_CONNECTIONS} already open"
            );
            continue; // dropping the stream closes it
        };
        let (admin, shutdown, tls) = (admin.clone(), shutdown.clone(), tls.clone());
        actix::spawn(async move {
            // TLS inside the slot: a stalled handshake holds it for tls.handshake_timeout.
            let stream: crate::tls::BoxStream = match tls {
                Some(tls) => match tls.accept(stream, crate::tls::Port::Admin).await {
                    Ok(s) => s,
                    Err(e) => {
                        log::info!("admin client {addr}: {e}; closing");
                        return;
                    }
                },
                None => Box::new(stream),
            };
            serve_one(
                stream,
                addr.to_string(),
                admin,
                max_frame_bytes,
                token,
                shutdown,
            )
            .await;
            drop(slot);
        });
    }
}

async fn serve_one(
    stream: crate::tls::BoxStream,
    peer: String,
    admin: Addr<Admin>,
    max_frame_bytes: usize,
    token: Option<blake3::Hash>,
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
            Ok(req)
                if token.is_some_and(|t| {
                    req.token.as_deref().map(|g| blake3::hash(g.as_bytes())) != Some(t)
                }) =>
            {
                log::warn!(
                    "admin client {peer} sent {} with {}; closing",
                    req.op,
                    if req.token.is_some() {
                        "a wrong token"
                    } else {
                        "no token"
                    }
                );
                let reply = err(
                    req.id,
                    ErrorCode::Unauthorized,
                    "this node needs its admin token (auth.admin_token): pass --token or set TROUPE_ADMIN_TOKEN",
                );
                let _ = framed.send(Bytes::from(reply)).await;
                return;
            }
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
