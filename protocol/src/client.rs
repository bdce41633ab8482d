//! An async client that pipelines: many requests in flight on one connection, matched to
//! their responses by id.
//!
//! A writer task owns the socket's write half and a reader task its read half. Each call
//! registers a one-shot slot under a fresh id, queues its frame on a bounded channel and waits.
//! When the connection breaks every waiting call gets [`ClientError::Closed`].
//!
//! Calls made concurrently on one `Client` (or its clones) are **not ordered**: the node runs
//! a connection's requests concurrently, so a `get` issued while a `put` of the same key is in
//! flight may see the value before that put. To read your own write, await the put and pass
//! its context as `after` (PROTOCOL.md §2, §4):
//!
//! ```no_run
//! # async fn demo(client: troupe_protocol::Client) -> Result<(), troupe_protocol::ClientError> {
//! let put = client.put_full(b"k", b"v2", None, None).await?;
//! // Answers with a version that covers the put, never the value before it.
//! let got = client.get_after(b"k", None, Some(put.context)).await?;
//! assert!(got.values.iter().any(|v| v == b"v2"));
//! # Ok(()) }
//! ```

use crate::admin::AdminRequest;
use crate::codec::{FrameCodec, DEFAULT_MAX_FRAME_BYTES};
use crate::error::ErrorBody;
use crate::message::{
    encode_request, Quorum, Reply, ReplyValue, Request, Response, PROTOCOL_VERSION,
};
use crate::tls::{ClientTls, TlsConnector};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not a `#[source]`: the message already shows the OS error, and an error chain
    /// printer (anyhow's `{:#}`) would print it a second time.
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    /// The server answered with an error; the request may or may not have been applied
    /// (see the code).
    #[error("{}: {}", .0.code, .0.msg)]
    Server(ErrorBody),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection closed")]
    Closed,
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// The result of a `get`: zero values (not found), one, or several concurrent siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    pub values: Vec<Vec<u8>>,
    pub context: Vec<u8>,
}

/// The result of a `put`: the new context, and the key's values when it holds more than
/// the version just written (PROTOCOL.md §9: the context covers exactly those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub context: Vec<u8>,
    /// `None`: the written value is the key's only version. `Some`: concurrent siblings
    /// remain (the new value among them, as `get` shows them); a write with `context`
    /// replaces them all, so merge them first.
    pub values: Option<Vec<Vec<u8>>>,
}

type Slot = oneshot::Sender<Result<bytes::BytesMut, ClientError>>;

struct Shared {
    next_id: AtomicU64,
    /// Waiting calls by id; `None` once the connection is gone, so a call that registers
    /// after the reader stopped fails at once instead of waiting forever.
    pending: Mutex<Option<HashMap<u64, Slot>>>,
}

/// A pipelining connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Bytes>,
    timeout: Option<Duration>,
    node: Arc<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

impl Client {
    /// Connects to a node's client port and says hello.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        client_name: &str,
    ) -> Result<Client, ClientError> {
        Self::connect_with(addr, client_name, None, None).await
    }

    /// Connects with an optional auth token and per-call timeout.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        client_name: &str,
        token: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Client, ClientError> {
        Self::connect_raw(addr, timeout)
            .await?
            .hello(client_name, token)
            .await
    }

    /// Sends `hello` (id 0) and keeps the node's name from the reply.
    async fn hello(
        mut self,
        client_name: &str,
        token: Option<String>,
    ) -> Result<Client, ClientError> {
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: client_name.to_string(),
            token,
        };
        let reply = self.call_request_with_id(0, &hello).await?;
        self.node = Arc::new(reply.node.unwrap_or_default());
        Ok(self)
    }

    /// Connects without sending hello (for the admin port, or tests).
    pub async fn connect_raw(
        addr: impl ToSocketAddrs,
        timeout: Option<Duration>,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Self::start(rd, wr, timeout))
    }

    /// [`Client::connect_with`] over TLS when `tls` is given (plain TCP otherwise).
    pub async fn connect_tls(
        addr: &str,
        client_name: &str,
        token: Option<String>,
        timeout: Option<Duration>,
        tls: Option<&ClientTls>,
    ) -> Result<Client, ClientError> {
        Self::connect_raw_tls(addr, timeout, tls)
            .await?
            .hello(client_name, token)
            .await
    }

    /// [`Client::connect_raw`] over TLS when `tls` is given: the node's certificate must be
    /// signed by the CA and carry `tls.server_name` (default: the host of `addr`).
    pub async fn connect_raw_tls(
        addr: &str,
        timeout: Option<Duration>,
        tls: Option<&ClientTls>,
    ) -> Result<Client, ClientError> {
        let Some(tls) = tls else {
            return Self::connect_raw(addr, timeout).await;
        };
        let name = tls
            .name_for(addr)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let connector = TlsConnector::from(tls.config.clone());
        let stream = connector.connect(name, stream).await?;
        let (rd, wr) = tokio::io::split(stream);
        Ok(Self::start(rd, wr, timeout))
    }

    /// Runs the writer and reader tasks over a connected stream's halves.
    fn start<R, W>(rd: R, wr: W, timeout: Option<Duration>) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Some(HashMap::new())),
        });
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        let codec = FrameCodec::new(DEFAULT_MAX_FRAME_BYTES);
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(wr, codec);
            while let Some(frame) = rx.recv().await {
                if sink.feed(frame).await.is_err() {
                    return;
                }
                // Batch whatever else is already queued into the same write.
                while let Ok(frame) = rx.try_recv() {
                    if sink.feed(frame).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        });
        let reader_shared = shared.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(rd, codec);
            while let Some(Ok(frame)) = frames.next().await {
                let Ok(IdOnly { id }) = rmp_serde::from_slice::<IdOnly>(&frame) else {
                    break;
                };
                let slot = lock(&reader_shared.pending)
                    .as_mut()
                    .and_then(|p| p.remove(&id));
                if let Some(slot) = slot {
                    let _ = slot.send(Ok(frame));
                }
            }
            // Connection gone: fail everything still waiting, and every later call.
            let waiting = lock(&reader_shared.pending).take();
            for (_, slot) in waiting.into_iter().flatten() {
                let _ = slot.send(Err(ClientError::Closed));
            }
        });
        Client {
            shared,
            tx,
            timeout,
            node: Arc::new(String::new()),
        }
    }

    /// The node id the server gave in its hello reply.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sends one frame body under `id` and waits for the response body.
    pub async fn call_raw(&self, id: u64, body: Vec<u8>) -> Result<bytes::BytesMut, ClientError> {
        let (slot_tx, slot_rx) = oneshot::channel();
        match lock(&self.shared.pending).as_mut() {
            Some(p) => p.insert(id, slot_tx),
            None => return Err(ClientError::Closed),
        };
        if self.tx.send(Bytes::from(body)).await.is_err() {
            self.forget(id);
            return Err(ClientError::Closed);
        }
        let wait = async { slot_rx.await.map_err(|_| ClientError::Closed)? };
        match self.timeout {
            None => wait.await,
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r,
                Err(_) => {
                    self.forget(id);
                    Err(ClientError::Timeout(t))
                }
            },
        }
    }

    fn forget(&self, id: u64) {
        if let Some(p) = lock(&self.shared.pending).as_mut() {
            p.remove(&id);
        }
    }

    /// A fresh request id.
    pub fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn call_request_with_id(&self, id: u64, req: &Request) -> Result<Reply, ClientError> {
        let body = self.call_raw(id, encode_request(id, req)).await?;
        let resp = Response::decode(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        resp.into_result().map_err(ClientError::Server)
    }

    /// Sends any request and returns the server's reply.
    pub async fn call(&self, req: &Request) -> Result<Reply, ClientError> {
        self.call_request_with_id(self.next_id(), req).await
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call(&Request::Ping).await.map(|_| ())
    }

    pub async fn get(&self, key: &[u8]) -> Result<GetResult, ClientError> {
        self.get_with(key, None).await
    }

    pub async fn get_with(&self, key: &[u8], r: Option<Quorum>) -> Result<GetResult, ClientError> {
        self.get_after(key, r, None).await
    }

    /// A get whose answer must cover `after` (a context from an earlier reply): read your
    /// writes through any node. Pass the context a [`Client::put_full`] returned: calls in
    /// flight together are not ordered (see the module docs), `after` is what orders them.
    pub async fn get_after(
        &self,
        key: &[u8],
        r: Option<Quorum>,
        after: Option<Vec<u8>>,
    ) -> Result<GetResult, ClientError> {
        let reply = self
            .call(&Request::Get {
                key: key.to_vec(),
                r,
                after,
            })
            .await?;
        Ok(GetResult {
            values: reply
                .values
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.into_vec())
                .collect(),
            context: reply.context.map(|c| c.into_vec()).unwrap_or_default(),
        })
    }

    /// Stores `value`; returns the new causal context. It may cover concurrent siblings
    /// the reply also returned (dropped here): use [`Client::put_full`] to write again with
    /// it, or `get` first.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        context: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        self.put_with(key, value, context, None).await
    }

    /// Stores `value` with write quorum `w`; returns the new causal context (see
    /// [`Client::put`] for what it covers).
    pub async fn put_with(
        &self,
        key: &[u8],
        value: &[u8],
        context: Option<Vec<u8>>,
        w: Option<Quorum>,
    ) -> Result<Vec<u8>, ClientError> {
        Ok(self.put_full(key, value, context, w).await?.context)
    }

    /// Stores `value` with write quorum `w`; returns the new context and, when the key
    /// holds other versions too, every value that context covers.
    pub async fn put_full(
        &self,
        key: &[u8],
        value: &[u8],
        context: Option<Vec<u8>>,
        w: Option<Quorum>,
    ) -> Result<PutResult, ClientError> {
        let reply = self
            .call(&Request::Put {
                key: key.to_vec(),
                value: value.to_vec(),
                context,
                w,
            })
            .await?;
        Ok(PutResult {
            context: reply.context.map(|c| c.into_vec()).unwrap_or_default(),
            values: reply
                .values
                .map(|vs| vs.into_iter().map(|v| v.into_vec()).collect()),
        })
    }

    pub async fn delete(&self, key: &[u8], context: Option<Vec<u8>>) -> Result<(), ClientError> {
        self.delete_with(key, context, None).await
    }

    /// Deletes the versions `context` names (a delete marker), with write quorum `w`.
    pub async fn delete_with(
        &self,
        key: &[u8],
        context: Option<Vec<u8>>,
        w: Option<Quorum>,
    ) -> Result<(), ClientError> {
        self.call(&Request::Delete {
            key: key.to_vec(),
            context,
            w,
        })
        .await
        .map(|_| ())
    }

    /// Counter: adds `by` (negative subtracts) and returns the value the coordinating node
    /// saw right after it (other nodes may have counted increments it has not seen yet).
    /// **Not idempotent**: after a `timeout` the increment may or may not have happened, so
    /// a retry may count it twice (PROTOCOL.md §10).
    pub async fn incr(&self, key: &[u8], by: i64) -> Result<i64, ClientError> {
        self.incr_with(key, by, None).await
    }

    /// [`Client::incr`] with write quorum `w`.
    pub async fn incr_with(
        &self,
        key: &[u8],
        by: i64,
        w: Option<Quorum>,
    ) -> Result<i64, ClientError> {
        let reply = self
            .call(&Request::Incr {
                key: key.to_vec(),
                by,
                w,
            })
            .await?;
        int_value("incr", reply)
    }

    /// Counter: its value (0 for a key that holds none).
    pub async fn counter(&self, key: &[u8]) -> Result<i64, ClientError> {
        self.counter_with(key, None).await
    }

    /// [`Client::counter`] with read quorum `r`.
    pub async fn counter_with(&self, key: &[u8], r: Option<Quorum>) -> Result<i64, ClientError> {
        let reply = self
            .call(&Request::Counter {
                key: key.to_vec(),
                r,
            })
            .await?;
        int_value("counter", reply)
    }

    /// Set: adds `members` (safe to retry after a `timeout`).
    pub async fn sadd<M: AsRef<[u8]>>(&self, key: &[u8], members: &[M]) -> Result<(), ClientError> {
        self.sadd_with(key, members, None).await
    }

    /// [`Client::sadd`] with write quorum `w`.
    pub async fn sadd_with<M: AsRef<[u8]>>(
        &self,
        key: &[u8],
        members: &[M],
        w: Option<Quorum>,
    ) -> Result<(), ClientError> {
        self.call(&Request::Sadd {
            key: key.to_vec(),
            members: owned(members),
            w,
        })
        .await
        .map(|_| ())
    }

    /// Set: removes `members` as far as the coordinating node has seen them; an add it has
    /// not seen (a concurrent one) survives (add wins).
    pub async fn srem<M: AsRef<[u8]>>(&self, key: &[u8], members: &[M]) -> Result<(), ClientError> {
        self.srem_with(key, members, None).await
    }

    /// [`Client::srem`] with write quorum `w`.
    pub async fn srem_with<M: AsRef<[u8]>>(
        &self,
        key: &[u8],
        members: &[M],
        w: Option<Quorum>,
    ) -> Result<(), ClientError> {
        self.call(&Request::Srem {
            key: key.to_vec(),
            members: owned(members),
            w,
        })
        .await
        .map(|_| ())
    }

    /// Set: its members in ascending byte order (none for a key that holds no set).
    pub async fn smembers(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        self.smembers_with(key, None).await
    }

    /// [`Client::smembers`] with read quorum `r`.
    pub async fn smembers_with(
        &self,
        key: &[u8],
        r: Option<Quorum>,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let reply = self
            .call(&Request::Smembers {
                key: key.to_vec(),
                r,
            })
            .await?;
        match reply.members {
            Some(m) => Ok(m.into_iter().map(|b| b.into_vec()).collect()),
            None => Err(ClientError::Protocol(
                "the smembers reply has no \"members\"".into(),
            )),
        }
    }

    /// Register: writes `value` (last writer wins, by the coordinator's hybrid clock, then
    /// its actor id).
    pub async fn reg_put(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.reg_put_with(key, value, None).await
    }

    /// [`Client::reg_put`] with write quorum `w`.
    pub async fn reg_put_with(
        &self,
        key: &[u8],
        value: &[u8],
        w: Option<Quorum>,
    ) -> Result<(), ClientError> {
        self.call(&Request::RegPut {
            key: key.to_vec(),
            value: value.to_vec(),
            w,
        })
        .await
        .map(|_| ())
    }

    /// One page of live keys in byte order (`keys` op): those starting with `prefix`, after
    /// `after`, at most `limit` (server default 1000). Returns the keys and, when more may
    /// follow, the cursor to pass as `after` for the next page.
    pub async fn keys(
        &self,
        prefix: Option<&[u8]>,
        limit: Option<u32>,
        after: Option<&[u8]>,
    ) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), ClientError> {
        let reply = self
            .call(&Request::Keys {
                prefix: prefix.map(<[u8]>::to_vec),
                limit,
                after: after.map(<[u8]>::to_vec),
            })
            .await?;
        let keys = reply
            .keys
            .unwrap_or_default()
            .into_iter()
            .map(|k| k.into_vec())
            .collect();
        Ok((keys, reply.cursor.map(|c| c.into_vec())))
    }

    /// Register: its value, `None` when the key holds none.
    pub async fn reg_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        self.reg_get_with(key, None).await
    }

    /// [`Client::reg_get`] with read quorum `r`.
    pub async fn reg_get_with(
        &self,
        key: &[u8],
        r: Option<Quorum>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let reply = self
            .call(&Request::RegGet {
                key: key.to_vec(),
                r,
            })
            .await?;
        match reply.value {
            None | Some(ReplyValue::Nil) => Ok(None),
            Some(ReplyValue::Bytes(b)) => Ok(Some(b.into_vec())),
            Some(ReplyValue::Int(i)) => Err(ClientError::Protocol(format!(
                "the reg_get reply's value is the integer {i}, not bin or nil"
            ))),
        }
    }

    /// Runs one admin command (on an admin-port connection) and returns the raw `ok` body
    /// bytes' owner: the whole response frame.
    pub async fn admin(&self, op: &str, args: Vec<String>) -> Result<bytes::BytesMut, ClientError> {
        self.admin_with_token(op, args, None).await
    }

    /// [`Client::admin`] with the node's admin token (`auth.admin_token`).
    pub async fn admin_with_token(
        &self,
        op: &str,
        args: Vec<String>,
        token: Option<String>,
    ) -> Result<bytes::BytesMut, ClientError> {
        let id = self.next_id();
        let req = AdminRequest {
            id,
            op: op.to_string(),
            args,
            token,
        };
        self.call_raw(id, req.encode()).await
    }
}

/// The integer `value` of an `incr` or `counter` reply.
fn int_value(op: &str, reply: Reply) -> Result<i64, ClientError> {
    match reply.value {
        Some(ReplyValue::Int(v)) => Ok(v),
        other => Err(ClientError::Protocol(format!(
            "the {op} reply's value is {other:?}, not an integer"
        ))),
    }
}

fn owned<M: AsRef<[u8]>>(members: &[M]) -> Vec<Vec<u8>> {
    members.iter().map(|m| m.as_ref().to_vec()).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder cannot leave the map inconsistent (single insert/remove), so a
    // poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Postmortem: a call registered after the reader task had already failed the waiting
    /// calls used to wait forever (found by the SIGKILL crash test hanging).
    #[tokio::test]
    async fn calls_after_the_server_closed_fail_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        let client = Client::connect_raw(addr, None).await.unwrap();
        server.await.unwrap();
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(5), client.ping()).await;
            assert!(matches!(r, Ok(Err(ClientError::Closed))), "{r:?}");
        }
    }

    /// The typed calls read their replies as PROTOCOL.md §10 shows them: a canned server
    /// answers each op the way a node does (nil for a missing register).
    #[tokio::test]
    async fn typed_calls_read_their_replies() {
        use crate::message::decode_request;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (rd, wr) = s.into_split();
            let codec = FrameCodec::new(DEFAULT_MAX_FRAME_BYTES);
            let mut frames = FramedRead::new(rd, codec);
            let mut out = FramedWrite::new(wr, codec);
            while let Some(Ok(frame)) = frames.next().await {
                let (id, req) = decode_request(&frame).unwrap();
                let reply = match req {
                    Request::Incr { by, .. } => Reply::counter(10 + by),
                    Request::Counter { .. } => Reply::counter(-3),
                    Request::Smembers { .. } => Reply::members(vec![b"a".to_vec(), vec![0xff]]),
                    Request::RegGet { key, .. } if key == b"none" => Reply::register(None),
                    Request::RegGet { .. } => Reply::register(Some(b"v".to_vec())),
                    _ => Reply::empty(),
                };
                let body = Response::ok(id, reply).encode();
                out.send(Bytes::from(body)).await.unwrap();
            }
        });
        let c = Client::connect_raw(addr, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(c.incr(b"c", -4).await.unwrap(), 6);
        assert_eq!(c.counter_with(b"c", Some(Quorum::One)).await.unwrap(), -3);
        c.sadd(b"s", &[b"a".as_slice()]).await.unwrap();
        c.srem(b"s", &[vec![1u8]]).await.unwrap();
        assert_eq!(
            c.smembers(b"s").await.unwrap(),
            vec![b"a".to_vec(), vec![0xff]]
        );
        c.reg_put(b"r", b"v").await.unwrap();
        assert_eq!(c.reg_get(b"r").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(c.reg_get(b"none").await.unwrap(), None);
        drop(c);
        server.await.unwrap();
    }
}
