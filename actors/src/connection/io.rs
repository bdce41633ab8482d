//! A connection's I/O: the reader task (frames from the read-ahead buffer, decoded and
//! handed to the actor in batches) and [`Answering`], the callback that carries a batched
//! request's answer from the coordinator's thread into the connection's [`Outbox`], whose
//! writer task hands it to the socket. See the module docs of `connection` for the bounds.

use super::outbox::{self, Outbox, Writer};
use super::*;

/// A request's way back to the socket, called on the coordinator's thread with its
/// outcome: frames the response into the connection's outbox at once. Dropped without an
/// answer (the coordinator stopped), it answers `stopped` itself, so every request read is
/// answered.
pub(super) struct Answering<R> {
    id: u64,
    ok: fn(R) -> Reply,
    out: Outbox,
    held: Option<(Held, Option<Timed>)>,
    stopped: (ErrorCode, &'static str),
}

impl<R> Answering<R> {
    pub(super) fn new(
        id: u64,
        ok: fn(R) -> Reply,
        out: &Outbox,
        permit: Held,
        t: Option<Timed>,
        stopped: (ErrorCode, &'static str),
    ) -> Self {
        Answering {
            id,
            ok,
            out: out.clone(),
            held: Some((permit, t)),
            stopped,
        }
    }

    pub(super) fn answer(mut self, r: Result<R, ClientError>) {
        let resp = match r {
            Ok(v) => Response::ok(self.id, (self.ok)(v)),
            Err(e) => Response::err(self.id, e.code, e.msg),
        };
        self.send(resp);
    }

    fn send(&mut self, resp: Response) {
        let Some((permit, t)) = self.held.take() else {
            return;
        };
        self.out
            .push(&resp, Some(permit), t.map(|t| t.answered(&resp)));
    }
}

impl<R> Drop for Answering<R> {
    fn drop(&mut self) {
        if self.held.is_some() {
            let (code, msg) = (self.stopped.0.clone(), self.stopped.1);
            self.send(Response::err(self.id, code, msg));
        }
    }
}

/// Starts the writer and reader tasks on the connection's (plain or TLS) stream halves.
pub(super) fn run_io(
    rd: BoxRead,
    wr: BoxWrite,
    writer: Writer,
    conn: Addr<Connection>,
    shared: ConnectionShared,
    peer: String,
) {
    let stats = shared.requests.clone();
    actix::spawn(outbox::write_loop(writer, wr, stats));
    let permits = Arc::new(Semaphore::new(shared.max_inflight));
    log::debug!("connection from {peer} opened");
    actix::spawn(read_loop(rd, permits, conn, shared, peer));
}

/// Frames handed to the Connection actor in one [`Incoming`] at most.
const MAX_BATCH: usize = 64;

/// The length of the frame at the head of `buf` if all of it is there (and within `max`).
fn buffered_frame(buf: &[u8], max: usize) -> Option<usize> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(head) as usize;
    (len <= max && buf.len() >= 4 + len).then_some(len)
}

/// Reads frames and hands them to the actor in batches: every frame already received
/// (whole, in the read-ahead buffer) is decoded in place and joins the batch while the
/// connection has slots left; the batch goes to the actor before the reader waits for
/// anything (a slot, or bytes from the socket), so a lone request is never held back.
async fn read_loop(
    rd: BoxRead,
    permits: Arc<Semaphore>,
    conn: Addr<Connection>,
    shared: ConnectionShared,
    peer: String,
) {
    let mut rd = tokio::io::BufReader::with_capacity(reader::READ_AHEAD, rd);
    let mut batch: SmallVec<[Received; 1]> = SmallVec::new();
    let flush = |batch: &mut SmallVec<[Received; 1]>| -> bool {
        if batch.is_empty() {
            return true;
        }
        if !conn.connected() {
            return false;
        }
        shared.counters.sent();
        // `do_send` skips the mailbox limit, but the slots already bound what this
        // connection can have queued to `max_inflight`.
        conn.do_send(Incoming {
            frames: std::mem::take(batch),
            at: Instant::now(),
        });
        true
    };
    let mut too_large = None;
    loop {
        if shared.shutdown.is_cancelled() {
            break;
        }
        let slot = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !flush(&mut batch) {
                    return;
                }
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        if let Some(len) = buffered_frame(rd.buffer(), shared.max_frame_bytes) {
            // Received already: decode it where it lies (no copy, no wait).
            let decoded = decode_request(&rd.buffer()[4..4 + len]);
            rd.consume(4 + len);
            push_batched(
                &mut batch,
                Received {
                    decoded,
                    permit: Held { slot, bytes: None },
                },
            );
            if batch.len() >= MAX_BATCH && !flush(&mut batch) {
                return;
            }
            continue;
        }
        // Nothing whole is buffered: hand on what we have before waiting for the socket.
        if !flush(&mut batch) {
            return;
        }
        if rd.buffer().is_empty() {
            // Between frames: wait for bytes and decode what arrives whole where it lies
            // (a small request costs no buffer of its own). An idle connection may wait
            // here as long as it likes; `read_frame` below times a frame begun.
            let filled = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                f = rd.fill_buf() => f.map(|b| !b.is_empty()),
            };
            match filled {
                Ok(true) => continue,
                Ok(false) | Err(_) => break, // closed between frames, or failed
            }
        }
        // Part of a frame is here (or it is larger than the read-ahead): read the rest
        // under the frame's deadline and, beyond its first bytes, the byte budget.
        let frame = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            f = read_frame(&mut rd, shared.max_frame_bytes, &shared.budget, shared.read_timeout) => f,
        };
        match frame {
            Ok(Some(frame)) => push_batched(
                &mut batch,
                Received {
                    decoded: decode_request(&frame.body),
                    permit: Held {
                        slot,
                        bytes: frame.budget,
                    },
                },
            ),
            Err(ReadError::TooLarge { len, max }) => {
                too_large = Some(format!(
                    "frame of {len} bytes exceeds the maximum of {max} bytes"
                ));
                break;
            }
            Err(ReadError::Stalled { got, len }) => {
                shared.budget.stalled();
                log::warn!(
                    "client {peer} sent {got} of a {len}-byte frame and stalled for net.read_timeout ({:?}); closing",
                    shared.read_timeout
                );
                break;
            }
            Ok(None) | Err(ReadError::Io) => break,
        }
    }
    if !flush(&mut batch) {
        return;
    }
    shared.counters.sent();
    conn.do_send(ReaderStopped { too_large });
}
