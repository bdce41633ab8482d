//! One outbound lane to one peer: a bounded queue and the task that drains it over its own
//! TCP connection.
//!
//! Owns: the queue ([`LaneQueue`]) and the connection of one (peer address, [`Lane`]).
//! Receives frames from [`super::PeerTransport::send`]; emits them, in order, on the socket.
//!
//! Invariants and choices:
//! - The queue is bounded. The control lane (probes) drops the *oldest* frame when full: a
//!   probe that waited that long is stale and a fresh one matters more. The bulk lane
//!   refuses the *newest*: state exchanges are idempotent and repeat on a timer.
//! - Every frame carries its enqueue time; one older than the lane's `max_age` when it
//!   reaches the socket is dropped (a late ping is worse than none), and each write has
//!   `write_timeout`: a peer that stops reading gets its connection closed, not our memory.
//! - The task connects lazily (only when there is something to send), authenticates
//!   (see `handshake`), and after a failure waits with exponential backoff (`BACKOFF_MIN`
//!   doubling to `BACKOFF_MAX`, reset by a successful handshake). Frames keep queueing (and
//!   expiring) meanwhile.
//! - Control and bulk are separate connections, so a probe never waits behind a large frame.

use super::handshake::{self, AuthKey};
use crate::tls::BoxStream;
use bytes::Bytes;
use futures_util::SinkExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Framed;
use troupe_protocol::swim::{Lane, NodeId};
use troupe_protocol::FrameCodec;

pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-lane limits.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    pub capacity: usize,
    /// Bytes of queued frames at most (a frame that would pass it counts as "full").
    pub max_bytes: usize,
    pub drop_oldest: bool,
    pub max_age: Duration,
    pub write_timeout: Duration,
}

/// Bounded queue of encoded frames shared by senders and the lane task.
#[derive(Debug)]
pub struct LaneQueue {
    frames: Mutex<VecDeque<(Instant, Bytes)>>,
    /// Bytes in `frames` (kept beside it under the same lock).
    bytes: AtomicU64,
    notify: Notify,
    limits: LaneLimits,
    /// Frames dropped because the queue was full or they expired.
    pub dropped: AtomicU64,
}

impl LaneQueue {
    pub fn new(limits: LaneLimits) -> LaneQueue {
        LaneQueue {
            frames: Mutex::new(VecDeque::new()),
            bytes: AtomicU64::new(0),
            notify: Notify::new(),
            limits,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `frame`; returns false if it (or an older frame) was dropped for space.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut q = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = true;
        let full = |q: &VecDeque<(Instant, Bytes)>, bytes: u64| {
            !q.is_empty()
                && (q.len() >= self.limits.capacity
                    || bytes + frame.len() as u64 > self.limits.max_bytes as u64)
        };
        while full(&q, self.bytes.load(Relaxed)) {
            self.dropped.fetch_add(1, Relaxed);
            kept = false;
            if !self.limits.drop_oldest {
                return false;
            }
            if let Some((_, old)) = q.pop_front() {
                self.bytes.fetch_sub(old.len() as u64, Relaxed);
            }
        }
        self.bytes.fetch_add(frame.len() as u64, Relaxed);
        q.push_back((Instant::now(), frame));
        drop(q);
        self.notify.notify_one();
        kept
    }

    /// Takes every queued frame that is still fresh.
    fn take_fresh(&self) -> Vec<Bytes> {
        let mut q = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut out = Vec::with_capacity(q.len());
        self.bytes.store(0, Relaxed);
        for (at, f) in q.drain(..) {
            if now.duration_since(at) <= self.limits.max_age {
                out.push(f);
            } else {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.frames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn wait(&self) {
        if self.is_empty() {
            self.notify.notified().await;
        }
    }
}

/// What a lane task needs besides its queue.
pub struct LaneTask {
    pub addr: String,
    pub lane: Lane,
    pub me: NodeId,
    pub key: AuthKey,
    pub max_frame_bytes: usize,
    /// `[tls]`: connect over TLS, verifying the peer against the CA and its address's host.
    pub tls: Option<Arc<crate::tls::NodeTls>>,
    pub queue: Arc<LaneQueue>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl LaneTask {
    /// Runs until shutdown: connect when there is work, write, reconnect with backoff.
    pub async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.queue.wait() => {}
            }
            match self.connect().await {
                Ok(mut framed) => {
                    backoff = BACKOFF_MIN;
                    if let Err(e) = self.write_loop(&mut framed).await {
                        log::debug!(
                            "peer {} ({:?} lane): connection lost: {e}",
                            self.addr,
                            self.lane
                        );
                    }
                }
                Err(e) => {
                    log::debug!(
                        "peer {} ({:?} lane): connect failed: {e}",
                        self.addr,
                        self.lane
                    );
                    if e.contains("authentication") || e.contains("refused") || e.contains("TLS") {
                        log::warn!("peer {}: {e}", self.addr);
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self) -> Result<Framed<BoxStream, FrameCodec>, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let stream: BoxStream = match &self.tls {
            Some(tls) => tls.connect_peer(stream, &self.addr).await?,
            None => Box::new(stream),
        };
        let mut framed = Framed::new(stream, FrameCodec::new(self.max_frame_bytes));
        let peer = handshake::connect(&mut framed, &self.key, &self.me, self.lane)
            .await
            .map_err(|e| e.to_string())?;
        log::debug!("peer {} is {} ({:?} lane)", self.addr, peer, self.lane);
        Ok(framed)
    }

    async fn write_loop(&self, framed: &mut Framed<BoxStream, FrameCodec>) -> Result<(), String> {
        loop {
            let frames = self.queue.take_fresh();
            for f in frames {
                tokio::time::timeout(self.queue.limits.write_timeout, framed.feed(f))
                    .await
                    .map_err(|_| "write timed out".to_string())?
                    .map_err(|e| e.to_string())?;
            }
            tokio::time::timeout(self.queue.limits.write_timeout, framed.flush())
                .await
                .map_err(|_| "write timed out".to_string())?
                .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = self.queue.wait() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(drop_oldest: bool) -> LaneLimits {
        LaneLimits {
            capacity: 2,
            max_bytes: 1 << 20,
            drop_oldest,
            max_age: Duration::from_millis(50),
            write_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn control_drops_oldest_bulk_refuses_newest_and_stale_frames_expire() {
        let q = LaneQueue::new(limits(true));
        assert!(q.push(Bytes::from_static(b"1")));
        assert!(q.push(Bytes::from_static(b"2")));
        assert!(!q.push(Bytes::from_static(b"3")));
        assert_eq!(
            q.take_fresh(),
            vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );

        let q = LaneQueue::new(limits(false));
        q.push(Bytes::from_static(b"1"));
        q.push(Bytes::from_static(b"2"));
        assert!(!q.push(Bytes::from_static(b"3")));
        assert_eq!(q.len(), 2);
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            q.take_fresh().is_empty(),
            "frames older than max_age are dropped"
        );
        assert_eq!(q.dropped.load(Relaxed), 3);
    }

    #[test]
    fn bytes_are_bounded_too_but_one_large_frame_always_fits_an_empty_queue() {
        let q = LaneQueue::new(LaneLimits {
            capacity: 100,
            max_bytes: 10,
            ..limits(false)
        });
        assert!(q.push(Bytes::from(vec![0u8; 6])));
        assert!(!q.push(Bytes::from(vec![0u8; 6])), "12 bytes > 10");
        assert!(q.push(Bytes::from(vec![0u8; 4])));
        assert_eq!(q.take_fresh().len(), 2);
        assert!(q.push(Bytes::from(vec![0u8; 64])), "alone it is sent");
        let q = LaneQueue::new(LaneLimits {
            capacity: 100,
            max_bytes: 10,
            ..limits(true)
        });
        q.push(Bytes::from(vec![1u8; 6]));
        q.push(Bytes::from(vec![2u8; 3]));
        assert!(!q.push(Bytes::from(vec![3u8; 6])), "the oldest made room");
        assert_eq!(
            q.take_fresh(),
            vec![Bytes::from(vec![2u8; 3]), Bytes::from(vec![3u8; 6])]
        );
    }
}
