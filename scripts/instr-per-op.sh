#!/usr/bin/env bash
# Instructions per request on one node, counted by valgrind's callgrind: the user-space
# instructions the node's threads executed while `troupe bench` ran, divided by the
# requests the bench made (kernel time is not counted). Unlike ops/s, the count hardly
# moves between runs of one binary (within 0.5% seen here), whatever the machine is doing,
# so a change of a few percent to the request path shows in one run of each build, where the
# ops/s of this machine need eight or more alternating pairs (docs/BENCHMARKS.md). Between
# two builds, a change in one place can also change what the compiler inlines elsewhere (by
# 1-2% of a get, seen with four codegen units): compare the two builds' profiles function
# by function (TROUPE_INSTR_KEEP, below; callgrind_annotate) before crediting a change.
#
# Shape: one fresh node; 50 connections, --pipeline PIPELINE, 100-byte values, OPS/2 keys.
#  - put (and incr, sadd): no prefill; OPS operations over the keys, uniform: 43% are first
#    writes of a key, the rest overwrite it, with the context the bench kept from an earlier
#    answer when that answer has arrived (as in bench-vs-redis.sh).
#  - get and the mixed workloads: every key written first (sequentially, pipelined), outside
#    the count; then OPS operations.
# Prints the instructions per request of the whole node, of its main thread (the actors'
# event loop) and of its other threads (the WAL writer, the anti-entropy arbiter, ...).
# Under valgrind the node runs about 50x slower, on one core at a time: batches and group
# commits are larger than at full speed, so compare builds with each other, not with the
# ops/s of the other scripts.
# TROUPE_INSTR_KEEP=DIR keeps the per-thread callgrind files there, for callgrind_annotate.
# The node takes its other settings from the environment as usual, e.g.
# TROUPE__STORAGE__MEMTABLE_BYTES=1048576 for many memtable generations in one run (of new keys;
# overwrites of a few keys grow the log, not the table: add TROUPE__STORAGE__MEMTABLE_WAL_BYTES=1048576).
# Usage: bash scripts/instr-per-op.sh [BIN] [DURABILITY] [WORKLOAD] [PIPELINE] [OPS]
#        (defaults: target/release/troupe relaxed put 16 20000)
set -euo pipefail
# BIN as given (relative to where this was called from), before moving to the repository.
BIN=$(realpath -m "${1:-$(dirname "$0")/../target/release/troupe}")
cd "$(dirname "$0")/.."
D=${2:-relaxed}
W=${3:-put}
PL=${4:-16}
OPS=${5:-20000}
PORT=${TROUPE_INSTR_PORT:-17960}
KEYS=$((OPS / 2))
command -v valgrind >/dev/null || {
  echo "needs valgrind (Debian: apt-get install valgrind)" >&2
  exit 2
}
[ -x "$BIN" ] || {
  echo "no troupe binary at $BIN (cargo build --release)" >&2
  exit 2
}
for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
  if (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "port $p is in use: stop what listens there, or set TROUPE_INSTR_PORT" >&2
    exit 2
  fi
done
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "$1" >&2
  exit 1
}
# callgrind_control OPTIONS: tells the node's valgrind; its output is shown only on failure.
control() {
  local said
  said=$(callgrind_control "$@" "$pid" 2>&1) || fail "callgrind_control $* failed: $said"
}
# The "errors" and "ops" of a bench's JSON report.
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Instrumentation starts off (start-up is not counted) and is switched on around the bench;
# one output file per thread.
valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
  --callgrind-out-file="$work/cg.out" "$BIN" node --data-dir "$work/data" --durability "$D" \
  --listen 127.0.0.1:$PORT --peer-listen 127.0.0.1:$((PORT + 1)) \
  --admin-listen 127.0.0.1:$((PORT + 2)) --metrics-listen 127.0.0.1:$((PORT + 3)) \
  >"$work/node.log" 2>&1 &
pid=$!
up=
for _ in $(seq 600); do
  kill -0 "$pid" 2>/dev/null || break
  if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then up=1 && break; fi
  sleep 0.1
done
[ -n "$up" ] || {
  echo "the node did not start under valgrind; its log:" >&2
  cat "$work/node.log" >&2
  exit 1
}
bench=("$BIN" bench --addr 127.0.0.1:$PORT --concurrency 50 --value-size 100 --keys "$KEYS" --json)
extra=()
case "$W" in
put | incr | sadd) ;;
*)
  fill=$("${bench[@]}" --workload put --fill sequential --ops "$KEYS" --pipeline 16)
  [ "$(field "$fill" errors)" = 0 ] || fail "the fill before the count had errors: $fill"
  extra=(--no-prefill)
  ;;
esac
control -i on
out=$("${bench[@]}" --workload "$W" --pipeline "$PL" --ops "$OPS" ${extra[@]+"${extra[@]}"})
control -i off
control -d
[ "$(field "$out" errors)" = 0 ] || fail "the bench had errors: $out"
done_ops=$(field "$out" ops)
[ "$done_ops" = "$OPS" ] || fail "the bench stopped after $done_ops of $OPS requests (its --duration): ask for fewer"
# The dump is written per thread as cg.out.1-NN (thread 01 is the main thread), each file's
# totals line last: wait until every file has one.
complete=
for _ in $(seq 300); do
  files=("$work"/cg.out.1-*)
  if [ -e "${files[0]}" ]; then
    missing=$(grep -L '^totals:' "${files[@]}" || true)
    [ -z "$missing" ] && complete=1 && break
  fi
  sleep 0.1
done
[ -n "$complete" ] || fail "callgrind's dump did not complete within 30 s in $work"
if [ -n "${TROUPE_INSTR_KEEP:-}" ]; then
  mkdir -p "$TROUPE_INSTR_KEEP" && cp "$work"/cg.out.1-* "$TROUPE_INSTR_KEEP"/
fi
python3 - "$work" "$OPS" "$W" "$PL" "$D" "$BIN" <<'PY'
import glob, os, sys
work, ops, w, pl, d, binary = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
main = other = 0
for f in glob.glob(os.path.join(work, "cg.out.1-*")):
    total = next(int(l.split()[1]) for l in open(f) if l.startswith("totals:"))
    if f.endswith("-01"):
        main += total
    else:
        other += total
if main == 0:
    sys.exit("callgrind counted no instructions on the main thread: was instrumentation switched on?")
print(f"{binary} {d} {w} x{pl}, {ops} requests: instructions per request: "
      f"node {(main + other) / ops:.0f}, main thread {main / ops:.0f}, other threads {other / ops:.0f}")
PY
