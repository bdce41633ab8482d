#!/usr/bin/env bash
# troupe vs Redis on this machine, same shape: 50 connections, 100-byte values, 100k keys.
# troupe: `troupe bench` (single-threaded client, like redis-benchmark) against one release
# node, durability sync and relaxed, each with one request in flight per connection and with
# --pipeline 16. Redis: redis-benchmark against redis-server with appendfsync always and
# everysec, -P 1 and -P 16. Prints the machine, the load average before and after, the
# commands, and a markdown table with ops/s, p50/p99 (us), troupe's node CPU per op (us,
# user + system of the node process from /proc) and heap allocations per op (the node runs
# with TROUPE_COUNT_ALLOCS=1 and reports troupe_allocations_total), and the ratio to Redis
# in the same run. Needs redis-server and redis-benchmark (Debian: redis-server
# redis-tools); installs them if apt is available.
# Usage: bash scripts/bench-vs-redis.sh [OPS]      (default 300000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-300000}
PORT=${TROUPE_BENCH_PORT:-17400}
RPORT=${REDIS_BENCH_PORT:-16390}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release --quiet
T=target/release/troupe
hz=$(getconf CLK_TCK)

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ {print $2}') RAM; $(redis-server --version | cut -d' ' -f1-3); troupe $(git rev-parse --short HEAD) release"
echo "start: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "troupe: TROUPE_COUNT_ALLOCS=1 $T node --durability D ...; $T bench --addr ... --workload put|get --concurrency 50 --pipeline 1|16 --value-size 100 --keys 100000 --ops $OPS [--no-prefill]"
echo "redis:  redis-server --appendonly yes --appendfsync always|everysec; redis-benchmark -c 50 -d 100 -r 100000 -n $OPS -P 1|16 -t set,get --csv"

# One troupe measurement -> "ops/s p50 p99 cpu_us_per_op allocs_per_op"
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
err = "" if r["errors"] == 0 else f'(errors:{r["errors"]})'
print(f'{r["ops_per_sec"]:.0f}{err} {l["p50"]} {l["p99"]} {(a - b) / hz / ops * 1e6:.1f} {(aa - ab) / ops:.1f}')
PY
}

troupe_run() { # durability -> 4 lines: put1 get1 put16 get16
  local dir="$work/troupe-$1"
  TROUPE_COUNT_ALLOCS=1 "$T" node --data-dir "$dir" --durability "$1" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$((PORT+2)) \
    --metrics-listen 127.0.0.1:$((PORT+3)) --peer-listen 127.0.0.1:$((PORT+1)) >"$work/node-$1.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  measure "$pid" $((PORT+3)) put 1
  measure "$pid" $((PORT+3)) get 1 --no-prefill
  measure "$pid" $((PORT+3)) put 16 --no-prefill
  measure "$pid" $((PORT+3)) get 16 --no-prefill
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

redis_run() { # appendfsync -> 4 lines: "ops p50 p99" for set1 get1 set16 get16
  mkdir -p "$work/redis-$1"
  redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis-$1" --appendonly yes --appendfsync "$1" \
    --save '' --daemonize no >"$work/redis-$1.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  local out1 out16
  out1=$(redis-benchmark -p $RPORT -c 50 -d 100 -r 100000 -n "$OPS" -P 1 -t set,get --csv 2>/dev/null)
  out16=$(redis-benchmark -p $RPORT -c 50 -d 100 -r 100000 -n "$OPS" -P 16 -t set,get --csv 2>/dev/null)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  # "test","rps","avg","min","p50","p95","p99","max" (ms)
  local row
  for out in "$out1" "$out16"; do
    for t in SET GET; do
      row=$(echo "$out" | grep "^\"$t\"" | tr -d '"')
      echo "$row" | awk -F, '{ printf "%d %d %d\n", $2, $5 * 1000, $7 * 1000 }'
    done
  done | awk 'NR==1{s1=$0} NR==2{g1=$0} NR==3{s16=$0} NR==4{g16=$0} END{print s1; print g1; print s16; print g16}'
}

mapfile -t t_sync < <(troupe_run sync)
mapfile -t r_always < <(redis_run always)
mapfile -t t_rel < <(troupe_run relaxed)
mapfile -t r_every < <(redis_run everysec)
echo "end: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"

row() { # label troupe-line redis-line
  read -r tops tp50 tp99 tcpu tall <<<"$2"
  read -r rops rp50 rp99 <<<"$3"
  local ratio
  ratio=$(awk -v a="${tops%%(*}" -v b="$rops" 'BEGIN { printf "%.2f", a / b }')
  echo "| $1 | $tops | $tp50 / $tp99 | $tcpu | $tall | $rops | $rp50 / $rp99 | $ratio |"
}
echo
echo "| measurement | troupe ops/s | p50 / p99 us | node CPU us per op | allocs per op | Redis ops/s | Redis p50 / p99 us | troupe / Redis |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
row "put, durable (sync / always)" "${t_sync[0]}" "${r_always[0]}"
row "put, relaxed (100 ms sync / everysec)" "${t_rel[0]}" "${r_every[0]}"
row "get (sync node / always)" "${t_sync[1]}" "${r_always[1]}"
row "get (relaxed node / everysec)" "${t_rel[1]}" "${r_every[1]}"
row "put x16, durable (sync / always)" "${t_sync[2]}" "${r_always[2]}"
row "put x16, relaxed (100 ms sync / everysec)" "${t_rel[2]}" "${r_every[2]}"
row "get x16 (sync node / always)" "${t_sync[3]}" "${r_always[3]}"
row "get x16 (relaxed node / everysec)" "${t_rel[3]}" "${r_every[3]}"
