//! The `troupe` binary: runs a node (`troupe node`) and is the command-line client
//! (`put`, `get`, `del`, the data-type commands `incr` ... `reg-get`, `bench`, `admin`,
//! `console`), the history checker (`check`), `config check|print`, and the offline
//! `repair-wal`.
//!
//! Layout: [`config`] loads layered settings, [`node`] wires the actors, [`metrics`] serves
//! Prometheus text, [`cli`] holds the client commands ([`cli_types`] those of the data
//! types), [`admin_cli`] the admin command (its human rendering in [`admin_render`]),
//! [`console`] the interactive console, [`bench`] the load generator, [`check`] the history
//! checker, [`repair_wal`] the offline WAL repair.
//! Exit codes: 0 success, 1 key not found, 2 error, 4 `check` found a violation.

/// mimalloc instead of glibc malloc: a node allocates and frees small buffers on several
/// threads per request (frames, keys, objects, replies), and glibc's arena locking and
/// consolidation took about a tenth of a 3-node cluster's CPU in a profile. Measured in
/// docs/BENCHMARKS.md ("Replication").
#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting(mimalloc::MiMalloc);

/// Counts heap allocations when `TROUPE_COUNT_ALLOCS=1` is set at start (the benchmark
/// scripts set it, and read `troupe_allocations_total` from /metrics to report allocations
/// per request). Off, the cost is one relaxed load per allocation; on, a relaxed add on one
/// of 16 cache-line-padded counters picked per thread (no contention between threads).
mod alloc_count {
    use libmimalloc_sys as mi;
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

    pub struct Counting(pub mimalloc::MiMalloc);

    #[repr(align(64))]
    struct Slot(AtomicU64);

    const SLOTS: usize = 16;
    static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicU64::new(0)) }; SLOTS];
    static ON: AtomicBool = AtomicBool::new(false);
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// Starts counting if `TROUPE_COUNT_ALLOCS=1` (call once, early in `main`).
    pub fn init() {
        if std::env::var("TROUPE_COUNT_ALLOCS").is_ok_and(|v| v == "1") {
            ON.store(true, Relaxed);
        }
    }

    /// Allocations so far, when counting.
    pub fn total() -> Option<u64> {
        ON.load(Relaxed)
            .then(|| COUNTS.iter().map(|s| s.0.load(Relaxed)).sum())
    }

    #[inline]
    fn count() {
        if !ON.load(Relaxed) {
            return;
        }
        // Const-initialised, no destructor: no allocation, safe inside the allocator.
        let _ = SLOT.try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT.fetch_add(1, Relaxed) % SLOTS;
                s.set(i);
            }
            COUNTS[i].0.fetch_add(1, Relaxed);
        });
    }

    /// Alignment every mimalloc block has: block sizes are whole words (a pointer's size)
    /// and pages start aligned. (mimalloc's `MI_GUARDED` debug builds can place a block
    /// unaligned against its guard page; this build does not enable them.)
    const WORD: usize = std::mem::size_of::<usize>();

    // SAFETY: every call is forwarded to mimalloc (counting touches only atomics); a layout
    // aligned to at most a word goes to the plain entry points, whose blocks are always
    // word-aligned, the rest to the aligned ones (a realloc keeps its block's layout, so
    // a block stays on the path that made it). The `mimalloc` crate sends every call to
    // the aligned entry points, whose alignment checks were 2.3% of the event loop's
    // instructions per pipelined put (docs/BENCHMARKS.md), and most of Rust's layouts are
    // word-aligned.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            if layout.align() <= WORD {
                // SAFETY: size is non-zero (the caller's contract); any block is word-aligned.
                return unsafe { mi::mi_malloc(layout.size()) }.cast();
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { self.0.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            if layout.align() <= WORD {
                // SAFETY: as in `alloc`.
                return unsafe { mi::mi_zalloc(layout.size()) }.cast();
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { self.0.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            if layout.align() <= WORD {
                // SAFETY: `ptr` came from mimalloc; the new block is word-aligned like any.
                return unsafe { mi::mi_realloc(ptr.cast(), new_size) }.cast();
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on (mi_free takes any block).
            unsafe { self.0.dealloc(ptr, layout) }
        }
    }
}

/// Heap allocations since start, when `TROUPE_COUNT_ALLOCS=1` (for /metrics).
pub fn allocations() -> Option<u64> {
    alloc_count::total()
}

/// mimalloc keeps freed memory committed for a while, and commits arenas eagerly; for a node
/// that bounds its memory by design (a stalled client holds at most its in-flight
/// responses) that showed as RSS: 58-66 MiB of growth for the backpressure test's stalled
/// client against 21-27 MiB with glibc malloc. Lazy arena commit applies only to arenas
/// created after this runs (the first one exists before `main`); with
/// `MIMALLOC_ARENA_EAGER_COMMIT=0` in the environment the growth is 22 MiB. Freed pages
/// are purged 1 s after they empty (mimalloc v3's own default; v2's is 10 ms): at once (0)
/// the pages a burst of requests freed were faulted in again by the next burst, 9% of the
/// node's CPU per pipelined put; at 10 ms still 0.055 page faults per pipelined put, each
/// zeroing a fresh page, against 0.002-0.005 at 1 s and 0.0001 at 10 s (10 ms against
/// 10 s: 9% more node CPU per put, 8 pairs; 1 s and 10 s alike, 6 pairs;
/// docs/BENCHMARKS.md). The backpressure test's stalled client grows RSS by 40-43 MiB at
/// 10 ms, 1 s and 10 s alike: what it holds is its own in-flight responses, not freed
/// pages.
///
/// Transparent huge pages are off for the process (`PR_SET_THP_DISABLE`; Redis, too,
/// warns at start when they are on): mimalloc asks for them on its arenas, and then a
/// fault on a fresh 2 MiB region zeroes all of it, most of which a purge gives back
/// before it is used. The page faults per pipelined put rise from 0.002 to 0.035 (4 KiB
/// each), the node's system time per put falls from 1.8-2.9 to 1.3-1.6 us and its RSS
/// from 82-88 to 62-67 MiB; in the benchmark script's sequence pipelined puts and gets
/// gained 10-70% and their p99 halved (alternating pairs, docs/BENCHMARKS.md).
/// `MIMALLOC_*` environment variables, when set, win.
fn tune_allocator() {
    use libmimalloc_sys as mi;
    // Option indices of `mi_option_e` in mimalloc.h: the same in v3 (what libmimalloc-sys
    // builds by default) and v2. The old names `MIMALLOC_RESET_DELAY` and
    // `MIMALLOC_EAGER_REGION_COMMIT` are not looked at here.
    const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;
    const PURGE_DELAY: mi::mi_option_t = 15;
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 1000),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: a setter of a process-wide integer option, read atomically by mimalloc.
            unsafe { mi::mi_option_set(option, value) };
        }
    }
    // `MIMALLOC_ALLOW_THP=0` makes mimalloc itself do this, but it reads its options during
    // its own initialisation, before `main`: setting the option here would come too late,
    // so the switch is thrown here. `MIMALLOC_ALLOW_THP=1` keeps huge pages.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        // SAFETY: sets a flag of this process's memory map (inherited by processes it
        // starts); no memory is touched. A kernel without the option refuses it (-1), which
        // leaves huge pages as they were: nothing to report before logging is set up.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
    }
}

mod admin_cli;
mod admin_render;
mod admin_repair;
mod bench;
mod check;
mod cli;
mod cli_keys;
mod cli_tls;
mod cli_types;
mod config;
mod config_cmd;
mod config_layers;
mod console;
mod engine_bench;
mod metrics;
mod node;
mod repair_wal;

use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "troupe",
    version,
    about = "A Dynamo-style, leaderless, replicated key-value database"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (with no flags: one node on 127.0.0.1, data in ./troupe-data).
    Node(NodeArgs),
    /// Store a value (read from stdin when VALUE is omitted).
    Put {
        key: String,
        value: Option<String>,
        /// The context (hex) of the get this write replaces; without it the value is
        /// added beside any it did not see (a sibling).
        #[arg(long)]
        context: Option<String>,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: cli::ConnArgs,
    },
    /// Print a key's value(s), one per line (several: concurrent siblings); exit 1 when
    /// the key is not found.
    Get {
        key: String,
        /// Only answer with a version that covers this context (hex; read your writes).
        #[arg(long)]
        after: Option<String>,
        /// Read quorum: one, quorum, all or a number (default: cluster.r).
        #[arg(long)]
        r: Option<String>,
        #[command(flatten)]
        conn: cli::ConnArgs,
    },
    /// Delete a key (what a get sees now, or what --context names).
    Del {
        key: String,
        /// The context (hex) of the versions to delete; default: read it first.
        #[arg(long)]
        context: Option<String>,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: cli::ConnArgs,
    },
    #[command(flatten)]
    Types(cli_types::TypeCmd),
    /// List live keys in byte order (all of them, or those starting with PREFIX).
    Keys(cli_keys::KeysArgs),
    /// Generate load over the client protocol and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Run a workload under injected faults, record the history and check it: lost writes,
    /// resurrections, counter bounds, session guarantees. Exit 4 on a violation.
    Check(check::CheckArgs),
    /// Run one admin command (status, members, stats, ...) and exit; `admin help` lists them.
    #[command(after_help = admin_cli::after_help())]
    Admin(admin_cli::AdminArgs),
    /// Benchmark the storage engine without the network (db_bench-style workloads).
    EngineBench(engine_bench::EngineBenchArgs),
    /// Cut a damaged WAL segment at an offset, keeping a copy (the node must be stopped).
    ///
    /// Run it when the node refuses to start with "WAL corruption": the error names the
    /// exact command. Exit 0 when done, 2 on error.
    RepairWal(repair_wal::RepairWalArgs),
    /// Check the configuration (`check`) or print it with where each value came from
    /// (`print`).
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Interactive admin console (type `help`); reconnects when the node restarts.
    Console(console::ConsoleArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    node_id: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Client address (default 127.0.0.1:7400).
    #[arg(long)]
    listen: Option<String>,
    /// Peer address (default 127.0.0.1:7401).
    #[arg(long)]
    peer_listen: Option<String>,
    /// Admin address (default 127.0.0.1:7402).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Prometheus metrics address (default 127.0.0.1:7403).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Comma-separated peer addresses of existing members.
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<String>>,
    /// `sync` (acknowledge after fdatasync) or `relaxed` (sync on an interval).
    #[arg(long)]
    durability: Option<String>,
    /// Serve `troupe admin fault` (drop peer traffic): for test clusters only.
    #[arg(long)]
    enable_fault_injection: bool,
}

/// `RUST_LOG` sets the initial level. `troupe admin log-level` changes it at run time
/// through `log::set_max_level`, which gates every record before the logger sees it, while
/// env_logger's own filter is fixed at init: so when `RUST_LOG` is one bare level (or unset:
/// `info`) the logger passes everything and that level becomes the gate. `RUST_LOG` with
/// per-module directives is kept as given; `log-level` can then only lower it.
fn init_logging() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let bare = match spec.trim() {
        "" => Some(log::LevelFilter::Info),
        s => s.parse::<log::LevelFilter>().ok(),
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if bare.is_some() {
        b.filter_level(log::LevelFilter::Trace);
    }
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        // journald stamps each line itself.
        b.format(|f, r| writeln!(f, "{} {}: {}", r.level(), r.target(), r.args()));
    }
    b.init();
    if let Some(level) = bare {
        log::set_max_level(level);
    }
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let durability = match args.durability.as_deref() {
        None => None,
        Some("sync") => Some(config::DurabilityMode::Sync),
        Some("relaxed") => Some(config::DurabilityMode::Relaxed),
        Some(other) => anyhow::bail!("--durability must be sync or relaxed, not {other:?}"),
    };
    let overrides = config::Overrides {
        node_id: args.node_id,
        data_dir: args.data_dir,
        listen: args.listen,
        peer_listen: args.peer_listen,
        admin_listen: args.admin_listen,
        metrics_listen: args.metrics_listen,
        seeds: args.seeds,
        durability,
        enable_fault_injection: args.enable_fault_injection,
    };
    let cfg = config::Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    node::run(cfg)
}

fn main() -> ExitCode {
    alloc_count::init();
    tune_allocator();
    let cli = Cli::parse();
    if let Cmd::Check(args) = cli.cmd {
        // Exit codes of its own: 4 when a violation was found.
        return match check::main(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.cmd {
        Cmd::Node(args) => {
            init_logging();
            run_node(args).map(|()| cli::Outcome::Ok)
        }
        Cmd::Put {
            key,
            value,
            context,
            w,
            conn,
        } => cli::put(&conn, &key, value, context.as_deref(), w.as_deref()),
        Cmd::Get {
            key,
            after,
            r,
            conn,
        } => cli::get(&conn, &key, after.as_deref(), r.as_deref()),
        Cmd::Del {
            key,
            context,
            w,
            conn,
        } => cli::del(&conn, &key, context.as_deref(), w.as_deref()),
        Cmd::Types(cmd) => cli_types::run(cmd),
        Cmd::Keys(args) => cli_keys::run(args),
        Cmd::Bench(args) => bench::run(args).map(|()| cli::Outcome::Ok),
        Cmd::Check(_) => unreachable!("handled above"),
        Cmd::EngineBench(args) => engine_bench::run(args).map(|()| cli::Outcome::Ok),
        Cmd::Admin(args) => admin_cli::run(args),
        Cmd::Config(cmd) => config_cmd::run(cmd).map(|()| cli::Outcome::Ok),
        Cmd::RepairWal(args) => repair_wal::run(args).map(|()| cli::Outcome::Ok),
        Cmd::Console(args) => console::run(args).map(|()| cli::Outcome::Ok),
    };
    match result {
        Ok(cli::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(cli::Outcome::NotFound) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, like anyhow's `{:#}`, but a cause whose text the
/// message before it already shows is left out: many errors print their source inside
/// their own message ("cannot open the tables: {0}"), and the chain would repeat it
/// ("... Permission denied (os error 13): Permission denied (os error 13)").
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if !last.is_empty() && last.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
        last = msg;
    }
    out
}

#[cfg(test)]
mod tests {
    /// Shows its source in its own message and also returns it as `source()`, as a
    /// thiserror `#[error("...: {0}")] X(#[from] io::Error)` does.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot open the tables: {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_shown_in_its_parent_message_is_not_repeated() {
        let os = std::io::Error::from_raw_os_error(13);
        let e = anyhow::Error::new(Wrapper(os)).context("starting the node");
        let text = super::error_text(&e);
        assert_eq!(text.matches("os error 13").count(), 1, "{text}");
        assert!(
            text.starts_with("starting the node: cannot open the tables: "),
            "{text}"
        );
        // Causes that add something are all kept.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(super::error_text(&e), "outer: middle: inner");
    }
}
