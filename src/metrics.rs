//! A minimal Prometheus text endpoint (`GET /metrics`) on the metrics port.
//!
//! Each connection gets one response and is closed; a request is read up to 8 KiB within
//! 5 s, so a slow or hostile scraper costs one small task at most, and at most
//! `MAX_SCRAPES` scrapes gather at once (more are answered 503 at once). A scrape asks the
//! Memtable and Membership actors by message and reads the engine's counters on the
//! blocking pool (`Tables::stats` may wait for a commit's MANIFEST fsync), so it never
//! blocks an event loop; `render` itself is a pure function of what was gathered.

use actix::Addr;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use troupe_actors::compactor::CompactorSnapshot;
use troupe_actors::engine::stats::EngineStats;
use troupe_actors::flusher::FlusherSnapshot;
use troupe_actors::membership::actor::{ListMembers, MembershipActor};
use troupe_actors::memtable::wal::Health;
use troupe_actors::memtable::{GetMemtableStats, MemtableStats};
use troupe_actors::stats::Registry;
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
}

async fn gather(src: &Sources) -> Gathered {
    let mut g = Gathered::default();
    if let Some(s) = &src.storage {
        let tables = s.tables.clone();
        g.engine = tokio::task::spawn_blocking(move || tables.stats())
            .await
            .ok();
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

fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

pub fn render(src: &Sources, g: &Gathered) -> String {
    let mut out = String::new();
    let healthy = src
        .health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none();
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
    let actors = src.registry.snapshot();
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
    storage_metrics(&mut out, g);
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
    out
}

fn storage_metrics(out: &mut String, g: &Gathered) {
    if let Some(e) = &g.engine {
        let per_level = |f: &dyn Fn(&troupe_actors::engine::stats::LevelStats) -> u64| {
            e.levels
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("level=\"{i}\""), f(l) as f64))
                .collect::<Vec<_>>()
        };
        family(
            out,
            "troupe_storage_tables",
            "gauge",
            "SSTables per level.",
            &per_level(&|l| l.tables as u64),
        );
        family(
            out,
            "troupe_storage_table_bytes",
            "gauge",
            "SSTable bytes per level.",
            &per_level(&|l| l.bytes),
        );
        let counters: [(&str, &str, u64); 11] = [
            (
                "troupe_storage_flushes_total",
                "Memtables flushed to L0 tables.",
                e.flushes,
            ),
            (
                "troupe_storage_flush_bytes_total",
                "Table bytes written by flushes.",
                e.flush_bytes,
            ),
            (
                "troupe_storage_compactions_total",
                "Compactions run.",
                e.compactions,
            ),
            (
                "troupe_storage_compaction_read_bytes_total",
                "Table bytes read by compactions.",
                e.compaction_bytes_read,
            ),
            (
                "troupe_storage_compaction_written_bytes_total",
                "Table bytes written by compactions.",
                e.compaction_bytes_written,
            ),
            (
                "troupe_storage_tombstones_dropped_total",
                "Tombstones compaction dropped.",
                e.tombstones_dropped,
            ),
            (
                "troupe_storage_bloom_useful_total",
                "Lookups a bloom filter answered absent.",
                e.bloom_useful,
            ),
            (
                "troupe_storage_bloom_useless_total",
                "Bloom filter maybes that found nothing.",
                e.bloom_useless,
            ),
            (
                "troupe_storage_block_reads_total",
                "Data blocks read from disk.",
                e.block_reads,
            ),
            (
                "troupe_storage_block_cache_hits_total",
                "Block cache hits.",
                e.cache.map_or(0, |c| c.hits),
            ),
            (
                "troupe_storage_block_cache_misses_total",
                "Block cache misses.",
                e.cache.map_or(0, |c| c.misses),
            ),
        ];
        for (name, help, v) in counters {
            family(out, name, "counter", help, &one(v));
        }
        family(
            out,
            "troupe_storage_block_cache_bytes",
            "gauge",
            "Bytes held by the block cache.",
            &one(e.cache.map_or(0, |c| c.used_bytes)),
        );
        family(
            out,
            "troupe_storage_manifest_bytes",
            "gauge",
            "Size of the MANIFEST log.",
            &one(e.manifest_bytes),
        );
    }
    if let Some(m) = &g.memtable {
        family(
            out,
            "troupe_memtable_bytes",
            "gauge",
            "Bytes in the active memtable.",
            &one(m.active_bytes as u64),
        );
        family(
            out,
            "troupe_memtable_sealed",
            "gauge",
            "Sealed memtables waiting for (or in) a flush.",
            &one(m.sealed_tables as u64),
        );
        family(
            out,
            "troupe_write_stalls_total",
            "counter",
            "Writes that waited for a flush.",
            &one(m.write_stalls),
        );
        family(
            out,
            "troupe_wal_fsyncs_total",
            "counter",
            "Successful fdatasyncs of the WAL.",
            &one(m.wal_fsyncs),
        );
    }
    if let Some(f) = &g.flusher {
        family(
            out,
            "troupe_flush_failures_total",
            "counter",
            "Flush attempts that failed (retried unless poisoned).",
            &one(f.failures),
        );
        family(
            out,
            "troupe_l0_stalls_total",
            "counter",
            "Times flushing waited for compaction because L0 was full.",
            &one(f.l0_stalls),
        );
    }
    if let Some(c) = &g.compactor {
        family(
            out,
            "troupe_compaction_errors_total",
            "counter",
            "Background compaction rounds that failed.",
            &one(c.errors),
        );
    }
    if let Some(n) = g.gc_tables_deleted {
        family(
            out,
            "troupe_gc_tables_deleted_total",
            "counter",
            "Retired table files GC deleted.",
            &one(n),
        );
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

/// Reads the request head and answers: the metrics, 404 for another path, or 503 when
/// `MAX_SCRAPES` scrapes are already gathering.
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
    let (status, body) = if !(head.starts_with("GET /metrics") || head.starts_with("GET / ")) {
        ("404 Not Found", "try GET /metrics\n".to_string())
    } else if let Ok(_permit) = scrapes.clone().try_acquire_owned() {
        ("200 OK", render(src, &gather(src).await))
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
