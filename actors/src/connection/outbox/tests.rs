use super::*;
use crate::stats::op_index;
use std::time::Duration;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use troupe_protocol::message::Reply;

/// A bound on each wait below (they wait on events, this only stops a broken test).
const BOUND: Duration = Duration::from_secs(10);

fn held(sem: &Arc<Semaphore>) -> Held {
    Held {
        slot: sem.clone().try_acquire_owned().expect("a free slot"),
        bytes: None,
    }
}

fn sample() -> Option<Sample> {
    Some(Sample {
        op: op_index("put"),
        result: 0,
        at: Instant::now(),
    })
}

fn get_reply(id: u64, value_bytes: usize) -> Response {
    Response::ok(id, Reply::get(vec![vec![7; value_bytes]], vec![1, 2]))
}

/// An outbox whose writer writes into a pipe of `pipe` bytes; the other end is returned.
fn start(
    max_frame: usize,
    pipe: usize,
) -> (Outbox, DuplexStream, Arc<RequestStats>, JoinHandle<()>) {
    let (out, writer) = Outbox::new(max_frame);
    let (ours, theirs) = tokio::io::duplex(pipe);
    let stats = Arc::new(RequestStats::default());
    let task = tokio::task::spawn_local(write_loop(writer, Box::new(ours), stats.clone()));
    (out, theirs, stats, task)
}

/// The next frame's response, or `None` at the end of the stream.
async fn next(rd: &mut DuplexStream) -> Option<Response> {
    let mut head = [0u8; 4];
    tokio::time::timeout(BOUND, rd.read_exact(&mut head))
        .await
        .expect("a frame or the end within the bound")
        .ok()?;
    let mut body = vec![0; u32::from_be_bytes(head) as usize];
    rd.read_exact(&mut body).await.expect("the whole frame");
    Some(Response::decode(&body).expect("a response"))
}

fn recorded(stats: &RequestStats) -> u64 {
    stats.snapshot().iter().map(|(_, _, h)| h.count()).sum()
}

#[actix_rt::test]
async fn answers_are_written_whole_in_order_and_the_writer_ends_with_the_last_handle() {
    let (out, mut rd, stats, task) = start(1 << 20, 1 << 20);
    let sem = Arc::new(Semaphore::new(8));
    let sent = [
        get_reply(1, 10),
        get_reply(2, 3 * KEEP_BYTES), // larger than the buffer the writer keeps
        Response::err(3, ErrorCode::BadRequest, "no"),
        get_reply(4, 10),
    ];
    for r in &sent {
        out.push(r, Some(held(&sem)), sample());
    }
    let answer = out.clone();
    drop(out);
    for r in &sent {
        assert_eq!(next(&mut rd).await.as_ref(), Some(r));
    }
    // A handle is left: the writer waits for more, and takes it.
    answer.push(&sent[0], Some(held(&sem)), None);
    assert_eq!(next(&mut rd).await.as_ref(), Some(&sent[0]));
    drop(answer);
    assert_eq!(next(&mut rd).await, None, "the write half is shut down");
    tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    assert_eq!(sem.available_permits(), 8, "every slot came back");
    assert_eq!(recorded(&stats), 4, "every timed answer was recorded");
}

#[actix_rt::test]
async fn slots_come_back_only_when_the_write_carrying_them_returns() {
    // A pipe of 64 bytes: the writer blocks on the first answer until we read.
    let (out, mut rd, _stats, task) = start(1 << 20, 64);
    let sem = Arc::new(Semaphore::new(4));
    let sent: Vec<Response> = (0..3).map(|i| get_reply(i, 1024)).collect();
    for r in &sent {
        out.push(r, Some(held(&sem)), None);
    }
    // Whether or not the writer has run yet, 3 KiB cannot have gone through 64 bytes.
    tokio::task::yield_now().await;
    assert_eq!(
        sem.available_permits(),
        1,
        "the unwritten answers keep their slots"
    );
    for r in &sent {
        assert_eq!(next(&mut rd).await.as_ref(), Some(r));
    }
    let all = tokio::time::timeout(BOUND, sem.acquire_many(4)).await;
    assert!(
        all.is_ok(),
        "the slots came back once the answers were written"
    );
    drop(out);
    assert_eq!(next(&mut rd).await, None);
    task.await.unwrap();
}

#[actix_rt::test]
async fn a_failed_write_releases_what_is_queued_and_every_later_answer() {
    let (out, rd, _stats, task) = start(1 << 20, 64);
    drop(rd); // the peer is gone: the first write fails
    let sem = Arc::new(Semaphore::new(4));
    out.push(&get_reply(1, 10), Some(held(&sem)), None);
    tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    assert_eq!(
        sem.available_permits(),
        4,
        "the queued answer's slot came back"
    );
    out.push(&get_reply(2, 10), Some(held(&sem)), None);
    assert_eq!(
        sem.available_permits(),
        4,
        "a later answer is dropped at once"
    );
}

#[actix_rt::test]
async fn an_answer_over_the_frame_limit_becomes_an_internal_error() {
    let (out, mut rd, _stats, _task) = start(200, 1 << 16);
    out.push(&get_reply(9, 1000), None, None);
    out.push(&get_reply(10, 10), None, None);
    let big = next(&mut rd).await.expect("an answer");
    assert_eq!(big.id, 9);
    let err = big.err.expect("an error instead of the oversized answer");
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.msg.contains("200-byte frame limit"), "{}", err.msg);
    assert_eq!(
        next(&mut rd).await,
        Some(get_reply(10, 10)),
        "the next is intact"
    );
}

#[actix_rt::test]
async fn answers_from_another_thread_all_arrive_in_order() {
    // Answers come from the coordinator's thread, which is another thread when
    // connections run on worker arbiters: no wake-up of the writer may be lost.
    const N: u64 = 5000;
    let (out, mut rd, _stats, task) = start(1 << 20, 4096);
    let sem = Arc::new(Semaphore::new(N as usize));
    let pusher = {
        let sem = sem.clone();
        std::thread::spawn(move || {
            for id in 0..N {
                out.push(&get_reply(id, 100), Some(held(&sem)), None);
            }
        })
    };
    for id in 0..N {
        assert_eq!(next(&mut rd).await.map(|r| r.id), Some(id));
    }
    pusher.join().unwrap();
    assert_eq!(
        next(&mut rd).await,
        None,
        "the last handle went with the thread"
    );
    task.await.unwrap();
    assert_eq!(sem.available_permits(), N as usize);
}

#[test]
fn an_outbox_whose_writer_never_ran_releases_every_answer_at_once() {
    let sem = Arc::new(Semaphore::new(2));
    let out = Outbox::closed();
    out.push(&get_reply(1, 10), Some(held(&sem)), None);
    assert_eq!(sem.available_permits(), 2);
    // A writer dropped after answers were queued (a failed TLS handshake) releases them.
    let (out, writer) = Outbox::new(1 << 20);
    out.push(&get_reply(2, 10), Some(held(&sem)), None);
    assert_eq!(sem.available_permits(), 1, "queued for a writer");
    drop(writer);
    assert_eq!(sem.available_permits(), 2, "released with the writer");
    out.push(&get_reply(3, 10), Some(held(&sem)), None);
    assert_eq!(sem.available_permits(), 2, "dropped at once");
}

#[test]
fn a_written_buffer_keeps_at_most_keep_bytes() {
    let mut small = Vec::with_capacity(1000);
    small.extend_from_slice(&[1; 10]);
    reuse(&mut small);
    assert!(
        small.is_empty() && small.capacity() >= 1000,
        "a small one is kept whole"
    );
    let mut big = vec![0u8; 4 * KEEP_BYTES];
    reuse(&mut big);
    assert!(big.is_empty());
    assert!(big.capacity() <= KEEP_BYTES && big.capacity() >= KEEP_BYTES / 2);
}
