#!/usr/bin/env bash
# troupe vs Redis on this machine, same shape: 50 connections, 100-byte values, 100k keys.
# troupe: `troupe bench` (single-threaded client, like redis-benchmark) against one release
# node, durability sync and relaxed, each with one request in flight per connection and with
# --pipeline 16. Redis: redis-benchmark against redis-server with appendfsync always and
# everysec, -P 1 and -P 16. Each row is measured ROUNDS times (default 3), troupe and Redis
# back to back in each round, because this machine's speed moves by up to 1.5x within
# minutes: a ratio of two figures taken far apart measures the machine. Prints the machine,
# the load average before and after, the commands, and a markdown table (scripts/lib/
# paired.py) with, per row, the medians over the rounds of ops/s, p50/p99 (us), troupe's
# node CPU per op (us, user + system of the node process from /proc) and heap allocations
# per op (the node runs with TROUPE_COUNT_ALLOCS=1 and reports troupe_allocations_total),
# and the median and range of the per-round ratio to Redis. Needs redis-server and
# redis-benchmark (Debian: redis-server redis-tools); installs them if apt is available.
# Both keep their data (WAL, AOF) under BENCH_DIR (default: $TMPDIR or /tmp); the header names
# its file system, which decides whether troupe's relaxed mode can write its WAL from the event
# loop (XFS takes non-blocking buffered writes, ext4 does not: docs/BENCHMARKS.md).
# Usage: [ROUNDS=3] [BENCH_DIR=DIR] bash scripts/bench-vs-redis.sh [OPS]   (default 300000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-300000}
ROUNDS=${ROUNDS:-3}
PORT=${TROUPE_BENCH_PORT:-17400}
RPORT=${REDIS_BENCH_PORT:-16390}
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release --quiet
T=target/release/troupe
hz=$(getconf CLK_TCK)
source scripts/lib/paired.sh

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ {print $2}') RAM; $(redis-server --version | cut -d' ' -f1-3); troupe $(git rev-parse --short HEAD) release"
echo "data: $work on $(df -T "$work" | awk 'NR==2 {print $2}')"
echo "start: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds: $ROUNDS per row, troupe and Redis back to back in each"
echo "troupe: TROUPE_COUNT_ALLOCS=1 $T node --durability D ...; $T bench --addr ... --workload put|get --concurrency 50 --pipeline 1|16 --value-size 100 --keys 100000 --ops $OPS [--no-prefill]"
echo "redis:  redis-server --appendonly yes --appendfsync always|everysec; redis-benchmark -c 50 -d 100 -r 100000 -n $OPS -P 1|16 -t set|get --csv"

# One troupe measurement -> "ops/s p50 p99 cpu_us_per_op allocs_per_op errors"
measure() { # pid metrics_port workload pipeline extra...
  local pid=$1 mport=$2 w=$3 pl=$4; shift 4
  local b a ab aa out
  b=$(awk '{print $14+$15}' "/proc/$pid/stat")
  ab=$(curl -s "127.0.0.1:$mport/metrics" | awk '/^troupe_allocations_total/ {print $2}')
  out=$("$T" bench --addr 127.0.0.1:$PORT --workload "$w" --concurrency 50 --pipeline "$pl" --value-size 100 \
    --keys 100000 --ops "$OPS" --json "$@")
  a=$(awk '{print $14+$15}' "/proc/$pid/stat")
  aa=$(curl -s "127.0.0.1:$mport/metrics" | awk '/^troupe_allocations_total/ {print $2}')
  python3 - "$out" "$b" "$a" "$hz" "${ab:-0}" "${aa:-0}" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ab, aa = float(sys.argv[5]), float(sys.argv[6])
ops = r["ops"]; l = r["latency_us"]
print(f'{r["ops_per_sec"]:.0f} {l["p50"]} {l["p99"]} {(a - b) / hz / ops * 1e6:.2f} {(aa - ab) / ops:.1f} {r["errors"]}')
PY
}

# One durability setting: a troupe node and a Redis server, both up; each row measured
# $ROUNDS times, troupe and Redis back to back (troupe first in odd rounds, Redis first in
# even ones). Prints "order|label|troupe fields|Redis fields" per round for paired.py.
paired_run() { # durability appendfsync order_base put_label get_label
  local dur=$1 fsync=$2 base=$3 dir="$work/troupe-$1"
  TROUPE_COUNT_ALLOCS=1 "$T" node --data-dir "$dir" --durability "$dur" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$((PORT+2)) \
    --metrics-listen 127.0.0.1:$((PORT+3)) --peer-listen 127.0.0.1:$((PORT+1)) >"$work/node-$dur.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  mkdir -p "$work/redis-$fsync"
  redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis-$fsync" --appendonly yes --appendfsync "$fsync" \
    --save '' --daemonize no >"$work/redis-$fsync.log" 2>&1 &
  local rpid=$!; pids+=("$rpid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  local row order w pl rt label r extra
  for row in "0 put 1 SET $4" "2 get 1 GET $5" "4 put 16 SET ${4/put/put x16}" "6 get 16 GET ${5/get/get x16}"; do
    read -r order w pl rt label <<<"$row"
    for r in $(seq "$ROUNDS"); do
      extra=(--no-prefill); [ "$order$r" = 01 ] && extra=()
      paired_round "$r" "$((order + base))|$label" "$rt" "$pl" measure "$pid" $((PORT+3)) "$w" "$pl" "${extra[@]}"
    done
  done
  curl -s "127.0.0.1:$((PORT+3))/metrics" | awk -v d="$dur" '/^troupe_wal_batches_total/ {t=$2}
    /^troupe_wal_batches_now_total/ {n=$2} END {printf "%s node: %d WAL group commits, %d of them written from the event loop\n", d, t, n}' >>"$work/wal"
  kill -TERM "$pid" "$rpid"; wait "$pid" "$rpid" 2>/dev/null || true
}

{
  paired_run sync always 0 "put, durable (sync / always)" "get (sync node / always)"
  paired_run relaxed everysec 1 "put, relaxed (100 ms sync / everysec)" "get (relaxed node / everysec)"
} >"$work/rounds"
echo "end: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$work/wal"
echo
sort -s -t'|' -k1,1n "$work/rounds" | cut -d'|' -f2- | python3 scripts/lib/paired.py "node CPU us per op"
