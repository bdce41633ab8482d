#!/usr/bin/env bash
# Three replicated troupe nodes on this machine (N=3, R=W=2, durability sync) against one
# Redis with appendfsync always, in the same run. 50 connections spread over the three nodes
# (`troupe bench --addr a,b,c`), 100-byte values, 100,000 keys; put, then get, each with one
# request in flight per connection and then with --pipeline 16. Each row is measured ROUNDS
# times (default 3), troupe and Redis back to back in each round, because this machine's
# speed moves by up to 1.5x within minutes. Both stay up all along: the three nodes keep
# their SWIM probes (one per second each) and anti-entropy rounds going while Redis is
# measured, and each measurement starts once the machine has settled. For troupe
# it also reports node CPU seconds (user + system, all three nodes, from /proc) per thousand
# operations and heap allocations per operation (all three nodes, TROUPE_COUNT_ALLOCS=1), and
# prints the machine, the load average before and after, the commands, and a markdown table
# of medians and ranges over the rounds (scripts/lib/paired.py).
# Needs redis-server / redis-benchmark (installed from Debian when apt is available).
# Usage: [ROUNDS=3] bash scripts/bench-cluster.sh [OPS]      (default 200000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-200000}
ROUNDS=${ROUNDS:-3}
BASE=${TROUPE_BENCH_PORT:-17500}
RPORT=${REDIS_BENCH_PORT:-16391}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release --quiet
T=target/release/troupe

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ {print $2}') RAM; $(redis-server --version | cut -d' ' -f1-3); troupe $(git rev-parse --short HEAD) release"
echo "start: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds: $ROUNDS per row, troupe and Redis back to back in each"
echo "troupe: 3 nodes (scripts/lib/three-nodes.sh, N=3 R=W=2 sync, TROUPE_COUNT_ALLOCS=1); $T bench --addr a,b,c --workload put|get --concurrency 50 --pipeline 1|16 --value-size 100 --keys 100000 --ops $OPS [--no-prefill]"
echo "redis:  redis-server --appendonly yes --appendfsync always; redis-benchmark -c 50 -d 100 -r 100000 -n $OPS -P 1|16 -t set|get --csv"
export TROUPE_COUNT_ALLOCS=1
source scripts/lib/three-nodes.sh
source scripts/lib/paired.sh
start_three_nodes "$BASE"
allocs() { local t=0 i v; for i in 0 1 2; do v=$(curl -s "127.0.0.1:$((BASE + 10 * i + 3))/metrics" | awk '/^troupe_allocations_total/ {print $2}'); t=$(awk -v a="$t" -v b="${v:-0}" 'BEGIN {printf "%.0f", a + b}'); done; echo "$t"; }

troupe_run() { # workload pipeline extra... -> "ops/s p50_us p99_us cpu_s_per_kop allocs_per_op errors"
  local w=$1 pl=$2; shift 2
  local before after out ab aa
  ab=$(allocs)
  before=$(cpu_ticks)
  out=$("$T" bench --addr "$ADDRS" --workload "$w" --concurrency 50 --pipeline "$pl" --value-size 100 \
    --keys 100000 --ops "$OPS" --json "$@")
  after=$(cpu_ticks)
  aa=$(allocs)
  python3 - "$out" "$before" "$after" "$hz" "$ab" "$aa" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ops = r["ops"]; cpu = (a - b) / hz; al = (float(sys.argv[6]) - float(sys.argv[5])) / ops
print(f'{r["ops_per_sec"]:.0f} {r["latency_us"]["p50"]} {r["latency_us"]["p99"]} {cpu / (ops / 1000):.3f} {al:.0f} {r["errors"]}')
PY
}

mkdir -p "$work/redis"
redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --appendfsync always \
  --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
for row in "put 1 SET put, 1 in flight per connection" "get 1 GET get, 1 in flight per connection" \
  "put 16 SET put, pipeline 16" "get 16 GET get, pipeline 16"; do
  read -r w pl rt label <<<"$row"
  for r in $(seq "$ROUNDS"); do
    extra=(--no-prefill); [ "$w$pl$r" = put11 ] && extra=()
    paired_round "$r" "$label" "$rt" "$pl" troupe_run "$w" "$pl" "${extra[@]}"
  done
done >"$work/rounds"
echo "end: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 scripts/lib/paired.py "node CPU s per 1k ops (3 nodes)" <"$work/rounds"
