#!/usr/bin/env bash
# Where one node's CPU goes, thread by thread, during one `troupe bench` run, beside the
# load generator's own CPU: says whether a row is bound by the node's event loop (main
# thread near a whole core) or by the machine (the threads together near its cores).
#
# Shape: one fresh node (relaxed unless DURABILITY is given) on 127.0.0.1:18100-18103; for
# `get`, first 100,000 keys written (not counted); then 50 connections, --pipeline
# PIPELINE, 100-byte values, 100,000 keys, OPS operations. Prints each node thread that
# used at least 5% of a core (user and system time as a share of one core, and CPU
# microseconds per operation), the load generator's user and system seconds, and the
# bench's own summary line.
# Usage: bash scripts/thread-cpu.sh [BIN] [WORKLOAD] [PIPELINE] [OPS] [DURABILITY]
#        (defaults: target/release/troupe put 16 400000 relaxed)
set -euo pipefail
BIN=$(realpath -m "${1:-$(dirname "$0")/../target/release/troupe}")
W=${2:-put}
PL=${3:-16}
OPS=${4:-400000}
DUR=${5:-relaxed}
PORT=18100
[ -x "$BIN" ] || {
  echo "no troupe binary at $BIN (cargo build --release)" >&2
  exit 2
}
[ -x /usr/bin/time ] || {
  echo "needs /usr/bin/time (Debian: apt-get install time)" >&2
  exit 2
}
for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
  if (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "port $p is in use: stop what listens there" >&2
    exit 2
  fi
done
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    # A node that has not stopped within 10 s is killed.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
"$BIN" node --data-dir "$work/data" --durability "$DUR" --listen 127.0.0.1:$PORT \
  --peer-listen 127.0.0.1:$((PORT + 1)) --admin-listen 127.0.0.1:$((PORT + 2)) \
  --metrics-listen 127.0.0.1:$((PORT + 3)) >"$work/log" 2>&1 &
pid=$!
up=
for _ in $(seq 300); do
  if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || {
  echo "the node did not listen on 127.0.0.1:$PORT within 30 s; its log:" >&2
  cat "$work/log" >&2
  exit 1
}
if [ "$W" = get ]; then
  "$BIN" bench --addr 127.0.0.1:$PORT --workload put --concurrency 50 --pipeline 16 \
    --value-size 100 --keys 100000 --ops 100000 --no-prefill >/dev/null
fi
# utime and stime (clock ticks) of every thread of the node: the fields after the
# parenthesised name, which may hold spaces (a thread gone meanwhile is left out).
snap() {
  for t in /proc/$pid/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    echo "$(basename "$t") $(tr ' ' '_' <"$t/comm" 2>/dev/null) $(echo "${stat##*) }" | awk '{print $12, $13}')"
  done
}
snap >"$work/before"
t0=$(date +%s.%N)
/usr/bin/time -f "load generator: user %U s, system %S s" -o "$work/time" \
  "$BIN" bench --addr 127.0.0.1:$PORT --workload "$W" --concurrency 50 --pipeline "$PL" \
  --value-size 100 --keys 100000 --ops "$OPS" --no-prefill | grep -E "ops in" || true
t1=$(date +%s.%N)
snap >"$work/after"
cat "$work/time"
python3 - "$work/before" "$work/after" "$t0" "$t1" "$OPS" "$(getconf CLK_TCK)" <<'PY'
import sys
before = {l.split()[0]: l.split() for l in open(sys.argv[1])}
after = {l.split()[0]: l.split() for l in open(sys.argv[2])}
elapsed, ops, tck = float(sys.argv[4]) - float(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
for tid, a in after.items():
    if tid not in before or len(a) < 4 or len(before[tid]) < 4:
        continue
    u = (int(a[2]) - int(before[tid][2])) / tck
    s = (int(a[3]) - int(before[tid][3])) / tck
    if (u + s) / elapsed >= 0.05:
        print(f"node thread {a[1]:16s} user {u / elapsed:.2f} + system {s / elapsed:.2f} of a core, {1e6 * (u + s) / ops:.2f} us per op")
print(f"elapsed {elapsed:.2f} s")
PY
