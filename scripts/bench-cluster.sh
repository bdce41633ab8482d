#!/usr/bin/env bash
# Three replicated troupe nodes on this machine (N=3, R=W=2, durability sync) against one
# Redis with appendfsync always, in the same run. 50 connections spread over the three nodes
# (`troupe bench --addr a,b,c`), 100-byte values, 100,000 keys; put, then get, each with one
# request in flight per connection and then with --pipeline 16. For troupe it also reports
# node CPU seconds (user + system, all three nodes, from /proc) per thousand operations.
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

source scripts/lib/three-nodes.sh
start_three_nodes "$BASE"

troupe_run() { # workload pipeline extra... -> "ops/s p50_us p99_us cpu_s_per_kop"
  local w=$1 pl=$2; shift 2
  local before after out
  before=$(cpu_ticks)
  out=$("$T" bench --addr "$ADDRS" --workload "$w" --concurrency 50 --pipeline "$pl" --value-size 100 \
    --keys 100000 --ops "$OPS" --json "$@")
  after=$(cpu_ticks)
  python3 - "$out" "$before" "$after" "$hz" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ops = r["ops"]; cpu = (a - b) / hz
print(f'{r["ops_per_sec"]:.0f} {r["latency_us"]["p50"]} {r["latency_us"]["p99"]} {cpu / (ops / 1000):.3f} {r["errors"]}')
PY
}

read -r put1 put1_p50 put1_p99 put1_cpu put1_err <<<"$(troupe_run put 1)"
read -r get1 get1_p50 get1_p99 get1_cpu get1_err <<<"$(troupe_run get 1 --no-prefill)"
read -r put16 put16_p50 put16_p99 put16_cpu put16_err <<<"$(troupe_run put 16)"
read -r get16 get16_p50 get16_p99 get16_cpu get16_err <<<"$(troupe_run get 16 --no-prefill)"
for p in "${node_pids[@]}"; do kill -TERM "$p"; done

mkdir -p "$work/redis"
redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --appendfsync always \
  --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_run() { # pipeline -> "set get"
  local out
  out=$(redis-benchmark -p $RPORT -c 50 -d 100 -r 100000 -n "$OPS" -P "$1" -t set,get --csv 2>/dev/null)
  echo "$(echo "$out" | grep '^"SET"' | cut -d, -f2 | tr -d '"' | cut -d. -f1) $(echo "$out" | grep '^"GET"' | cut -d, -f2 | tr -d '"' | cut -d. -f1)"
}
read -r rset1 rget1 <<<"$(redis_run 1)"
read -r rset16 rget16 <<<"$(redis_run 16)"

echo "| measurement | troupe 3 nodes ops/s | p50 / p99 us | node CPU s per 1k ops | errors | Redis (always) ops/s |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| put, 1 in flight per connection | $put1 | $put1_p50 / $put1_p99 | $put1_cpu | $put1_err | $rset1 |"
echo "| get, 1 in flight per connection | $get1 | $get1_p50 / $get1_p99 | $get1_cpu | $get1_err | $rget1 |"
echo "| put, pipeline 16 | $put16 | $put16_p50 / $put16_p99 | $put16_cpu | $put16_err | $rset16 |"
echo "| get, pipeline 16 | $get16 | $get16_p50 / $get16_p99 | $get16_cpu | $get16_err | $rget16 |"
