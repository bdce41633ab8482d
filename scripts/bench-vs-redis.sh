#!/usr/bin/env bash
# troupe vs Redis on this machine, same shape: 50 connections, 100-byte values, 100k keys.
# troupe: `troupe bench` (single-threaded client, like redis-benchmark) against one release
# node, durability sync and relaxed. Redis: redis-benchmark against redis-server with
# appendfsync always and everysec. Prints a markdown table. Needs redis-server and
# redis-benchmark (Debian: redis-server redis-tools); installs them if apt is available.
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

ops_per_sec() { grep -o '"ops_per_sec":[0-9.]*' | cut -d: -f2 | cut -d. -f1; }

troupe_run() { # durability -> "put get"
  local dir="$work/troupe-$1"
  "$T" node --data-dir "$dir" --durability "$1" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$((PORT+2)) \
    --metrics-listen 127.0.0.1:$((PORT+3)) --peer-listen 127.0.0.1:$((PORT+1)) >"$work/node-$1.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  local put get
  put=$("$T" bench --addr 127.0.0.1:$PORT --workload put --concurrency 50 --value-size 100 --keys 100000 --ops "$OPS" --json | ops_per_sec)
  get=$("$T" bench --addr 127.0.0.1:$PORT --workload get --concurrency 50 --value-size 100 --keys 100000 --ops "$OPS" --no-prefill --json | ops_per_sec)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$put $get"
}

redis_run() { # appendfsync -> "set get"
  mkdir -p "$work/redis-$1"
  redis-server --port $RPORT --bind 127.0.0.1 --dir "$work/redis-$1" --appendonly yes --appendfsync "$1" \
    --save '' --daemonize no >"$work/redis-$1.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  local out
  out=$(redis-benchmark -p $RPORT -c 50 -d 100 -r 100000 -n "$OPS" -t set,get --csv 2>/dev/null)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local set get
  set=$(echo "$out" | grep '^"SET"' | cut -d, -f2 | tr -d '"' | cut -d. -f1)
  get=$(echo "$out" | grep '^"GET"' | cut -d, -f2 | tr -d '"' | cut -d. -f1)
  echo "$set $get"
}

read -r t_sync_put t_sync_get <<<"$(troupe_run sync)"
read -r r_always_set r_always_get <<<"$(redis_run always)"
read -r t_rel_put t_rel_get <<<"$(troupe_run relaxed)"
read -r r_every_set r_every_get <<<"$(redis_run everysec)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| measurement | troupe ops/s | Redis ops/s | troupe / Redis |"
echo "|---|---|---|---|"
echo "| put, durable (sync / appendfsync always) | $t_sync_put | $r_always_set | $(ratio "$t_sync_put" "$r_always_set") |"
echo "| put, relaxed (100 ms sync / everysec) | $t_rel_put | $r_every_set | $(ratio "$t_rel_put" "$r_every_set") |"
echo "| get (sync node / always) | $t_sync_get | $r_always_get | $(ratio "$t_sync_get" "$r_always_get") |"
echo "| get (relaxed node / everysec) | $t_rel_get | $r_every_get | $(ratio "$t_rel_get" "$r_every_get") |"
