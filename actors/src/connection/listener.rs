//! The Listener actor: accepts client sockets and starts a Connection actor for each, spread
//! round-robin over the worker arbiters.
//!
//! At `max_connections` live connections a new socket gets one `overloaded` error frame and
//! is closed (with TLS on, only closed); the existing connections do not notice.

use super::{Connection, ConnectionShared};
use actix::prelude::*;
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedWrite;
use troupe_protocol::message::Response;
use troupe_protocol::{ErrorCode, FrameCodec};

#[derive(Clone)]
pub struct ListenerConfig {
    pub max_connections: usize,
    /// Arbiters that host connection actors.
    pub workers: Vec<ArbiterHandle>,
}

pub struct Listener {
    config: ListenerConfig,
    shared: ConnectionShared,
    listener: Option<TcpListener>,
    next_worker: usize,
}

/// A socket the accept loop took.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Accepted(pub TcpStream);

impl Listener {
    pub fn new(config: ListenerConfig, shared: ConnectionShared, listener: TcpListener) -> Self {
        Listener {
            config,
            shared,
            listener: Some(listener),
            next_worker: 0,
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let addr = ctx.address();
        let shutdown = self.shared.shutdown.clone();
        actix::spawn(async move {
            while let Some((stream, _)) = crate::net::accept(&listener, &shutdown, "client").await {
                if addr.send(Accepted(stream)).await.is_err() {
                    break;
                }
            }
            log::info!("client listener stopped accepting");
        });
    }
}

impl Handler<Accepted> for Listener {
    type Result = ();

    fn handle(&mut self, Accepted(stream): Accepted, _: &mut Context<Self>) {
        let live = self.shared.counters.instances() as usize;
        if live >= self.config.max_connections {
            log::warn!(
                "refusing a client connection: {live} open, limit {}",
                self.config.max_connections
            );
            if self.shared.tls.is_some() {
                // A plain frame would be garbage to a TLS client: just close.
                return;
            }
            let max = self.shared.max_frame_bytes;
            actix::spawn(async move {
                let mut sink = FramedWrite::new(stream, FrameCodec::new(max));
                let resp = Response::err(
                    0,
                    ErrorCode::Overloaded,
                    "too many connections; retry later",
                );
                let _ = sink.send(Bytes::from(resp.encode())).await;
            });
            return;
        }
        // Counted here, not in `started`, so a burst of accepts cannot overshoot the limit.
        self.shared.counters.started();
        let shared = self.shared.clone();
        let workers = &self.config.workers;
        if workers.is_empty() {
            Connection::new(shared, stream).start();
            return;
        }
        // A tokio socket stays registered with the reactor of the thread that accepted it;
        // used from another arbiter, every readiness event would cost a cross-thread wakeup.
        // Hand over the std socket and register it on the worker's own reactor instead.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot hand over an accepted socket: {e}");
                self.shared.counters.stopped();
                return;
            }
        };
        let arbiter = &workers[self.next_worker % workers.len()];
        self.next_worker += 1;
        Connection::start_in_arbiter(arbiter, move |ctx| match TcpStream::from_std(std_stream) {
            Ok(stream) => Connection::new(shared, stream),
            Err(e) => {
                log::warn!("cannot register a client socket: {e}");
                ctx.stop();
                Connection::closed(shared)
            }
        });
    }
}
