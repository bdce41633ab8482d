//! A connection's answers on their way to its socket: one buffer of framed responses that
//! every answer is encoded into where it is given, and the writer task that hands the
//! buffer to the socket.
//!
//! Owns: [`Outbox`] (the handle the Connection actor and each pending request's
//! `Answering` hold) and [`write_loop`] (the writer task). An answer is framed straight
//! into the shared buffer (length prefix, then the MessagePack body), with no buffer, queue
//! entry or wake-up of its own: the first answer after a write wakes the writer, which
//! takes everything buffered by then and writes it in one go. Before this, each answer was
//! encoded into a scratch buffer, copied into a `Bytes` of its own, sent through a channel
//! and copied again into the framed writer's buffer.
//!
//! Invariants:
//! - The bound: an answer keeps its request's slot (and byte-budget permit) until the write
//!   that carries it returns, as with the channel before, so a connection holds at most
//!   `max_inflight` answers, buffered or being written; a client that stops reading stalls
//!   the writer, which keeps the slots, which stops the reader.
//! - Answers reach the socket in the order they were pushed, each whole: one lock covers
//!   the framing of one answer, and the writer takes the buffer under that lock.
//! - No answer is lost to a missed wake-up: a push that finds the buffer empty notifies the
//!   writer (`Notify` keeps one wake-up for a writer not yet waiting), and the writer looks
//!   at the buffer before it waits.
//! - The writer ends, and shuts the socket's write half, once every handle is dropped (the
//!   actor stopped and every request was answered) and the buffer is written. If a write
//!   fails, or the writer is dropped without running (a failed TLS handshake), the outbox
//!   closes: what is buffered and every later answer is dropped, releasing what it holds.
//! - A body over the frame limit is never sent (the client would close the connection on
//!   it): that request gets an `internal` error naming the sizes instead. A safety net:
//!   answers fit by construction (objects are capped at half the frame limit less 64 KiB,
//!   `node.rs`), so `internal` is right, a bug, even for a write's answer.
//!
//! The cost of framing under the lock: an answer is encoded while the lock is held, so the
//! writer (or another answer) may wait for one answer's encoding, about a millisecond per
//! megabyte of values. With connections on the main event loop (the default on one or two
//! cores) nothing ever waits, as every push and the writer run on that one thread.

use super::{Held, Sample};
use crate::stats::RequestStats;
use crate::tls::BoxWrite;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use troupe_protocol::message::Response;
use troupe_protocol::ErrorCode;

/// A write buffer larger than this after a write is shrunk to it, so one large answer
/// does not keep its memory for the connection's life: an idle connection
/// keeps at most two buffers of this size (the outbox's and the writer's, which trade
/// places at each write). A pipeline of 16 answers of a 1 KiB value fits.
const KEEP_BYTES: usize = 32 * 1024;

/// A handle for queueing answers (cheap to clone: one reference count).
#[derive(Clone)]
pub(super) struct Outbox(Arc<Handles>);

/// Dropped with the last [`Outbox`]: tells the writer no more answers will come.
struct Handles(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: the buffer became non-empty, or the last handle was dropped.
    ready: Notify,
    max_frame_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Whole frames (4-byte big-endian length, then the body), in answer order.
    frames: Vec<u8>,
    /// The slots of the buffered answers, merged into one permit (one release per write).
    slots: Option<OwnedSemaphorePermit>,
    /// The byte-budget permits of the buffered answers that hold one.
    bytes: Vec<OwnedSemaphorePermit>,
    samples: Vec<Sample>,
    /// Every handle is gone: once the buffer is written the writer ends.
    handles_gone: bool,
    /// The writer ended: answers are dropped, releasing what they hold.
    closed: bool,
}

impl Drop for Handles {
    fn drop(&mut self) {
        lock(&self.0).handles_gone = true;
        self.0.ready.notify_one();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    /// A new outbox and the shared state its writer takes ([`write_loop`]).
    pub(super) fn new(max_frame_bytes: usize) -> (Outbox, Writer) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_frame_bytes,
        });
        (Outbox(Arc::new(Handles(shared.clone()))), Writer(shared))
    }

    /// An outbox with no writer (a connection that never started): answers are dropped.
    pub(super) fn closed() -> Outbox {
        Outbox::new(0).0 // the writer, dropped here, closes it
    }

    /// Frames `resp` onto the buffer; `permit` (the request's slot and bytes) is released
    /// once the write that carries it returns, `sample` recorded just before that write.
    pub(super) fn push(&self, resp: &Response, permit: Option<Held>, sample: Option<Sample>) {
        let shared = &self.0 .0;
        let mut st = lock(shared);
        if st.closed {
            return; // `permit` is released here
        }
        let was_empty = st.frames.is_empty();
        frame_into(&mut st.frames, resp, shared.max_frame_bytes);
        st.samples.extend(sample);
        if let Some(held) = permit {
            match &mut st.slots {
                Some(merged) => merged.merge(held.slot),
                None => st.slots = Some(held.slot),
            }
            st.bytes.extend(held.bytes);
        }
        drop(st);
        if was_empty {
            shared.ready.notify_one();
        }
    }
}

/// Appends `resp` as one frame to `buf`; a body over `max` becomes an `internal` error.
fn frame_into(buf: &mut Vec<u8>, resp: &Response, max: usize) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    resp.encode_into(buf);
    let mut len = buf.len() - start - 4;
    if len > max {
        buf.truncate(start + 4);
        let msg = format!(
            "the answer is {len} bytes, over the {max}-byte frame limit (net.max_frame_bytes); ask for less (a smaller limit or fewer keys)"
        );
        Response::err(resp.id, ErrorCode::Internal, msg).encode_into(buf);
        len = buf.len() - start - 4;
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
}

/// The writer's side of an [`Outbox`].
pub(super) struct Writer(Arc<Shared>);

/// Writes what the outbox buffers until every handle is gone (see the module docs).
pub(super) async fn write_loop(writer: Writer, mut wr: BoxWrite, stats: Arc<RequestStats>) {
    let shared = &writer.0;
    let mut out = Vec::new();
    let mut samples = Vec::new();
    loop {
        let taken = {
            let mut st = lock(shared);
            if st.frames.is_empty() {
                if st.handles_gone {
                    break;
                }
                None
            } else {
                std::mem::swap(&mut st.frames, &mut out);
                std::mem::swap(&mut st.samples, &mut samples);
                Some((st.slots.take(), std::mem::take(&mut st.bytes)))
            }
        };
        let Some((slots, bytes)) = taken else {
            shared.ready.notified().await;
            continue;
        };
        // One clock read per write: every answer in it was given by now.
        let now = Instant::now();
        for s in samples.drain(..) {
            stats.record_index(s.op, s.result, now.saturating_duration_since(s.at));
        }
        if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
            return; // `writer`'s drop closes the outbox
        }
        drop((slots, bytes));
        reuse(&mut out);
    }
    let _ = wr.shutdown().await;
}

/// Empties a written buffer for the next write, giving back all but [`KEEP_BYTES`].
fn reuse(buf: &mut Vec<u8>) {
    buf.clear();
    buf.shrink_to(KEEP_BYTES);
}

/// However the writer ends (or if it never ran), the outbox closes: what is buffered and
/// every later answer is dropped, releasing the slots and bytes they hold.
impl Drop for Writer {
    fn drop(&mut self) {
        *lock(&self.0) = State {
            closed: true,
            ..State::default()
        };
    }
}

#[cfg(test)]
mod tests;
