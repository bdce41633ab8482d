#!/usr/bin/env bash
# Three replicated troupe nodes on this machine (N=3, R=W=2, durability sync) against one
# Redis with appendfsync always, in the same run. 50 connections spread over the three nodes
# (`troupe bench --addr a,b,c`), 100-byte values, 100,000 keys; put, then get, each with one
# request in flight per connection and then with --pipeline 16. For troupe it also reports
# node CPU seconds (user + system, all three nodes, from /proc) per thousand operations and
# heap allocations per operation (all three nodes, TROUPE_COUNT_ALLOCS=1), and prints the
# machine, the load average before and after, and the commands.
# Needs redis-server / redis-benchmark (installed from Debian when apt is available).
# Usage: bash scripts/bench-cluster.sh [OPS]      (default 200000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-200000}
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
echo "troupe: 3 nodes (scripts/lib/three-nodes.sh, N=3 R=W=2 sync, TROUPE_COUNT_ALLOCS=1); $T bench --addr a,b,c --workload put|get --concurrency 50 --pipeline 1|16 --value-size 100 --keys 100000 --ops $OPS [--no-prefill]"
echo "redis:  redis-server --appendonly yes --appendfsync always; redis-benchmark -c 50 -d 100 -r 100000 -n $OPS -P 1|16 -t set,get --csv"
export TROUPE_COUNT_ALLOCS=1
source scripts/lib/three-nodes.sh
start_three_nodes "$BASE"
allocs() { local t=0 i v; for i in 0 1 2; do v=$(curl -s "127.0.0.1:$((BASE + 10 * i + 3))/metrics" | awk '/^troupe_allocations_total/ {print $2}'); t=$(awk -v a="$t" -v b="${v:-0}" 'BEGIN {printf "%.0f", a + b}'); done; echo "$t"; }

troupe_run() { # workload pipeline extra... -> "ops/s p50_us p99_us cpu_s_per_kop"
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
print(f'{r["ops_per_sec"]:.0f} {r["latency_us"]["p50"]} {r["latency_us"]["p99"]} {cpu / (ops / 1000):.3f} {r["errors"]} {al:.0f}')
PY
}

read -r put1 put1_p50 put1_p99 put1_cpu put1_err put1_al <<<"$(troupe_run put 1)"
read -r get1 get1_p50 get1_p99 get1_cpu get1_err get1_al <<<"$(troupe_run get 1 --no-prefill)"
read -r put16 put16_p50 put16_p99 put16_cpu put16_err put16_al <<<"$(troupe_run put 16)"
read -r get16 get16_p50 get16_p99 get16_cpu get16_err get16_al <<<"$(troupe_run get 16 --no-prefill)"
for p in "${node_pids[@]}"; do kill -TERM "$p"; done

mkdir -p "$work/redis"
redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --appendfsync always \
  --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_run() { # pipeline -> "set set_p50/p99 get get_p50/p99" (us)
  local out
  out=$(redis-benchmark -p $RPORT -c 50 -d 100 -r 100000 -n "$OPS" -P "$1" -t set,get --csv 2>/dev/null)
  # "test","rps","avg","min","p50","p95","p99","max" (ms)
  for t in SET GET; do echo "$out" | grep "^\"$t\"" | tr -d '"' | awk -F, '{ printf "%d %d/%d ", $2, $5 * 1000, $7 * 1000 }'; done
}
read -r rset1 rset1_l rget1 rget1_l <<<"$(redis_run 1)"
read -r rset16 rset16_l rget16 rget16_l <<<"$(redis_run 16)"
echo "end: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "| measurement | troupe 3 nodes ops/s | p50 / p99 us | node CPU s per 1k ops | allocs per op (3 nodes) | errors | Redis (always) ops/s | Redis p50/p99 us | troupe / Redis |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| put, 1 in flight per connection | $put1 | $put1_p50 / $put1_p99 | $put1_cpu | $put1_al | $put1_err | $rset1 | $rset1_l | $(ratio "$put1" "$rset1") |"
echo "| get, 1 in flight per connection | $get1 | $get1_p50 / $get1_p99 | $get1_cpu | $get1_al | $get1_err | $rget1 | $rget1_l | $(ratio "$get1" "$rget1") |"
echo "| put, pipeline 16 | $put16 | $put16_p50 / $put16_p99 | $put16_cpu | $put16_al | $put16_err | $rset16 | $rset16_l | $(ratio "$put16" "$rset16") |"
echo "| get, pipeline 16 | $get16 | $get16_p50 / $get16_p99 | $get16_cpu | $get16_al | $get16_err | $rget16 | $rget16_l | $(ratio "$get16" "$rget16") |"
