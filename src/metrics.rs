//! A minimal Prometheus text endpoint (`GET /metrics`) on the metrics port, and `GET
//! /health` for load balancers: `200 ok` while the node is up and its storage is not
//! poisoned (what `troupe_up` says), `503` with the reason otherwise. A health check reads
//! one flag and takes no scrape slot.
//!
//! Each connection gets one response and is closed; a request is read up to 8 KiB within
//! 5 s, so a slow or hostile scraper costs one small task at most, and at most
//! `MAX_SCRAPES` scrapes gather at once (more are answered 503 at once). A scrape asks the
//! Memtable and Membership actors by message and reads the engine's counters on the
//! blocking pool (`Tables::stats` may wait for a commit's MANIFEST fsync), so it never
//! blocks an event loop; `render` itself is a pure function of what was gathered. The
//! process figures (`/proc/self`) and the WAL and table bytes on disk are read in that same
//! blocking task (see [`process`]).

mod antientropy;
mod hints;
mod process;
mod replication;
mod transfers;

use actix::Addr;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use troupe_actors::backoff::FailureSnapshot;
use troupe_actors::compactor::CompactorSnapshot;
use troupe_actors::engine::stats::{EngineStats, LevelStats};
use troupe_actors::flusher::FlusherSnapshot;
use troupe_actors::membership::actor::{GetSwimStats, ListMembers, MembershipActor, SwimSnapshot};
use troupe_actors::memtable::wal::Health;
use troupe_actors::memtable::{GetMemtableStats, MemtableStats};
use troupe_actors::stats::{HistogramSnapshot, Registry, BUCKETS};
use troupe_actors::storage::Storage;

const MAX_SCRAPES: usize = 4;

/// Where a scrape's figures come from.
#[derive(Clone)]
pub struct Sources {
    pub registry: Registry,
    pub health: Health,
    pub started: Instant,
    pub storage: Option<Storage>,
    pub membership: Option<Addr<MembershipActor>>,
    /// The replication coordinator's counters (relaxed atomics, read without a message).
    pub coordinator: Option<Arc<troupe_actors::coordinator::CoordinatorStats>>,
    /// Anti-entropy's counters (relaxed atomics).
    pub antientropy: Option<Arc<troupe_actors::antientropy::AntiEntropyStats>>,
    pub tombstones: Option<Arc<troupe_actors::tombstones::TombStats>>,
    /// The client request byte budget (`net.max_inflight_bytes`).
    pub budget: Option<troupe_actors::connection::reader::ByteBudget>,
    /// Hinted handoff's counters (relaxed atomics).
    pub hints: Option<Arc<troupe_actors::hints::HintStats>>,
    pub transfers: Option<Arc<troupe_actors::handoff::HandoffStats>>,
    /// `auth.admin_token`'s hash: /metrics then needs `Authorization: Bearer TOKEN`
    /// (/health stays open: it says only ok or poisoned, for load balancers and systemd).
    pub token: Option<blake3::Hash>,
}

/// One scrape's figures beyond the actor registry; a part is `None` if its source did
/// not answer (the rest is still served).
#[derive(Default)]
pub struct Gathered {
    pub engine: Option<EngineStats>,
    pub memtable: Option<MemtableStats>,
    pub flusher: Option<FlusherSnapshot>,
    pub compactor: Option<CompactorSnapshot>,
    pub gc_tables_deleted: Option<u64>,
    /// Members by status (`alive`, `suspect`, `dead`, `left`), this node included.
    pub members: Option<BTreeMap<String, u64>>,
    /// SWIM protocol counters and local health.
    pub swim: Option<SwimSnapshot>,
    pub process: Option<process::ProcessStats>,
    pub disk: Option<process::DiskBytes>,
}

/// `permit` is this scrape's slot; the blocking read of the engine's counters keeps it until
/// that read returns, even if the scrape times out first, so stuck reads cannot pile up.
async fn gather(src: &Sources, permit: OwnedSemaphorePermit) -> Gathered {
    let mut g = Gathered::default();
    let tables = src.storage.as_ref().map(|s| s.tables.clone());
    let read = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let engine = tables
            .as_ref()
            .map(|t| (t.stats(), process::read_disk(t.dir())));
        (engine, process::read_process())
    });
    if let Ok((engine, proc_stats)) = read.await {
        g.process = proc_stats;
        if let Some((engine, disk)) = engine {
            g.engine = Some(engine);
            g.disk = Some(disk);
        }
    }
    if let Some(s) = &src.storage {
        g.memtable = s.memtable.send(GetMemtableStats).await.ok();
        g.flusher = Some(s.flusher_stats.snapshot());
        g.compactor = Some(s.compactor_stats.snapshot());
        g.gc_tables_deleted = Some(s.gc_deleted.load(std::sync::atomic::Ordering::Relaxed));
    }
    if let Some(m) = &src.membership {
        if let Ok(rows) = m.send(ListMembers).await {
            let mut by = BTreeMap::new();
            for status in ["alive", "suspect", "dead", "left"] {
                by.insert(status.to_string(), 0);
            }
            for r in rows {
                *by.entry(r.status).or_insert(0) += 1;
            }
            g.members = Some(by);
        }
        g.swim = m.send(GetSwimStats).await.ok();
    }
    g
}

/// Writes one metric family: HELP, TYPE and its samples (`labels` without braces).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// Writes one histogram family: per series the cumulative `_bucket`s (`le` ending at
/// `+Inf`), `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, help: &str, series: &[(String, HistogramSnapshot)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in series {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, n) in h.cumulative.iter().enumerate() {
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{braced} {}", h.count());
    }
}

fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

/// Why the node is unhealthy (its storage poison), or `None` when it is healthy.
fn unhealthy(src: &Sources) -> Option<String> {
    src.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn render(src: &Sources, g: &Gathered) -> String {
    let mut out = String::new();
    let healthy = unhealthy(src).is_none();
    family(
        &mut out,
        "troupe_up",
        "gauge",
        "1 when the node accepts writes, 0 when storage is poisoned.",
        &one(u64::from(healthy)),
    );
    family(
        &mut out,
        "troupe_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        &one(src.started.elapsed().as_secs()),
    );
    family(
        &mut out,
        "troupe_build_info",
        "gauge",
        "Always 1; the labels say which build runs.",
        &[(
            format!(
                "version=\"{}\",profile=\"{}\"",
                env!("CARGO_PKG_VERSION"),
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
            ),
            1.0,
        )],
    );
    let actors = src.registry.snapshot();
    let connections = actors
        .iter()
        .find(|a| a.name == "connection")
        .map_or(0, |a| a.instances);
    family(
        &mut out,
        "troupe_connections_open",
        "gauge",
        "Open client connections.",
        &one(connections),
    );
    for (metric, kind, help) in [
        (
            "troupe_actor_messages_handled_total",
            "counter",
            "Messages an actor handled.",
        ),
        (
            "troupe_actor_errors_total",
            "counter",
            "Messages an actor answered with an error.",
        ),
        (
            "troupe_actor_mailbox",
            "gauge",
            "Messages sent to an actor and not yet handled.",
        ),
        (
            "troupe_actor_instances",
            "gauge",
            "Live actors of this kind.",
        ),
    ] {
        let samples: Vec<_> = actors
            .iter()
            .map(|a| {
                let v = match metric {
                    "troupe_actor_messages_handled_total" => a.handled,
                    "troupe_actor_errors_total" => a.errors,
                    "troupe_actor_mailbox" => a.mailbox,
                    _ => a.instances,
                };
                (format!("actor=\"{}\"", a.name), v as f64)
            })
            .collect();
        family(&mut out, metric, kind, help, &samples);
    }
    let sent: Vec<_> = src
        .registry
        .sent_handled()
        .into_iter()
        .map(|(name, sent, _)| (format!("actor=\"{name}\""), sent as f64))
        .collect();
    family(
        &mut out,
        "troupe_actor_messages_sent_total",
        "counter",
        "Messages sent to an actor (at rest equal to those handled).",
        &sent,
    );
    let requests: Vec<_> = src
        .registry
        .requests()
        .snapshot()
        .into_iter()
        .map(|(op, result, h)| (format!("op=\"{op}\",result=\"{result}\""), h))
        .collect();
    histogram(
        &mut out,
        "troupe_request_duration_seconds",
        "Client requests by op and result (ok or the error code), from frame read to response handed to the socket writer; its _count is the number of requests, and of errors by code.",
        &requests,
    );
    storage_metrics(&mut out, g);
    process_metrics(&mut out, g);
    if let Some(c) = &src.coordinator {
        replication::coordinator_metrics(&mut out, &c.snapshot());
        replication::peer_rpc_metrics(&mut out, c);
    }
    if let Some(a) = &src.antientropy {
        antientropy::render(&mut out, a);
    }
    if let Some(t) = &src.tombstones {
        replication::tombstone_metrics(&mut out, &t.snapshot());
    }
    if let Some(b) = &src.budget {
        family(
            &mut out,
            "troupe_inflight_request_bytes",
            "gauge",
            "Bytes of client requests read but not yet answered (beyond 64 KiB per frame); at net.max_inflight_bytes readers wait.",
            &one(b.in_use() as u64),
        );
        family(
            &mut out,
            "troupe_client_read_stalls_total",
            "counter",
            "Client connections closed because a frame did not complete within net.read_timeout.",
            &one(b.stalls()),
        );
    }
    if let Some(h) = &src.hints {
        hints::render(&mut out, &h.snapshot());
    }
    if let Some(t) = &src.transfers {
        transfers::render(&mut out, t);
    }
    if let Some(members) = &g.members {
        let samples: Vec<_> = members
            .iter()
            .map(|(status, n)| (format!("status=\"{status}\""), *n as f64))
            .collect();
        family(
            &mut out,
            "troupe_members",
            "gauge",
            "Cluster members this node knows, by status (itself included).",
            &samples,
        );
    }
    if let Some(s) = &g.swim {
        swim_metrics(&mut out, s);
    }
    out
}

/// SWIM failure detection and dissemination (issue 16).
#[rustfmt::skip] // one metric per line reads better than rustfmt's five
fn swim_metrics(out: &mut String, s: &SwimSnapshot) {
    let c = &s.stats;
    for (name, help, v) in [
        ("troupe_swim_probes_sent_total", "Direct probes (pings) this node sent, its own and relayed.", c.probes_sent),
        ("troupe_swim_acks_received_total", "Probe acks received.", c.acks_received),
        ("troupe_swim_indirect_probes_sent_total", "Indirect probe requests sent to relays after a direct probe went unanswered.", c.indirect_probes_sent),
        ("troupe_swim_nacks_received_total", "Lifeguard nacks: relays that could not reach our target either.", c.nacks_received),
        ("troupe_swim_probes_late_total", "Unanswered probes not held against their target because this node's own tick ran late (it is the slow one).", c.probes_late),
        ("troupe_swim_suspicions_raised_total", "Members this node's own probes put under suspicion.", c.suspicions_raised),
        ("troupe_swim_suspicions_refuted_total", "Suspicions about this node it refuted.", c.suspicions_refuted),
        ("troupe_swim_suspicions_confirmed_total", "Suspicions that expired into dead on this node's verdict.", c.suspicions_confirmed),
        ("troupe_swim_gossip_messages_sent_total", "Gossip fan-out messages sent.", c.gossip_msgs_sent),
        ("troupe_swim_gossip_bytes_sent_total", "Estimated encoded bytes of membership updates sent (gossip and piggyback).", c.gossip_bytes_sent),
        ("troupe_swim_gossip_bytes_received_total", "Estimated encoded bytes of membership updates received.", c.gossip_bytes_received),
    ] {
        family(out, name, "counter", help, &one(v));
    }
    if let Some(lhm) = s.local_health {
        family(
            out,
            "troupe_swim_local_health",
            "gauge",
            "Lifeguard local health multiplier: 0 healthy; probe periods and timeouts scale by this plus one.",
            &one(u64::from(lhm)),
        );
    }
}

#[rustfmt::skip] // one metric per line reads better than rustfmt's five
fn process_metrics(out: &mut String, g: &Gathered) {
    if let Some(d) = &g.disk {
        family(out, "troupe_wal_bytes", "gauge", "Bytes of the WAL segment files on disk.", &one(d.wal));
        family(out, "troupe_data_bytes", "gauge", "Bytes of the files in the tables directory (SSTables and MANIFEST).", &one(d.data));
    }
    if let Some(p) = &g.process {
        let f = |v: f64| vec![(String::new(), v)];
        family(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", &f(p.cpu_seconds));
        family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", &one(p.resident_bytes));
        family(out, "process_open_fds", "gauge", "Number of open file descriptors.", &one(p.open_fds));
        family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", &f(p.start_time_seconds));
    }
    if let Some(n) = crate::allocations() {
        family(out, "troupe_allocations_total", "counter", "Heap allocations and reallocations since start (only with TROUPE_COUNT_ALLOCS=1).", &one(n));
    }
}

#[rustfmt::skip] // one metric per line reads better than rustfmt's five
fn storage_metrics(out: &mut String, g: &Gathered) {
    if let Some(e) = &g.engine {
        let per_level = |f: &dyn Fn(&LevelStats) -> u64| {
            e.levels
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("level=\"{i}\""), f(l) as f64))
                .collect::<Vec<_>>()
        };
        let tables = per_level(&|l| l.tables as u64);
        family(out, "troupe_storage_tables", "gauge", "SSTables per level.", &tables);
        let bytes = per_level(&|l| l.bytes);
        family(out, "troupe_storage_table_bytes", "gauge", "SSTable bytes per level.", &bytes);
    }
    let (e, m) = (g.engine.as_ref(), g.memtable.as_ref());
    let cache = e.and_then(|e| e.cache);
    let (c, g_) = ("counter", "gauge");
    let scalars: [(&str, &str, &str, Option<u64>); 24] = [
        ("troupe_storage_flushes_total", c, "Memtables flushed to L0 tables.", e.map(|e| e.flushes)),
        ("troupe_storage_flush_bytes_total", c, "Table bytes written by flushes.", e.map(|e| e.flush_bytes)),
        ("troupe_storage_compactions_total", c, "Compactions run.", e.map(|e| e.compactions)),
        ("troupe_storage_compaction_read_bytes_total", c, "Table bytes read by compactions.", e.map(|e| e.compaction_bytes_read)),
        ("troupe_storage_compaction_written_bytes_total", c, "Table bytes written by compactions.", e.map(|e| e.compaction_bytes_written)),
        ("troupe_storage_tombstones_dropped_total", c, "Tombstones compaction dropped.", e.map(|e| e.tombstones_dropped)),
        ("troupe_storage_bloom_useful_total", c, "Lookups a bloom filter answered absent.", e.map(|e| e.bloom_useful)),
        ("troupe_storage_bloom_useless_total", c, "Bloom filter maybes that found nothing.", e.map(|e| e.bloom_useless)),
        ("troupe_storage_block_reads_total", c, "Data blocks read from disk.", e.map(|e| e.block_reads)),
        ("troupe_storage_block_cache_hits_total", c, "Block cache hits.", cache.map(|c| c.hits)),
        ("troupe_storage_block_cache_misses_total", c, "Block cache misses.", cache.map(|c| c.misses)),
        ("troupe_storage_block_cache_bytes", g_, "Bytes held by the block cache.", cache.map(|c| c.used_bytes)),
        ("troupe_storage_manifest_bytes", g_, "Size of the MANIFEST log.", e.map(|e| e.manifest_bytes)),
        ("troupe_memtable_bytes", g_, "Bytes in the active memtable.", m.map(|m| m.active_bytes as u64)),
        ("troupe_memtable_sealed", g_, "Sealed memtables waiting for (or in) a flush.", m.map(|m| m.sealed_tables as u64)),
        ("troupe_write_stalls_total", c, "Writes that waited for a flush.", m.map(|m| m.write_stalls)),
        ("troupe_wal_fsyncs_total", c, "Successful fdatasyncs of the WAL.", m.map(|m| m.wal_fsyncs)),
        ("troupe_wal_batches_total", c, "Group commits of the WAL (one write of their records each; writes over batches is the grouping).", m.map(|m| m.wal_batches)),
        ("troupe_wal_batches_now_total", c, "Of those, group commits the event loop wrote itself with a non-blocking write (relaxed durability, on a file system that takes them: XFS, not ext4).", m.map(|m| m.wal_batches_now)),
        ("troupe_disk_lookups_total", c, "Lookups that needed a file read (the rest were answered from memory, bloom filters or the block cache).", m.map(|m| m.disk_lookups)),
        ("troupe_flush_failures_total", c, "Flush attempts that failed (retried unless poisoned).", g.flusher.as_ref().map(|f| f.failures.failures)),
        ("troupe_l0_stalls_total", c, "Times flushing waited for compaction because L0 was full.", g.flusher.as_ref().map(|f| f.l0_stalls)),
        ("troupe_compaction_failures_total", c, "Background compaction rounds that failed (retried with backoff).", g.compactor.as_ref().map(|c| c.failures.failures)),
        ("troupe_gc_tables_deleted_total", c, "Retired table files GC deleted.", g.gc_tables_deleted),
    ];
    for (name, kind, help, v) in scalars {
        if let Some(v) = v {
            family(out, name, kind, help, &one(v));
        }
    }
    // Failing background work: the error text is in `admin status` (a label would be
    // unbounded); here, whether it is failing now and for how many attempts in a row.
    let work = [
        ("flush", g.flusher.as_ref().map(|f| &f.failures)),
        ("compaction", g.compactor.as_ref().map(|c| &c.failures)),
    ];
    let per_work = |f: &dyn Fn(&FailureSnapshot) -> u64| {
        work.iter()
            .filter_map(|(w, s)| s.map(|s| (format!("work=\"{w}\""), f(s) as f64)))
            .collect::<Vec<_>>()
    };
    let failing = per_work(&|s| u64::from(s.consecutive_failures > 0));
    if !failing.is_empty() {
        family(out, "troupe_background_failing", "gauge", "1 while this background work fails and is retried with backoff (writes still accepted), else 0.", &failing);
        let streak = per_work(&|s| s.consecutive_failures);
        family(out, "troupe_background_consecutive_failures", "gauge", "Failed attempts of this background work since its last success.", &streak);
    }
}

pub async fn serve(listener: TcpListener, sources: Sources, shutdown: CancellationToken) {
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    while let Some((stream, _)) = troupe_actors::net::accept(&listener, &shutdown, "metrics").await
    {
        let src = sources.clone();
        let scrapes = scrapes.clone();
        actix::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), answer(stream, &src, &scrapes)).await;
        });
    }
}

/// The token of an `Authorization: Bearer TOKEN` header in a request head.
fn bearer(head: &str) -> Option<&str> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        value.trim().strip_prefix("Bearer ").map(str::trim)
    })
}

/// Reads the request head and answers: the health, the metrics, 404 for another path, or
/// 503 when `MAX_SCRAPES` scrapes are already gathering.
async fn answer(
    mut stream: TcpStream,
    src: &Sources,
    scrapes: &Arc<Semaphore>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        let r = stream.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let (status, body) = if head.starts_with("GET /health ") || head.starts_with("GET /health?") {
        match unhealthy(src) {
            None => ("200 OK", "ok\n".to_string()),
            Some(why) => (
                "503 Service Unavailable",
                format!("storage is poisoned (the node refuses writes): {why}\n"),
            ),
        }
    } else if !(head.starts_with("GET /metrics") || head.starts_with("GET / ")) {
        (
            "404 Not Found",
            "try GET /metrics or GET /health\n".to_string(),
        )
    } else if src
        .token
        .is_some_and(|t| bearer(&head).map(|b| blake3::hash(b.as_bytes())) != Some(t))
    {
        (
            "401 Unauthorized",
            "this node needs its admin token: Authorization: Bearer <auth.admin_token>\n"
                .to_string(),
        )
    } else if let Ok(permit) = scrapes.clone().try_acquire_owned() {
        ("200 OK", render(src, &gather(src, permit).await))
    } else {
        (
            "503 Service Unavailable",
            "too many scrapes at once; retry\n".to_string(),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn sources() -> Sources {
        Sources {
            registry: Registry::default(),
            health: Arc::new(Mutex::new(None)),
            started: Instant::now(),
            storage: None,
            membership: None,
            coordinator: Some(Arc::default()),
            antientropy: Some(Arc::default()),
            tombstones: Some(Arc::default()),
            budget: Some(troupe_actors::connection::reader::ByteBudget::new(1 << 20)),
            hints: Some(Arc::default()),
            transfers: Some(Arc::default()),
            token: None,
        }
    }

    /// Serves one connection with `permits` free scrape slots; returns the status line.
    async fn scrape_with(permits: usize, path: &str) -> String {
        let resp = request(&sources(), permits, path).await;
        resp.lines().next().unwrap_or("").to_string()
    }

    /// Serves one request for `path` from `src`; returns the whole response.
    async fn request(src: &Sources, permits: usize, path: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let path = path.to_string();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).await.unwrap();
            resp
        });
        let (stream, _) = listener.accept().await.unwrap();
        let scrapes = Arc::new(Semaphore::new(permits));
        answer(stream, src, &scrapes).await.unwrap();
        let resp = client.await.unwrap();
        assert_eq!(
            scrapes.available_permits(),
            permits,
            "the slot is given back"
        );
        resp
    }

    #[tokio::test]
    async fn health_is_ok_until_storage_is_poisoned_and_needs_no_scrape_slot() {
        let src = sources();
        let resp = request(&src, 0, "/health").await;
        assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
        assert!(resp.ends_with("\r\n\r\nok\n"), "{resp}");
        *src.health.lock().unwrap() = Some("WAL fsync failed".into());
        let resp = request(&src, 0, "/health").await;
        assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
        assert!(resp.contains("WAL fsync failed"), "{resp}");
    }

    #[tokio::test]
    async fn busy_scrapes_get_503_others_200_or_404() {
        assert!(scrape_with(0, "/metrics").await.contains("503"));
        assert!(scrape_with(1, "/metrics").await.contains("200"));
        assert!(scrape_with(0, "/other").await.contains("404"));
    }

    #[test]
    fn failing_background_work_is_counted_and_flagged_while_the_node_stays_up() {
        use troupe_actors::compactor::CompactorStats;
        use troupe_actors::flusher::FlusherStats;
        let compactor = CompactorStats::default();
        compactor
            .failures()
            .failed("ENOSPC".into(), 3, Duration::from_secs(4));
        let g = Gathered {
            flusher: Some(FlusherStats::default().snapshot()),
            compactor: Some(compactor.snapshot()),
            ..Gathered::default()
        };
        let body = render(&sources(), &g);
        for line in [
            "\ntroupe_up 1\n",
            "\ntroupe_compaction_failures_total 1\n",
            "\ntroupe_flush_failures_total 0\n",
            "\ntroupe_background_failing{work=\"compaction\"} 1\n",
            "\ntroupe_background_failing{work=\"flush\"} 0\n",
            "\ntroupe_background_consecutive_failures{work=\"compaction\"} 3\n",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
    }

    #[test]
    fn peer_rpcs_render_as_counts_and_a_cumulative_histogram() {
        let src = sources();
        let c = src.coordinator.clone().expect("set");
        let b = troupe_protocol::swim::NodeId::new("b");
        c.peer_rpcs
            .ended(&b, 1, "ok", Some(Duration::from_millis(3)));
        c.peer_rpcs.ended(&b, 1, "timeout", None);
        let body = render(&src, &Gathered::default());
        for line in [
            "\ntroupe_peer_rpcs_total{peer=\"b\",kind=\"put\",result=\"ok\"} 1\n",
            "\ntroupe_peer_rpcs_total{peer=\"b\",kind=\"put\",result=\"timeout\"} 1\n",
            "\ntroupe_peer_rpc_duration_seconds_bucket{kind=\"put\",le=\"0.0025\"} 0\n",
            "\ntroupe_peer_rpc_duration_seconds_bucket{kind=\"put\",le=\"0.005\"} 1\n",
            "\ntroupe_peer_rpc_duration_seconds_bucket{kind=\"put\",le=\"+Inf\"} 1\n",
            "\ntroupe_peer_rpc_duration_seconds_count{kind=\"put\"} 1\n",
            "\ntroupe_peer_rpc_duration_seconds_count{kind=\"get\"} 0\n",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
    }

    #[test]
    fn swim_counters_and_local_health_are_rendered() {
        use troupe_actors::membership::driver::SwimStats;
        let g = Gathered {
            swim: Some(SwimSnapshot {
                stats: SwimStats {
                    probes_sent: 7,
                    nacks_received: 2,
                    probes_late: 4,
                    suspicions_refuted: 1,
                    gossip_bytes_received: 900,
                    ..SwimStats::default()
                },
                local_health: Some(3),
            }),
            ..Gathered::default()
        };
        let body = render(&sources(), &g);
        for line in [
            "\ntroupe_swim_probes_sent_total 7\n",
            "\ntroupe_swim_acks_received_total 0\n",
            "\ntroupe_swim_indirect_probes_sent_total 0\n",
            "\ntroupe_swim_nacks_received_total 2\n",
            "\ntroupe_swim_probes_late_total 4\n",
            "\ntroupe_swim_suspicions_raised_total 0\n",
            "\ntroupe_swim_suspicions_refuted_total 1\n",
            "\ntroupe_swim_suspicions_confirmed_total 0\n",
            "\ntroupe_swim_gossip_bytes_sent_total 0\n",
            "\ntroupe_swim_gossip_bytes_received_total 900\n",
            "\ntroupe_swim_local_health 3\n",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
    }

    #[test]
    fn a_poisoned_node_reports_down() {
        let src = sources();
        *src.health.lock().unwrap() = Some("WAL fsync failed".into());
        let body = render(&src, &Gathered::default());
        assert!(body.contains("\ntroupe_up 0\n"), "{body}");
    }
}
