//! A connection's I/O: the reader task (frames from the read-ahead buffer, decoded and
//! handed to the actor in batches), the writer task (responses coalesced into one flush),
//! and [`Answering`], the callback that carries a batched request's answer from the
//! coordinator's thread to the writer. See the module docs of `connection` for the bounds.

use super::*;

/// A request's way back to the socket, called on the coordinator's thread with its
/// outcome: encodes the response and queues it for the writer task at once. The queue has
/// room for every slot (`max_inflight + 1`) and each queued response holds one, so the
/// `try_send` cannot find it full. Dropped without an answer (the coordinator stopped), it
/// answers `stopped` itself, so every request read is answered.
pub(super) struct Answering<R> {
    id: u64,
    ok: fn(R) -> Reply,
    out: mpsc::Sender<Outgoing>,
    held: Option<(Held, Option<Timed>)>,
    stopped: (ErrorCode, &'static str),
}

impl<R> Answering<R> {
    pub(super) fn new(
        id: u64,
        ok: fn(R) -> Reply,
        out: &mpsc::Sender<Outgoing>,
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
        let item = Outgoing {
            sample: t.map(|t| t.answered(&resp)),
            frame: frame_of(&resp),
            permit: Some(permit),
        };
        if let Err(mpsc::error::TrySendError::Full(item)) = self.out.try_send(item) {
            // Cannot happen (see above); queue it without blocking anyway.
            let out = self.out.clone();
            actix::spawn(async move {
                let _ = out.send(item).await;
            });
        }
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

/// A response's frame body, encoded in this thread's reused buffer ([`crate::scratch`]).
pub(super) fn frame_of(resp: &Response) -> Bytes {
    crate::scratch::encode_bytes(|buf| resp.encode_into(buf))
}

/// Starts the writer and reader tasks on the connection's (plain or TLS) stream halves.
pub(super) fn run_io(
    rd: BoxRead,
    wr: BoxWrite,
    out_rx: mpsc::Receiver<Outgoing>,
    conn: Addr<Connection>,
    shared: ConnectionShared,
    peer: String,
) {
    let codec = FrameCodec::new(shared.max_frame_bytes);
    let stats = shared.requests.clone();
    actix::spawn(write_loop(FramedWrite::new(wr, codec), out_rx, stats));
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

async fn write_loop(
    mut sink: FramedWrite<BoxWrite, FrameCodec>,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<RequestStats>,
) {
    let mut slots: Option<OwnedSemaphorePermit> = None;
    let mut bytes = Vec::new();
    let mut samples = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut coalesced = 0;
        // Coalesce what is already queued into one write; release permits after the flush.
        // The connection's in-flight slots are merged into one permit (all come from its
        // one semaphore), so a write gives them back with one release, not one per
        // response (each takes the semaphore's lock).
        while let Some(item) = next.take() {
            if sink.feed(item.frame).await.is_err() {
                return;
            }
            samples.extend(item.sample);
            if let Some(held) = item.permit {
                match &mut slots {
                    Some(merged) => merged.merge(held.slot),
                    None => slots = Some(held.slot),
                }
                bytes.extend(held.bytes);
            }
            coalesced += 1;
            if coalesced < 128 {
                next = rx.try_recv().ok();
            }
        }
        // One clock read per write: every response in it was answered by now.
        let now = Instant::now();
        for s in samples.drain(..) {
            stats.record_index(s.op, s.result, now.saturating_duration_since(s.at));
        }
        if sink.flush().await.is_err() {
            return;
        }
        slots = None;
        bytes.clear();
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_encoded_responses_whatever_came_before() {
        let big = Response::ok(
            2,
            Reply::get(vec![vec![7; 3 * crate::scratch::SCRATCH_BYTES]], vec![1]),
        );
        let small = Response::ok(1, Reply::get(vec![b"value".to_vec()], vec![1, 2]));
        let err = Response::err(3, ErrorCode::BadRequest, "no");
        // A large one leaves the buffer; the next small one must not carry its bytes.
        for r in [&small, &big, &small, &err, &big, &err] {
            assert_eq!(frame_of(r), Bytes::from(r.encode()));
        }
    }
}
