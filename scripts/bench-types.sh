#!/usr/bin/env bash
# The data types' cost beside a plain put (issue 10): three replicated troupe nodes on this
# machine (N=3, R=W=2, durability sync, as in bench-cluster.sh), 50 connections spread over
# them, one request in flight per connection, 100-byte values and set members, 1,000,000
# keys (so nearly every op is the first write of its key, alike for all three, and a later
# round's puts do not pile siblings on an earlier round's). `put`, `incr` and `sadd` run in
# turn, ROUNDS times over (alternating, so a machine whose load changes during the run
# shifts every workload alike), each run OPS operations. Prints each run, then per workload
# the median ops/s, p50, p99 and node CPU seconds (user + system, all three nodes, from
# /proc) per thousand operations, and each typed op's ratio to put.
# Usage: bash scripts/bench-types.sh [OPS] [ROUNDS]      (defaults 30000, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-30000}
ROUNDS=${2:-3}
BASE=${TROUPE_BENCH_PORT:-17600}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet
T=target/release/troupe

source scripts/lib/three-nodes.sh
start_three_nodes "$BASE"

: >"$work/runs"
for round in $(seq "$ROUNDS"); do
  for w in put incr sadd; do
    before=$(cpu_ticks)
    out=$("$T" bench --addr "$ADDRS" --workload "$w" --concurrency 50 --pipeline 1 --value-size 100 \
      --keys 1000000 --ops "$OPS" --seed "$round" --json)
    after=$(cpu_ticks)
    python3 - "$out" "$before" "$after" "$hz" "$round" >>"$work/runs" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu = (a - b) / hz
print(json.dumps({"round": int(sys.argv[5]), "workload": r["workload"], "ops": r["ops"],
                  "errors": r["errors"], "ops_per_sec": r["ops_per_sec"],
                  "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
                  "cpu_per_kop": cpu / (r["ops"] / 1000)}))
PY
    tail -1 "$work/runs" >&2
  done
done

python3 - "$work/runs" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["workload"], []).append(r)
med = {w: {k: statistics.median(r[k] for r in rs) for k in ("ops_per_sec", "p50", "p99", "cpu_per_kop")}
       for w, rs in by.items()}
errors = {w: sum(r["errors"] for r in rs) for w, rs in by.items()}
put = med["put"]
print("| workload | ops/s (median) | p50 / p99 us | node CPU s per 1k ops | errors | cost vs put (ops/s) | CPU vs put | p99 vs put |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for w in ("put", "incr", "sadd"):
    m = med[w]
    print(f'| {w} | {m["ops_per_sec"]:.0f} | {m["p50"]:.0f} / {m["p99"]:.0f} | {m["cpu_per_kop"]:.3f} | {errors[w]} '
          f'| {put["ops_per_sec"] / m["ops_per_sec"]:.2f}x | {m["cpu_per_kop"] / put["cpu_per_kop"]:.2f}x '
          f'| {m["p99"] / put["p99"]:.2f}x |')
# Per round, each typed op against the put run just before it (the alternating pairs).
print()
print("per round, ops/s ratio put/op: " + "; ".join(
    f'round {r}: incr {p["ops_per_sec"] / i["ops_per_sec"]:.2f}x, sadd {p["ops_per_sec"] / s["ops_per_sec"]:.2f}x'
    for r, p, i, s in zip(range(1, 99), by["put"], by["incr"], by["sadd"])))
PY
