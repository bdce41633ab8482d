//! The client Listener actor and one Connection actor per client socket.
//!
//! A connection is three pieces on one arbiter:
//! - a **reader task** that takes a permit from the connection's semaphore (at most
//!   `max_inflight` requests in flight) per frame, reads through an 8 KiB read-ahead buffer,
//!   decodes every frame that arrived whole in it where it lies, and hands the decoded
//!   frames to the actor as one message; the batch goes before the reader waits for
//!   anything (a permit or the socket), so no request waits for others that are not there;
//! - the **Connection actor**, which owns the session (hello, client name) and dispatches
//!   the batch: its gets and writes go to the coordinator as one `ClientBatch`, each with a
//!   callback that frames the response into the connection's outbox (on the coordinator's
//!   thread; dropped unanswered, it answers `timeout`/`internal` itself);
//! - a **writer task** that owns the socket's write half, writes whatever the outbox holds
//!   in one go, and releases each request's permit only after its response reached the
//!   socket (`outbox`).
//!
//! So a client that stops reading stalls its own writer, which holds the permits, which stops
//! the reader: the node keeps at most `max_inflight` responses for that connection and TCP
//! pushes back on the client. Memory per connection is bounded by `max_inflight` responses
//! plus one read buffer of at most `max_frame_bytes` (the read-ahead buffer is counted in
//! the 64 KiB a connection may read without the node's byte budget); between writes it
//! keeps two write buffers of at most 32 KiB (`outbox::KEEP_BYTES`).
//!
//! With `[tls]` the TLS handshake runs first, on the connection's arbiter (`crate::tls`); the
//! reader and writer tasks then own the halves of the TLS stream (`tokio::io::split`), plain
//! sockets' halves otherwise.
//!
//! A frame over the maximum gets `too_large` and the connection is closed (the stream is no
//! longer in sync); an undecodable or invalid request gets `bad_request` and the connection
//! stays open.
//!
//! Every answered request is timed, from the frame read to its response handed to the
//! socket's writer (recorded just before the write, so a client that saw the answer can also
//! see it counted), into the node's [`RequestStats`] by op and result: lock-free atomics,
//! recorded by the writer task, which holds the connection's one reference to them.

mod io;
mod listener;
mod outbox;
pub mod reader;

pub use listener::{Accepted, Listener, ListenerConfig};

use io::{run_io, Answering};
use outbox::{Outbox, Writer};

use crate::coordinator::keys::ClientKeys;
use crate::coordinator::{ClientBatch, ClientError, ClientGet, ClientOp, ClientOps, ClientWrite};
use crate::stats::{op_index, result_index, ActorCounters, RequestStats};
use crate::tls::{BoxRead, BoxWrite, NodeTls, Port};
use actix::prelude::*;
use reader::{read_frame, ByteBudget, ReadError};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use troupe_protocol::crdt::{TypeKind, Typed, TypedOp};
use troupe_protocol::message::DEFAULT_KEYS_LIMIT;
use troupe_protocol::message::{
    decode_request, Reply, Request, RequestError, Response, PROTOCOL_VERSION,
};
use troupe_protocol::ErrorCode;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// What every connection needs to know; shared by the listener.
#[derive(Clone)]
pub struct ConnectionShared {
    pub node_id: Arc<str>,
    /// Every get, put and delete goes through the replication coordinator.
    pub coordinator_get: Recipient<ClientGet>,
    pub coordinator_write: Recipient<ClientWrite>,
    /// Gets and writes decoded from one batch of received frames, in one message.
    pub coordinator_batch: Recipient<ClientBatch>,
    pub coordinator_keys: Recipient<ClientKeys>,
    pub coordinator_counters: Arc<ActorCounters>,
    pub counters: Arc<ActorCounters>,
    /// Latency by op and result, for `troupe_request_duration_seconds`.
    pub requests: Arc<RequestStats>,
    pub max_inflight: usize,
    pub max_frame_bytes: usize,
    /// Cancelled at shutdown: readers stop reading, in-flight requests finish.
    pub shutdown: CancellationToken,
    /// `auth.client_tokens` (empty: the port is open).
    pub tokens: Arc<ClientTokens>,
    /// `net.max_inflight_bytes`: request bytes read but not answered, node-wide.
    pub budget: ByteBudget,
    /// `net.read_timeout`: a frame begun must complete within it.
    pub read_timeout: std::time::Duration,
    /// `[tls]`: when set, every connection is TLS (handshake on the connection's arbiter).
    pub tls: Option<Arc<NodeTls>>,
}

/// The client tokens a `hello` must carry one of. Kept as blake3 hashes and compared as
/// such (blake3's `Hash` equality is constant-time), so neither a token's bytes nor its
/// length leak through timing; never logged.
#[derive(Default)]
pub struct ClientTokens(Vec<blake3::Hash>);

impl ClientTokens {
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> ClientTokens {
        ClientTokens(
            tokens
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(|t| blake3::hash(t.as_bytes()))
                .collect(),
        )
    }

    /// No tokens configured: every client is let in.
    pub fn open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `token` is one of them (always, when none are configured).
    pub fn admits(&self, token: Option<&str>) -> bool {
        if self.open() {
            return true;
        }
        let Some(t) = token else { return false };
        let h = blake3::hash(t.as_bytes());
        // Check every one, not stopping at a match.
        self.0.iter().fold(false, |ok, k| ok | (*k == h))
    }
}

/// What a request holds until its response is written: its slot among the connection's
/// `max_inflight` (always a permit of the connection's one semaphore: the writer merges
/// the slots of one write, which only permits of one semaphore allow), and the bytes it
/// took from the node's [`ByteBudget`].
pub(crate) struct Held {
    slot: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
}

/// The frames the reader task had received, decoded, each with what counts it as in flight.
#[derive(Message)]
#[rtype(result = "()")]
struct Incoming {
    frames: SmallVec<[Received; 1]>,
    /// When the batch was handed on: the requests' latency starts here, mailbox wait
    /// included.
    at: Instant,
}

/// Pushes onto a batch that holds one item inline: a lone request (the common case at low
/// load) costs no allocation, and a batch that outgrows it makes room for 8 at once.
fn push_batched<T>(batch: &mut SmallVec<[T; 1]>, item: T) {
    if batch.len() == 1 {
        batch.reserve(7);
    }
    batch.push(item);
}

/// One decoded frame and its slot.
struct Received {
    decoded: Result<(u64, Request), RequestError>,
    permit: Held,
}

/// A request being timed: its op (an index into `stats::OPS`) and when it was read.
#[derive(Clone, Copy)]
struct Timed {
    op: usize,
    at: Instant,
}

/// A timed request's answer: op, result (an index into `stats::RESULTS`), read time.
#[derive(Clone, Copy)]
struct Sample {
    op: usize,
    result: usize,
    at: Instant,
}

impl Timed {
    fn answered(self, resp: &Response) -> Sample {
        Sample {
            op: self.op,
            result: result_index(resp.err.as_ref().map(|e| &e.code)),
            at: self.at,
        }
    }
}

/// The reader stopped: the peer closed, the node is shutting down, or the stream broke.
#[derive(Message)]
#[rtype(result = "()")]
struct ReaderStopped {
    /// Set when the peer sent an oversized frame: answer `too_large`, then close.
    too_large: Option<String>,
}

pub struct Connection {
    shared: ConnectionShared,
    stream: Option<TcpStream>,
    out: Outbox,
    /// The outbox's writer side, until the socket's writer task takes it.
    writer: Option<Writer>,
    said_hello: bool,
    peer: String,
    /// This turn's gets and writes for the coordinator, sent as one [`ClientBatch`].
    batch: ClientOps,
}

impl Connection {
    pub fn new(shared: ConnectionShared, stream: TcpStream) -> Connection {
        let (out, writer) = Outbox::new(shared.max_frame_bytes);
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        Connection {
            shared,
            stream: Some(stream),
            out,
            writer: Some(writer),
            said_hello: false,
            peer,
            batch: ClientOps::new(),
        }
    }

    /// A connection whose socket could not be set up; it stops at once.
    fn closed(shared: ConnectionShared) -> Connection {
        Connection {
            shared,
            stream: None,
            out: Outbox::closed(),
            writer: None,
            said_hello: false,
            peer: "?".into(),
            batch: ClientOps::new(),
        }
    }

    fn respond(&self, resp: Response, permit: Option<Held>, t: Option<Timed>) {
        self.out.push(&resp, permit, t.map(|t| t.answered(&resp)));
    }

    fn dispatch(&mut self, id: u64, req: Request, permit: Held, at: Instant) {
        let t = Some(Timed {
            op: op_index(req.op()),
            at,
        });
        let key_too_long = req.key().is_some_and(|k| k.len() > MAX_KEY_BYTES);
        if key_too_long {
            let msg = format!("keys are limited to {MAX_KEY_BYTES} bytes");
            return self.respond(Response::err(id, ErrorCode::TooLarge, msg), Some(permit), t);
        }
        match req {
            Request::Hello { version, .. } if version != PROTOCOL_VERSION => {
                let msg = format!("protocol version {version} is not supported; this node speaks {PROTOCOL_VERSION}");
                self.respond(
                    Response::err(id, ErrorCode::BadRequest, msg),
                    Some(permit),
                    t,
                );
            }
            Request::Hello { .. } => {
                self.said_hello = true;
                let reply = Reply::hello(self.shared.node_id.to_string());
                self.respond(Response::ok(id, reply), Some(permit), t);
            }
            _ if !self.said_hello => {
                let msg = "the first request on a connection must be hello";
                self.respond(
                    Response::err(id, ErrorCode::BadRequest, msg),
                    Some(permit),
                    t,
                );
            }
            Request::Ping => self.respond(Response::ok(id, Reply::empty()), Some(permit), t),
            Request::Get { key, r, after } => {
                let get = ClientGet {
                    key,
                    r,
                    after,
                    as_type: None,
                };
                self.get(id, get, |g| Reply::get(g.values, g.context), (permit, t))
            }
            Request::Counter { key, r } => {
                let get = typed_get(key, r, TypeKind::Counter);
                self.get(
                    id,
                    get,
                    |g| Reply::counter(counter_value(g.typed.as_ref())),
                    (permit, t),
                )
            }
            Request::Smembers { key, r } => {
                let get = typed_get(key, r, TypeKind::Set);
                self.get(
                    id,
                    get,
                    |g| match g.typed {
                        Some(Typed::Set(s)) => {
                            Reply::members(s.members().map(<[u8]>::to_vec).collect())
                        }
                        _ => Reply::members(Vec::new()),
                    },
                    (permit, t),
                )
            }
            Request::RegGet { key, r } => {
                let get = typed_get(key, r, TypeKind::Register);
                self.get(
                    id,
                    get,
                    |g| match g.typed {
                        Some(Typed::Register(reg)) => Reply::register(Some(reg.value)),
                        _ => Reply::register(None),
                    },
                    (permit, t),
                )
            }
            Request::Put {
                key,
                value,
                context,
                w,
            } => {
                let write = plain_write(key, Some(value), context, w);
                self.write(
                    id,
                    write,
                    |w| Reply::put_with_values(w.context, w.values),
                    (permit, t),
                )
            }
            Request::Delete { key, context, w } => {
                let write = plain_write(key, None, context, w);
                self.write(id, write, |_| Reply::empty(), (permit, t))
            }
            Request::Incr { key, by, w } => {
                let write = typed_write(key, w, TypedOp::Incr { by });
                self.write(
                    id,
                    write,
                    |w| Reply::counter(counter_value(w.typed.as_ref())),
                    (permit, t),
                )
            }
            Request::Sadd { key, members, w } => {
                let members = members
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect();
                let write = typed_write(key, w, TypedOp::SetAdd { members });
                self.write(id, write, |_| Reply::empty(), (permit, t))
            }
            Request::Srem { key, members, w } => {
                let members = members
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect();
                let write = typed_write(key, w, TypedOp::SetRemove { members });
                self.write(id, write, |_| Reply::empty(), (permit, t))
            }
            Request::Keys {
                prefix,
                limit,
                after,
            } => {
                let list = ClientKeys {
                    prefix,
                    limit: limit.unwrap_or(DEFAULT_KEYS_LIMIT) as usize,
                    after,
                };
                let to = &self.shared.coordinator_keys;
                self.read(id, to, list, |p| Reply::keys(p.keys, p.cursor), (permit, t))
            }
            Request::RegPut { key, value, w } => {
                let write = typed_write(key, w, TypedOp::RegPut { value });
                self.write(id, write, |_| Reply::empty(), (permit, t))
            }
        }
    }

    /// Sends a read (`ClientGet`, `ClientKeys`) to the coordinator at `to`; its reply
    /// becomes the response through `ok`. Nothing was written, so a coordinator that did
    /// not answer is `internal`.
    fn read<M, R>(
        &self,
        id: u64,
        to: &Recipient<M>,
        msg: M,
        ok: fn(R) -> Reply,
        (permit, t): (Held, Option<Timed>),
    ) where
        M: Message<Result = Result<R, crate::coordinator::ClientError>> + Send + 'static,
        M::Result: Send,
        R: 'static,
    {
        self.shared.coordinator_counters.sent();
        let read = to.send(msg);
        self.reply_later(permit, t, async move {
            match read.await {
                Ok(Ok(got)) => Response::ok(id, ok(got)),
                Ok(Err(e)) => Response::err(id, e.code, e.msg),
                Err(e) => Response::err(
                    id,
                    ErrorCode::Internal,
                    format!("the replication coordinator did not answer: {e}"),
                ),
            }
        });
    }

    /// Queues a get for this turn's [`ClientBatch`]; its reply becomes the response through
    /// `ok`. Nothing was written, so a coordinator that did not answer is `internal`.
    fn get(
        &mut self,
        id: u64,
        get: ClientGet,
        ok: fn(crate::coordinator::GetReply) -> Reply,
        (permit, t): (Held, Option<Timed>),
    ) {
        let answer = Answering::new(
            id,
            ok,
            &self.out,
            permit,
            t,
            (
                ErrorCode::Internal,
                "the replication coordinator did not answer (it stopped)",
            ),
        );
        let op = ClientOp::Get(get, Box::new(move |r| answer.answer(r)));
        push_batched(&mut self.batch, op);
    }

    /// Queues a write for this turn's [`ClientBatch`]; its reply becomes the response
    /// through `ok`.
    fn write(
        &mut self,
        id: u64,
        write: ClientWrite,
        ok: fn(crate::coordinator::WriteReply) -> Reply,
        (permit, t): (Held, Option<Timed>),
    ) {
        // The coordinator is gone with the write: its outcome is unknown.
        let stopped = (ErrorCode::Timeout, "the replication coordinator stopped while handling the write; it may or may not have been applied");
        let answer = Answering::new(id, ok, &self.out, permit, t, stopped);
        let op = ClientOp::Write(write, Box::new(move |r| answer.answer(r)));
        push_batched(&mut self.batch, op);
    }

    /// Hands this turn's gets and writes to the coordinator as one message. `do_send`
    /// skips the mailbox limit; each request holds one of the connection's slots, so
    /// what one connection can have queued stays bounded by `max_inflight`.
    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.shared.coordinator_counters.sent();
        let batch = std::mem::take(&mut self.batch);
        self.shared.coordinator_batch.do_send(ClientBatch(batch));
    }

    /// Runs `fut` on this arbiter and queues its response; does not block the actor.
    fn reply_later(
        &self,
        permit: Held,
        t: Option<Timed>,
        fut: impl std::future::Future<Output = Response> + 'static,
    ) {
        let out = self.out.clone();
        actix::spawn(async move {
            let resp = fut.await;
            out.push(&resp, Some(permit), t.map(|t| t.answered(&resp)));
        });
    }
}

fn typed_get(key: Vec<u8>, r: Option<troupe_protocol::Quorum>, kind: TypeKind) -> ClientGet {
    ClientGet {
        key,
        r,
        after: None,
        as_type: Some(kind),
    }
}

fn plain_write(
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    context: Option<Vec<u8>>,
    w: Option<troupe_protocol::Quorum>,
) -> ClientWrite {
    ClientWrite {
        key,
        value,
        context,
        w,
        typed: None,
    }
}

fn typed_write(key: Vec<u8>, w: Option<troupe_protocol::Quorum>, op: TypedOp) -> ClientWrite {
    ClientWrite {
        key,
        value: None,
        context: None,
        w,
        typed: Some(op),
    }
}

/// A counter's value (0 for a key that holds none yet).
fn counter_value(t: Option<&Typed>) -> i64 {
    match t {
        Some(Typed::Counter(c)) => c.value(),
        _ => 0,
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // `instances` was raised by the listener when it accepted the socket.
        let (Some(stream), Some(writer)) = (self.stream.take(), self.writer.take()) else {
            ctx.stop();
            return;
        };
        let _ = stream.set_nodelay(true);
        let (shared, peer, conn) = (self.shared.clone(), self.peer.clone(), ctx.address());
        let Some(tls) = shared.tls.clone() else {
            let (rd, wr) = stream.into_split();
            run_io(Box::new(rd), Box::new(wr), writer, conn, shared, peer);
            return;
        };
        // The handshake runs here, on the connection's arbiter, bounded by
        // tls.handshake_timeout; a failed one closes the socket and stops the actor.
        actix::spawn(async move {
            match tls.accept(stream, Port::Client).await {
                Ok(s) => {
                    let (rd, wr) = tokio::io::split(s);
                    run_io(Box::new(rd), Box::new(wr), writer, conn, shared, peer);
                }
                Err(e) => {
                    log::info!("client {peer}: {e}; closing");
                    shared.counters.sent();
                    conn.do_send(ReaderStopped { too_large: None });
                }
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.stopped();
        log::debug!("connection from {} closed", self.peer);
    }
}

impl Handler<Incoming> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        self.shared.counters.handled();
        let at = msg.at;
        for r in msg.frames {
            if !self.received(r.decoded, r.permit, at, ctx) {
                break; // stopped: the rest of the batch is not answered
            }
        }
        self.send_batch();
    }
}

impl Connection {
    /// Handles one decoded frame; `false` once the connection is stopping.
    fn received(
        &mut self,
        decoded: Result<(u64, Request), RequestError>,
        permit: Held,
        at: Instant,
        ctx: &mut Context<Self>,
    ) -> bool {
        match decoded {
            Ok((id, Request::Hello { token, .. }))
                if !self.shared.tokens.admits(token.as_deref()) =>
            {
                // Logged with the peer's address, never with the token; counted in
                // /metrics as `op="hello", result="unauthorized"`.
                self.shared.counters.error();
                let why = if token.is_none() {
                    "no token"
                } else {
                    "a wrong token"
                };
                log::warn!("client {} sent hello with {why}; closing", self.peer);
                let t = Timed {
                    op: op_index("hello"),
                    at,
                };
                let resp = Response::err(
                    id,
                    ErrorCode::Unauthorized,
                    "this node needs a client token in hello (auth.client_tokens); the connection is closed",
                );
                self.respond(resp, Some(permit), Some(t));
                // Stopping drops our outbox handle; the writer ends once that answer is written.
                ctx.stop();
                return false;
            }
            Ok((id, req)) => self.dispatch(id, req, permit, at),
            Err(e) => {
                self.shared.counters.error();
                let resp = Response {
                    id: e.id.unwrap_or(0),
                    ok: None,
                    err: Some(e.error),
                };
                let t = Timed {
                    op: op_index("unknown"),
                    at,
                };
                self.respond(resp, Some(permit), Some(t));
            }
        }
        true
    }
}

impl Handler<ReaderStopped> for Connection {
    type Result = ();

    fn handle(&mut self, msg: ReaderStopped, ctx: &mut Context<Self>) {
        self.shared.counters.handled();
        if let Some(why) = msg.too_large {
            self.shared.counters.error();
            log::debug!("connection from {}: {why}; closing", self.peer);
            self.respond(Response::err(0, ErrorCode::TooLarge, why), None, None);
        }
        // Stopping drops our outbox handle; the writer ends once in-flight responses are
        // written.
        ctx.stop();
    }
}
