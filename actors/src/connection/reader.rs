//! Reading client frames under the node-wide memory budget (`net.max_inflight_bytes`) and
//! the half-frame deadline (`net.read_timeout`).
//!
//! A frame is a 4-byte big-endian length and that many bytes (`troupe_protocol::codec`).
//! Its body is read in chunks; every chunk beyond the first [`FREE_FRAME_BYTES`] of a frame
//! is read only after taking as many bytes from the [`ByteBudget`]. What a frame took stays
//! taken until its response is written (the permit travels with the request), so the bytes
//! of requests read but not answered never exceed the budget plus `FREE_FRAME_BYTES` per
//! connection. At the budget, readers wait: they stop reading their sockets and TCP pushes
//! back on the clients (backpressure, never an error). Small requests (up to
//! `FREE_FRAME_BYTES`) never wait for the budget, so a flood of large writes cannot starve
//! them.
//!
//! Once a frame's first byte arrived, the whole frame must arrive within `read_timeout`
//! (time spent waiting for the budget does not count): a client that sends half a frame and
//! stalls is closed, and what it held is released. An idle connection between frames is not
//! timed out.

use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bytes a connection reads ahead of the frame it is decoding (its `BufReader`): frames
/// that arrived whole in it are decoded in place and handed on as one batch.
pub const READ_AHEAD: usize = 8 * 1024;
/// Bytes of a frame read without the budget: with the read-ahead buffer, 64 KiB per
/// connection, as before the buffer existed.
pub const FREE_FRAME_BYTES: usize = 64 * 1024 - READ_AHEAD;
/// Budget taken per step while reading a larger frame.
const CHUNK: usize = 256 * 1024;

/// The node-wide budget of request bytes read but not yet answered.
#[derive(Clone)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    total: usize,
    stalls: Arc<std::sync::atomic::AtomicU64>,
}

impl ByteBudget {
    pub fn new(total: usize) -> ByteBudget {
        let total = total.clamp(CHUNK, Semaphore::MAX_PERMITS);
        ByteBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
            stalls: Arc::default(),
        }
    }

    /// A connection was closed for stalling mid-frame.
    pub fn stalled(&self) {
        self.stalls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Connections closed for stalling mid-frame, so far.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes taken now (for /metrics).
    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The announced length exceeds the maximum frame.
    TooLarge { len: usize, max: usize },
    /// The frame did not complete within `read_timeout`.
    Stalled { got: usize, len: usize },
    /// The socket closed mid-frame or failed.
    Io,
}

/// One frame's body and the budget it holds.
pub struct Frame {
    pub body: BytesMut,
    pub budget: Option<OwnedSemaphorePermit>,
}

/// Reads the next frame; `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
    budget: &ByteBudget,
    read_timeout: Duration,
) -> Result<Option<Frame>, ReadError> {
    let mut head = [0u8; 4];
    // Between frames a connection may idle as long as it likes.
    match rd.read(&mut head[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(_) => return Err(ReadError::Io),
    }
    let mut deadline = Instant::now() + read_timeout;
    read_exact_by(rd, &mut head[1..], deadline, 1, 4).await?;
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(ReadError::TooLarge { len, max });
    }
    let mut body = BytesMut::with_capacity(len.min(FREE_FRAME_BYTES));
    let mut held: Option<OwnedSemaphorePermit> = None;
    while body.len() < len {
        let step = if body.len() < FREE_FRAME_BYTES {
            FREE_FRAME_BYTES.min(len) - body.len()
        } else {
            let step = CHUNK.min(len - body.len());
            let waited = Instant::now();
            let Ok(p) = budget.sem.clone().acquire_many_owned(step as u32).await else {
                return Err(ReadError::Io); // closed: the node is stopping
            };
            // Our own wait is not the client's delay.
            deadline += waited.elapsed();
            match &mut held {
                Some(h) => h.merge(p),
                None => held = Some(p),
            }
            step
        };
        let start = body.len();
        body.resize(start + step, 0);
        read_exact_by(rd, &mut body[start..], deadline, start + 4, len + 4).await?;
    }
    Ok(Some(Frame { body, budget: held }))
}

/// Fills `buf` before `deadline`; `got` and `len` describe the frame for the error.
async fn read_exact_by<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut [u8],
    deadline: Instant,
    got: usize,
    len: usize,
) -> Result<(), ReadError> {
    match tokio::time::timeout_at(deadline, rd.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ReadError::Io),
        Err(_) => Err(ReadError::Stalled { got, len }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes().to_vec();
        f.extend((0..len).map(|i| i as u8));
        f
    }

    #[tokio::test]
    async fn frames_small_and_large_read_whole_and_large_ones_hold_the_budget() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let budget = ByteBudget::new(4 << 20);
        let mut bytes = frame(10);
        bytes.extend(frame(1 << 20));
        tokio::spawn(async move { a.write_all(&bytes).await.unwrap() });
        let t = Duration::from_secs(5);
        let small = read_frame(&mut b, 8 << 20, &budget, t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(small.body.len(), 10);
        assert!(small.budget.is_none(), "small frames take no budget");
        let big = read_frame(&mut b, 8 << 20, &budget, t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(big.body.len(), 1 << 20);
        assert_eq!(big.body[1000], (1000 % 256) as u8);
        assert_eq!(budget.in_use(), (1 << 20) - FREE_FRAME_BYTES);
        drop(big);
        assert_eq!(budget.in_use(), 0);
        assert!(read_frame(&mut b, 8 << 20, &budget, t)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_reader_at_the_budget_waits_until_a_request_is_answered() {
        let (mut a, mut b) = tokio::io::duplex(4 << 20);
        let budget = ByteBudget::new(1 << 20);
        let mut bytes = frame(1 << 20);
        bytes.extend(frame(1 << 20));
        a.write_all(&bytes).await.unwrap();
        let t = Duration::from_secs(5);
        let first = read_frame(&mut b, 8 << 20, &budget, t)
            .await
            .unwrap()
            .unwrap();
        let second = tokio::spawn({
            let budget = budget.clone();
            async move {
                read_frame(&mut b, 8 << 20, &budget, t)
                    .await
                    .map(|f| f.map(|f| f.body.len()))
            }
        });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "the budget is held by the first frame"
        );
        drop(first); // answered
        assert_eq!(second.await.unwrap().unwrap(), Some(1 << 20));
    }

    #[tokio::test]
    async fn half_a_frame_is_closed_after_the_read_timeout_but_idling_is_not() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let budget = ByteBudget::new(4 << 20);
        let t = Duration::from_millis(200);
        // Idle: no deadline between frames.
        let idle = tokio::time::timeout(t * 3, read_frame(&mut b, 8 << 20, &budget, t)).await;
        assert!(idle.is_err(), "an idle connection is not closed");
        let f = frame(200_000);
        a.write_all(&f[..100_000]).await.unwrap();
        match read_frame(&mut b, 8 << 20, &budget, t).await {
            Err(ReadError::Stalled { got, len }) => {
                assert_eq!(len, 200_004);
                assert!((FREE_FRAME_BYTES..100_000).contains(&got), "{got}");
            }
            other => panic!(
                "expected a stall, got {:?}",
                other.map(|f| f.map(|f| f.body.len()))
            ),
        }
        assert_eq!(budget.in_use(), 0, "a stalled frame releases what it held");
    }

    #[tokio::test]
    async fn a_frame_over_the_maximum_is_refused_before_reading_it() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(9u32 << 20).to_be_bytes()).await.unwrap();
        let budget = ByteBudget::new(4 << 20);
        match read_frame(&mut b, 8 << 20, &budget, Duration::from_secs(1)).await {
            Err(ReadError::TooLarge { len, max }) => assert_eq!((len, max), (9 << 20, 8 << 20)),
            _ => panic!("expected too large"),
        }
    }
}
