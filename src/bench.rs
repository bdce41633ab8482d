//! `troupe bench`: a closed-loop load generator over the client protocol.
//!
//! `concurrency` connections (spread over the given addresses), each with `pipeline` requests
//! in flight. Every run is bounded by `--ops` and by `--duration` (default cap 300 s), so it
//! always stops by itself, and the progress line's time left is whichever bound comes first.
//! Latency is recorded per request in microseconds (hdrhistogram), from the write that sent
//! it to the read that brought its answer (one clock read for each), separately per op, so a
//! mixed workload reports gets (with hits and misses) and puts each on its own line, as
//! memtier_benchmark does. The `incr` and `sadd` workloads write the data types (a counter
//! or a set per key, under their own key prefixes so they never meet a key the put
//! workloads wrote: a key holds one type), to set their cost beside a put's.

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};
use troupe_actors::tls::BoxStream;
use troupe_protocol::message::{
    encode_get_into, encode_put_into, encode_request, encode_request_into, Request, Response,
    PROTOCOL_VERSION,
};
use troupe_protocol::tls::{ClientTls, TlsConnector};
use troupe_protocol::FrameCodec;

mod report;
use report::{progress, report, Stats};

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq)]
pub enum Workload {
    Put,
    Get,
    Mixed,
    YcsbA,
    YcsbB,
    YcsbC,
    /// `incr` by 1 of a counter per key.
    Incr,
    /// `sadd` of one --value-size member (one of 16 per key, so sets stay small) to a set
    /// per key.
    Sadd,
}

impl Workload {
    /// Fraction of operations that are reads.
    fn read_fraction(self) -> f64 {
        match self {
            Workload::Put | Workload::Incr | Workload::Sadd => 0.0,
            Workload::Get | Workload::YcsbC => 1.0,
            Workload::Mixed | Workload::YcsbA => 0.5,
            Workload::YcsbB => 0.95,
        }
    }

    /// The write this workload issues.
    fn write_op(self) -> WriteOp {
        match self {
            Workload::Incr => WriteOp::Incr,
            Workload::Sadd => WriteOp::Sadd,
            _ => WriteOp::Put,
        }
    }
}

/// The write a workload issues, and the op name its figures are reported under.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WriteOp {
    Put,
    Incr,
    Sadd,
}

impl WriteOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            WriteOp::Put => "put",
            WriteOp::Incr => "incr",
            WriteOp::Sadd => "sadd",
        }
    }

    /// Each op's keys are its own: a counter or set key is never a plain value's.
    fn key(self, i: u64) -> Vec<u8> {
        match self {
            WriteOp::Put => key(i).to_vec(),
            WriteOp::Incr => format!("ctr{i:012}").into_bytes(),
            WriteOp::Sadd => format!("set{i:012}").into_bytes(),
        }
    }
}

/// Members a `sadd` workload adds per key: a bound, so a set's size (and so the cost of
/// its state, which each add rewrites) stays the same however long the run.
const SADD_MEMBERS_PER_KEY: u64 = 16;

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq)]
pub enum Distribution {
    Uniform,
    Zipfian,
}

/// The order keys are chosen in.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq)]
pub enum Fill {
    /// Per --distribution.
    Random,
    /// key 0, 1, 2, ... (wrapping at --keys), like memtier's `--key-pattern S:S` or
    /// db_bench's fillseq.
    Sequential,
}

/// A value-enum's name as typed on the command line (`ycsb-a`, not `YcsbA`).
fn cli_name(v: &impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Node client address, or a comma-separated list to spread connections over.
    #[arg(long, env = "TROUPE_ADDR", default_value = "127.0.0.1:7400")]
    addr: String,
    /// Operations to run in total (or until --duration, whichever comes first).
    #[arg(long, default_value_t = 200_000)]
    ops: u64,
    /// Stop after this many seconds even if --ops are not done (default 300).
    #[arg(long)]
    duration: Option<f64>,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Requests in flight per connection: each connection writes this many at once and
    /// writes the next batch when all are answered (as redis-benchmark -P does).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// With --pipeline above 1: a sliding window instead of batches (new requests go out
    /// as soon as any answer arrives, keeping --pipeline in flight).
    #[arg(long)]
    window: bool,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, value_enum, default_value = "mixed")]
    workload: Workload,
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Key order: `random` (per --distribution) or `sequential` (key 0, 1, 2, ...).
    #[arg(long, value_enum, default_value = "random")]
    fill: Fill,
    /// Do not write every key once before a workload that reads.
    #[arg(long)]
    no_prefill: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client threads (1, like redis-benchmark, leaves the most CPU to the node).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    tls: crate::cli_tls::TlsArgs,
}

/// YCSB-style zipfian (theta 0.99) over `n` items, scrambled so hot keys spread out.
struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64) -> Zipf {
        let theta = 0.99;
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            ((self.n as f64) * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
        };
        // FNV-1a scramble of the rank.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in rank.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        h % self.n
    }
}

/// `key` then `i` in at least 12 decimal digits (`key000000000042`), without the
/// formatting machinery: the load generator makes one per request.
fn key(i: u64) -> Key {
    if i >= 1_000_000_000_000 {
        return Key::from_slice(format!("key{i}").as_bytes());
    }
    let mut k = *b"key000000000000";
    let mut rest = i;
    for d in k[3..].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    Key::from_slice(&k)
}

/// A key, inline: "key" and at most 20 digits.
type Key = smallvec::SmallVec<[u8; 24]>;

/// A context, inline up to three actors whose counters are below 2^21 (an N=3 cluster's
/// usual clock: 2 + 3 x (8 + 3) bytes).
type Context = smallvec::SmallVec<[u8; 36]>;

struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    ops: u64,
    deadline: Instant,
    /// The newest context seen per key (from a put or get reply): a put passes it back, as
    /// a client replacing a value does, so overwrites replace instead of piling up
    /// siblings. Sharded to keep the load generator's own contention low.
    contexts: Arc<Contexts>,
}

/// Keyed by the load generator's own key numbers: the deterministic Fx hash is enough.
type Contexts = Vec<std::sync::Mutex<troupe_actors::idmap::IdMap<u64, Context>>>;

const CONTEXT_SHARDS: u64 = 64;

impl Shared {
    /// The newest context seen for key `k` (inline: no allocation for a usual one).
    fn context(&self, k: u64) -> Option<Context> {
        let shard = &self.contexts[(k % CONTEXT_SHARDS) as usize];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .cloned()
    }

    fn remember(&self, k: u64, ctx: &[u8]) {
        let shard = &self.contexts[(k % CONTEXT_SHARDS) as usize];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(k).or_default();
        c.clear();
        c.extend_from_slice(ctx);
    }
}

struct Plan {
    read_fraction: f64,
    zipf: Option<Zipf>,
    keys: u64,
    /// Prefill: write key `i` for the i-th operation instead of a random one.
    sequential: bool,
    write: WriteOp,
    /// Remember the context each answer carries, for the run's later puts to pass back
    /// (see [`Plan::remembers`]).
    remember: bool,
}

impl Plan {
    /// Whether a run of `workload` needs contexts remembered, in its prefill and its main
    /// phase alike: only when it puts (a put passes its key's newest context back; incr
    /// and sadd pass none). A get-only run remembering them cost a fifth of this
    /// generator's CPU (a map of every key's context, growing into fresh pages) on the
    /// machine it shares with the node.
    fn remembers(workload: Workload) -> bool {
        workload.write_op() == WriteOp::Put && workload.read_fraction() < 1.0
    }
}

/// One connection's closed loop: writes `pipeline` requests with one write and reads until
/// all are answered (or, with `window`, tops up to `pipeline` in flight whenever answers
/// arrive), and reads whatever responses have arrived. Works on
/// the raw framing (not the general-purpose `Client`) so the load generator spends as little
/// CPU per request as possible on a machine it shares with the node.
async fn conn_worker(
    mut stream: BoxStream,
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    value: Vec<u8>,
    seed: u64,
    pipeline: usize,
    window: bool,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut codec = FrameCodec::default();
    // id -> (sent at, key, is a read, request frame bytes). The ids are this connection's
    // own counter, so the deterministic Fx hash is enough.
    let mut inflight: troupe_actors::idmap::IdMap<u64, (Instant, u64, bool, usize)> =
        troupe_actors::idmap::IdMap::default();
    inflight.reserve(pipeline);
    let mut body = Vec::new();
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut next_id = 1u64;
    // The requests encoded for the next write: (id, key, is a read, frame bytes).
    let mut pending: Vec<(u64, u64, bool, usize)> = Vec::with_capacity(pipeline);
    // When the responses decoded last arrived: the time the read that brought them
    // returned (one clock read per read, not per response).
    let mut received_at = Instant::now();
    loop {
        if window || inflight.is_empty() {
            let now = Instant::now();
            while inflight.len() + pending.len() < pipeline {
                let n = shared.issued.fetch_add(1, Ordering::Relaxed);
                if n >= shared.ops || now >= shared.deadline {
                    break;
                }
                let k = if plan.sequential {
                    n % plan.keys
                } else {
                    match &plan.zipf {
                        Some(z) => z.sample(rng.random::<f64>()),
                        None => rng.random_range(0..plan.keys),
                    }
                };
                let read = rng.random::<f64>() < plan.read_fraction;
                let id = next_id;
                next_id += 1;
                body.clear();
                if read {
                    encode_get_into(id, &key(k), &mut body);
                } else {
                    encode_write(plan.write, id, k, n, &value, &shared, &mut body);
                }
                codec.encode_slice(&body, &mut wbuf)?;
                pending.push((id, k, read, body.len()));
            }
        }
        if !pending.is_empty() {
            // The requests of one refill go out in the one write below: the clock read
            // just before it is their send time.
            let sent_at = Instant::now();
            for (id, k, read, len) in pending.drain(..) {
                inflight.insert(id, (sent_at, k, read, len));
            }
        }
        if inflight.is_empty() {
            return Ok(stats);
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        // Wait for at least one response, then take every one already buffered.
        let mut got = 0;
        loop {
            while let Some(frame) = codec.decode(&mut rbuf)? {
                let resp = Response::decode(&frame)?;
                let Some((start, k, read, sent)) = inflight.remove(&resp.id) else {
                    anyhow::bail!("the node answered an id ({}) that was not asked", resp.id);
                };
                let op = if read { &mut stats.get } else { &mut stats.put };
                let took = received_at.saturating_duration_since(start);
                let _ = op.hist.record((took.as_micros() as u64).max(1));
                op.bytes += (sent + frame.len()) as u64;
                if resp.err.is_some() {
                    op.errors += 1;
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(ok) = resp.ok {
                    if read {
                        let found = ok.values.as_ref().is_some_and(|v| !v.is_empty());
                        if found {
                            op.hits += 1;
                        } else {
                            op.misses += 1;
                        }
                    }
                    if let Some(ctx) = ok.context.filter(|c| plan.remember && !c.is_empty()) {
                        shared.remember(k, &ctx);
                    }
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
                got += 1;
            }
            if got > 0 {
                break;
            }
            if stream.read_buf(&mut rbuf).await? == 0 {
                anyhow::bail!("the node closed the connection");
            }
            received_at = Instant::now();
        }
    }
}

/// Encodes the `n`-th request's write of key `k` into `body`: a put from borrowed bytes
/// (its value, and a copy of the key's newest context), no request built.
fn encode_write(
    op: WriteOp,
    id: u64,
    k: u64,
    n: u64,
    value: &[u8],
    shared: &Shared,
    body: &mut Vec<u8>,
) {
    match op {
        WriteOp::Put => encode_put_into(id, &key(k), value, shared.context(k).as_deref(), body),
        WriteOp::Incr => {
            let req = Request::Incr {
                key: op.key(k),
                by: 1,
                w: None,
            };
            encode_request_into(id, &req, body)
        }
        WriteOp::Sadd => {
            let mut member = value.to_vec();
            let tag = (n % SADD_MEMBERS_PER_KEY) as u8;
            match member.first_mut() {
                Some(b) => *b = tag,
                None => member.push(tag),
            }
            let req = Request::Sadd {
                key: op.key(k),
                members: vec![member],
                w: None,
            };
            encode_request_into(id, &req, body)
        }
    }
}

/// Opens a connection and says hello.
async fn open(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<BoxStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut stream: BoxStream = match tls {
        Some(tls) => {
            let name = tls.name_for(addr)?;
            let connector = TlsConnector::from(tls.config.clone());
            let s = connector
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            Box::new(s)
        }
        None => Box::new(stream),
    };
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
        client: "troupe-bench".into(),
        token: None,
    };
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(Bytes::from(encode_request(0, &hello)), &mut buf)?;
    stream.write_all(&buf).await?;
    buf.clear();
    loop {
        if let Some(frame) = codec.decode(&mut buf)? {
            let resp = Response::decode(&frame)?;
            if let Some(e) = resp.err {
                if let Some(hint) = crate::cli::admin_port_hint(addr, Duration::from_secs(5)).await
                {
                    anyhow::bail!(hint);
                }
                anyhow::bail!("{addr} refused hello: {}: {}", e.code, e.msg);
            }
            return Ok(stream);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("{addr} closed the connection during hello");
        }
    }
}

struct RunResult {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    stats: Stats,
}

async fn run_phase(
    addrs: &[&str],
    contexts: &Arc<Contexts>,
    args: &BenchArgs,
    plan: Plan,
    ops: u64,
    label: &str,
) -> anyhow::Result<RunResult> {
    let limit = Duration::from_secs_f64(args.duration.unwrap_or(300.0));
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        ops,
        deadline: Instant::now() + limit,
        contexts: contexts.clone(),
    });
    let plan = Arc::new(plan);
    // The bar measures permille of the run, by ops or by time, whichever is further along.
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1000)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:40}] {msg}")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let tls = args.tls.client_tls()?;
    let mut streams = Vec::new();
    for c in 0..args.concurrency {
        streams.push(open(addrs[c % addrs.len()], tls.as_ref()).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, stream) in streams.into_iter().enumerate() {
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(c as u64);
        let mut value = vec![0u8; args.value_size];
        SmallRng::seed_from_u64(seed).fill(&mut value[..]);
        tasks.push(tokio::spawn(conn_worker(
            stream,
            shared.clone(),
            plan.clone(),
            value,
            seed,
            args.pipeline,
            args.window,
        )));
    }
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                let done = shared.done.load(Ordering::Relaxed);
                let elapsed = start.elapsed();
                let by_ops = done as f64 / ops.max(1) as f64;
                let by_time = elapsed.as_secs_f64() / limit.as_secs_f64().max(1e-9);
                bar.set_position((by_ops.max(by_time).min(1.0) * 1000.0) as u64);
                bar.set_message(progress(done, ops, elapsed, limit));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut stats = Stats::new();
    for t in tasks {
        let s = t.await.context("bench worker panicked")??;
        stats.get.add(&s.get)?;
        stats.put.add(&s.put)?;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(RunResult {
        ops: shared.done.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed,
        stats,
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency > 0 && args.pipeline > 0,
        "--concurrency and --pipeline must be at least 1"
    );
    anyhow::ensure!(args.keys > 0, "--keys must be at least 1");
    // One thread by default, like redis-benchmark: on a shared machine the load generator
    // should take as little CPU from the node as it can.
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;
    let contexts: Arc<Contexts> = Arc::new(
        (0..CONTEXT_SHARDS)
            .map(|_| std::sync::Mutex::new(Default::default()))
            .collect(),
    );
    rt.block_on(async move {
        let addrs: Vec<&str> = args
            .addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        anyhow::ensure!(!addrs.is_empty(), "--addr needs at least one address");
        let reads = args.workload.read_fraction() > 0.0;
        if reads && !args.no_prefill {
            let plan = Plan {
                read_fraction: 0.0,
                zipf: None,
                keys: args.keys,
                sequential: true,
                write: WriteOp::Put,
                remember: Plan::remembers(args.workload),
            };
            let r = run_phase(&addrs, &contexts, &args, plan, args.keys, "prefill").await?;
            if !args.json {
                eprintln!(
                    "prefilled {} keys in {:.1?} ({} errors)",
                    r.ops, r.elapsed, r.errors
                );
            }
        }
        let plan = Plan {
            read_fraction: args.workload.read_fraction(),
            zipf: (args.distribution == Distribution::Zipfian).then(|| Zipf::new(args.keys)),
            keys: args.keys,
            sequential: args.fill == Fill::Sequential,
            write: args.workload.write_op(),
            remember: Plan::remembers(args.workload),
        };
        let r = run_phase(&addrs, &contexts, &args, plan, args.ops, "bench").await?;
        report(&args, &r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_whichever_bound_comes_first() {
        let limit = Duration::from_secs(10);
        // 1000 of 100000 ops in 1 s: 99 s by ops, 9 s by --duration.
        let p = progress(1000, 100_000, Duration::from_secs(1), limit);
        assert!(p.ends_with(" 9s left"), "{p}");
        // 5000 of 10000 in 1 s: 1 s by ops.
        let p = progress(5000, 10_000, Duration::from_secs(1), limit);
        assert!(p.ends_with(" 1s left"), "{p}");
    }

    #[test]
    fn keys_are_the_formatted_ones() {
        for i in [
            0,
            7,
            42,
            99_999,
            123_456_789_012,
            999_999_999_999,
            1_000_000_000_000,
            u64::MAX,
        ] {
            assert_eq!(key(i).as_slice(), format!("key{i:012}").as_bytes(), "{i}");
            assert!(!key(i).spilled(), "{i}: a key stays inline");
        }
    }

    #[test]
    fn workload_names_are_as_typed() {
        assert_eq!(cli_name(&Workload::YcsbA), "ycsb-a");
        assert_eq!(cli_name(&Fill::Sequential), "sequential");
    }

    #[test]
    fn zipf_stays_in_range_and_is_skewed() {
        let z = Zipf::new(1000);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let k = z.sample(rng.random::<f64>());
            counts[k as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = counts[..10].iter().sum();
        assert!(
            top10 > 20_000,
            "top 10 of 1000 keys got only {top10} of 100k samples"
        );
    }
}
