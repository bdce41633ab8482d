//! `troupe engine-bench`: the storage engine without the network, through the same actors a
//! node runs (Memtable + WAL, Flusher, Compactor, GC), in the style of RocksDB's `db_bench`.
//!
//! Each writer/reader is a task that sends one request and awaits its answer before the
//! next (like a `db_bench` thread calling `Put`/`Get`); `--concurrency` runs that many. Keys are 16 bytes, values
//! `--value-size` bytes. Write amplification = (flushed + compaction-written bytes) / user
//! bytes written, from the engine's counters (WAL bytes not included, as in RocksDB's W-Amp).

use actix::prelude::*;
use anyhow::Context as _;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use troupe_actors::compactor::CompactAll;
use troupe_actors::memtable::wal::Durability;
use troupe_actors::memtable::{Get, MemtableActor, MemtableConfig, Seal, Write};
use troupe_actors::stats::Registry;
use troupe_actors::storage::{self, EngineConfig, Storage};

#[derive(clap::Args)]
pub struct EngineBenchArgs {
    /// Data directory (must not exist or be empty; removed at the end unless --keep).
    #[arg(long, default_value = "./troupe-engine-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    num: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Operations for the fillrandom-with-sync runs.
    #[arg(long, default_value_t = 20_000)]
    sync_num: u64,
    #[arg(long, default_value_t = 64 << 20)]
    memtable_bytes: usize,
    #[arg(long, default_value_t = 8 << 20)]
    block_cache_bytes: usize,
    #[arg(long)]
    keep: bool,
    /// Requests in flight for the sync-off phases (1 = one synchronous caller, like a
    /// single `db_bench` thread; more shows the actors' throughput with pipelining).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Blocking-pool workers serving reads that miss memory (`storage.read_workers`;
    /// default: a node's default).
    #[arg(long)]
    read_workers: Option<usize>,
    /// Which groups to run: `fillseq`, `random` (fillrandom, overwrite, readrandom,
    /// compact, readrandom), `readonly` (the two readrandom runs over a `random` database
    /// kept from an earlier `--keep` run), `sync` (fillrandom with sync on, 1 and 8 writers).
    #[arg(long, value_delimiter = ',', default_value = "fillseq,random,sync")]
    benchmarks: Vec<Group>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Group {
    Fillseq,
    Random,
    Readonly,
    Sync,
}

fn key(i: u64) -> Vec<u8> {
    format!("{i:016}").into_bytes()
}

struct Run {
    storage: Storage,
    /// The Memtable's arbiter: the load runs there, as a `db_bench` thread calls into the
    /// engine in-process (the WAL writer is still its own thread).
    arbiter: ArbiterHandle,
    user_bytes: u64,
}

fn open(
    args: &EngineBenchArgs,
    sub: &str,
    durability: Durability,
    existing: bool,
) -> anyhow::Result<Run> {
    let dir = args.dir.join(sub);
    if !existing {
        let _ = std::fs::remove_dir_all(&dir);
    } else if !dir.join("tables").join("MANIFEST").exists() {
        anyhow::bail!(
            "{} holds no database; run `--benchmarks random --keep` first",
            dir.display()
        );
    }
    let registry = Registry::default();
    let config = MemtableConfig {
        data_dir: dir,
        durability,
        wal_queue_jobs: 65536,
        max_queued_bytes: 64 << 20,
        mailbox: 4096,
        memtable_bytes: args.memtable_bytes,
        wal_bytes: 4 * args.memtable_bytes,
        max_sealed: 2,
        max_stalled_writes: 4096,
        max_disk_reads: 64,
        read_workers: args
            .read_workers
            .unwrap_or(troupe_actors::memtable::reads::DEFAULT_READ_WORKERS),
    };
    let engine = EngineConfig {
        block_cache_bytes: args.block_cache_bytes,
        compaction_bytes_per_sec: 0,
        l0_compaction_trigger: 4,
        l0_stop_tables: 20,
        level1_bytes: 256 << 20,
        target_table_bytes: 32 << 20,
    };
    let opened = storage::open(config, &engine, &registry)?;
    let (a, b) = (Arbiter::new(), Arbiter::new());
    let storage = opened.start(&a.handle(), &b.handle(), &registry);
    let arbiter = a.handle();
    std::mem::forget((a, b)); // live for the whole benchmark
    Ok(Run {
        storage,
        arbiter,
        user_bytes: 0,
    })
}

/// Runs `threads` callers on the Memtable's arbiter, each awaiting one request at a time
/// (`caller(t, memtable)`), and sums what they return; the first error ends the run.
async fn run_callers<F, Fut>(run: &Run, threads: u64, caller: F) -> anyhow::Result<u64>
where
    F: Fn(u64, Addr<MemtableActor>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>> + Send + 'static,
{
    let tasks: Vec<_> = (0..threads)
        .map(|t| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let work = caller(t, run.storage.memtable.clone());
            run.arbiter.spawn(async move {
                let _ = tx.send(work.await);
            });
            rx
        })
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await?.map_err(anyhow::Error::msg)?;
    }
    Ok(sum)
}

/// `threads` callers share `num` writes: sequential keys, or random ones from `seed`.
async fn fill(
    run: &mut Run,
    name: &str,
    num: u64,
    threads: u64,
    value_size: usize,
    random: bool,
    seed: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    run_callers(run, threads, |t, m| async move {
        let mut rng = SmallRng::seed_from_u64(seed * 1000 + t + 1);
        for i in (t..num).step_by(threads as usize) {
            let k = if random { rng.random_range(0..num) } else { i };
            let value = Some(vec![b'v'; value_size]);
            let sent = m.send(Write { key: key(k), value }).await;
            sent.map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok(0)
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    run.user_bytes += num * (16 + value_size as u64);
    let ops = num as f64 / secs;
    println!("{name:<28} {ops:>12.0} ops/s  ({num} ops in {secs:.2} s, {threads} writer(s))");
    Ok(ops)
}

async fn read_random(run: &Run, name: &str, num: u64, threads: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let found = run_callers(run, threads, |t, m| async move {
        let mut rng = SmallRng::seed_from_u64(42 + t);
        let mut found = 0u64;
        for _ in (t..num).step_by(threads as usize) {
            let k = rng.random_range(0..num);
            let got = m.send(Get { key: key(k) }).await;
            let v = got.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            found += u64::from(v.is_some());
        }
        Ok(found)
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let ops = num as f64 / secs;
    println!("{name:<28} {ops:>12.0} ops/s  ({found} of {num} found, {secs:.2} s)");
    Ok(ops)
}

fn write_amp(run: &Run, name: &str) {
    let s = run.storage.tables.stats();
    let written = s.flush_bytes + s.compaction_bytes_written;
    let levels: Vec<String> = s
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.tables > 0)
        .map(|(i, l)| format!("L{i}:{}", l.tables))
        .collect();
    println!(
        "{name:<28} write amplification {:.2} ({written} table bytes written for {} user bytes; {} flushes, {} compactions; tables {})",
        written as f64 / run.user_bytes.max(1) as f64,
        run.user_bytes,
        s.flushes,
        s.compactions,
        levels.join(" ")
    );
}

async fn settle(run: &Run) -> anyhow::Result<()> {
    run.storage.memtable.send(Seal).await??;
    // Let background compaction catch up before reading.
    while run.storage.tables.pick_compaction().is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub fn run(args: EngineBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let relaxed = Durability::Relaxed {
        interval: Duration::from_secs(3600),
    };
    let wants = |g: Group| args.benchmarks.contains(&g);
    let system = System::new();
    let result = system.block_on(async {
        let (n, vs) = (args.num, args.value_size);
        let c = args.concurrency.max(1);
        println!("keys 16 B, values {vs} B, {n} ops, {c} in flight; WAL on, sync off unless noted");
        if wants(Group::Fillseq) {
            let mut r = open(&args, "seq", relaxed, false)?;
            fill(&mut r, "fillseq", n, c, vs, false, 0).await?;
            settle(&r).await?;
            write_amp(&r, "fillseq");
        }
        if wants(Group::Random) {
            let mut r = open(&args, "random", relaxed, false)?;
            fill(&mut r, "fillrandom", n, c, vs, true, 1).await?;
            // A different seed: overwrite must hit other keys than fillrandom did.
            fill(&mut r, "overwrite", n, c, vs, true, 2).await?;
            read_random(&r, "readrandom", n, c).await?;
            settle(&r).await?;
            write_amp(&r, "fillrandom+overwrite");
            r.storage
                .compactor
                .send(CompactAll)
                .await?
                .map_err(anyhow::Error::msg)?;
            write_amp(&r, "after compact-all");
            read_random(&r, "readrandom (compacted)", n, c).await?;
        }
        if wants(Group::Readonly) {
            let r = open(&args, "random", relaxed, true)?;
            read_random(&r, "readrandom (reopened)", n, c).await?;
        }
        if wants(Group::Sync) {
            for threads in [1, 8] {
                let mut r = open(&args, &format!("sync{threads}"), Durability::Sync, false)?;
                let name = format!("fillrandom sync=1 t={threads}");
                fill(&mut r, &name, args.sync_num, threads, vs, true, 3).await?;
            }
        }
        anyhow::Ok(())
    });
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    result
}
