//! What `troupe bench` measures per op and how it reports it: per-op histograms, hits and
//! misses and frame bytes ([`OpStats`]), the progress line, and the memtier-style table or
//! the `--json` object (whose top-level `ops`, `errors`, `ops_per_sec` and `latency_us` the
//! scripts in `scripts/` read).

use super::{cli_name, BenchArgs, RunResult};
use hdrhistogram::Histogram;
use serde_json::json;
use std::time::Duration;

/// One op's figures from one connection (merged over connections for the report).
pub(super) struct OpStats {
    pub(super) hist: Histogram<u64>,
    pub(super) errors: u64,
    /// Gets that found a value, and gets that found none.
    pub(super) hits: u64,
    pub(super) misses: u64,
    /// Frame bytes sent and received for this op.
    pub(super) bytes: u64,
}

impl OpStats {
    pub(super) fn new() -> OpStats {
        OpStats {
            hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            hits: 0,
            misses: 0,
            bytes: 0,
        }
    }

    pub(super) fn add(&mut self, o: &OpStats) -> anyhow::Result<()> {
        self.hist.add(&o.hist)?;
        self.errors += o.errors;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes += o.bytes;
        Ok(())
    }
}

/// A connection's (or a run's) figures per op.
pub(super) struct Stats {
    pub(super) get: OpStats,
    /// The workload's writes: puts, or `incr`s or `sadd`s.
    pub(super) put: OpStats,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            get: OpStats::new(),
            put: OpStats::new(),
        }
    }
}

/// The progress line: done/total, rate, and the time left by whichever of --ops and
/// --duration ends the run first.
pub(super) fn progress(done: u64, ops: u64, elapsed: Duration, limit: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let by_time = limit.saturating_sub(elapsed).as_secs_f64();
    let left = if rate > 0.0 {
        (ops.saturating_sub(done) as f64 / rate).min(by_time)
    } else {
        by_time
    };
    format!("{done}/{ops} ops, {rate:.0} ops/s, {left:.0}s left")
}

/// One op's figures for the report: rate, hits and misses, KB/s, latency.
fn op_json(o: &OpStats, secs: f64, read: bool) -> serde_json::Value {
    let ops = o.hist.len();
    let mut v = json!({
        "ops": ops,
        "errors": o.errors,
        "per_sec": ops as f64 / secs,
        "kb_per_sec": o.bytes as f64 / 1024.0 / secs,
        "latency_us": latency_json(&o.hist),
    });
    if read {
        v["hits"] = json!(o.hits);
        v["misses"] = json!(o.misses);
    }
    v
}

fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let q = |p: f64| h.value_at_quantile(p);
    json!({
        "avg": (h.mean() * 10.0).round() / 10.0, "min": h.min(), "p50": q(0.5), "p90": q(0.9),
        "p99": q(0.99), "p999": q(0.999), "max": h.max(),
    })
}

/// The ops a workload issues: (name, figures, is a read).
fn ops_of<'a>(args: &BenchArgs, s: &'a Stats) -> Vec<(&'static str, &'a OpStats, bool)> {
    let f = args.workload.read_fraction();
    let mut out = Vec::new();
    if f > 0.0 {
        out.push(("get", &s.get, true));
    }
    if f < 1.0 {
        out.push((args.workload.write_op().name(), &s.put, false));
    }
    out
}

pub(super) fn report(args: &BenchArgs, r: &RunResult) -> anyhow::Result<()> {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let ops_per_sec = r.ops as f64 / secs;
    let mut all = OpStats::new();
    all.add(&r.stats.get)?;
    all.add(&r.stats.put)?;
    let ops = ops_of(args, &r.stats);
    if args.json {
        // `ops`, `errors`, `ops_per_sec` and `latency_us` stay top-level: scripts/bench-*.sh
        // read them. Per-op figures say `per_sec`, so a grep for "ops_per_sec" finds one.
        let per_op: serde_json::Map<String, serde_json::Value> = ops
            .iter()
            .map(|(name, o, read)| (name.to_string(), op_json(o, secs, *read)))
            .collect();
        let v = json!({
            "workload": cli_name(&args.workload),
            "distribution": cli_name(&args.distribution),
            "fill": cli_name(&args.fill),
            "addr": args.addr,
            "connections": args.concurrency,
            "pipeline": args.pipeline,
            "pipelining": if args.window { "window" } else { "batch" },
            "value_size": args.value_size,
            "keys": args.keys,
            "ops": r.ops,
            "errors": r.errors,
            "elapsed_secs": secs,
            "ops_per_sec": ops_per_sec,
            "kb_per_sec": all.bytes as f64 / 1024.0 / secs,
            "latency_us": latency_json(&all.hist),
            "per_op": per_op,
        });
        println!("{v}");
    } else {
        print!("{}", table(args, r, secs, &ops, &all));
    }
    if r.errors > 0 && r.errors == r.ops {
        anyhow::bail!("every operation failed; is the node healthy?");
    }
    Ok(())
}

/// memtier_benchmark-style summary: one line per op and a total, latency in microseconds.
fn table(
    args: &BenchArgs,
    r: &RunResult,
    secs: f64,
    ops: &[(&str, &OpStats, bool)],
    all: &OpStats,
) -> String {
    let mut out = format!(
        "{} ({} keys, {}, {}), {} conns x {} pipeline{}, {} B values: {} ops in {:.2}s, {} errors\n",
        cli_name(&args.workload),
        args.keys,
        cli_name(&args.distribution),
        cli_name(&args.fill),
        args.concurrency,
        args.pipeline,
        if args.window { " (window)" } else { "" },
        args.value_size,
        r.ops,
        secs,
        r.errors
    );
    out.push_str(&format!(
        "{:<6} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
        "OP",
        "OPS/S",
        "HITS",
        "MISSES",
        "AVG",
        "MIN",
        "P50",
        "P99",
        "P99.9",
        "MAX",
        "ERRORS",
        "KB/S"
    ));
    let line = |name: &str, o: &OpStats, read: bool| {
        let h = &o.hist;
        let (hits, misses) = if read {
            (o.hits.to_string(), o.misses.to_string())
        } else {
            ("-".to_string(), "-".to_string())
        };
        format!(
            "{:<6} {:>10.0} {:>9} {:>9} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.1}\n",
            name,
            h.len() as f64 / secs,
            hits,
            misses,
            h.mean(),
            h.min(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            o.errors,
            o.bytes as f64 / 1024.0 / secs
        )
    };
    for (name, o, read) in ops {
        out.push_str(&line(&name.to_uppercase(), o, *read));
    }
    let any_read = ops.iter().any(|(_, _, read)| *read);
    out.push_str(&line("TOTAL", all, any_read));
    out.push_str("latency in microseconds; KB/S counts request and response frames\n");
    out
}
