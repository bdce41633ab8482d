#!/usr/bin/env bash
# Instructions per request on one node, counted by valgrind's callgrind: the user-space
# instructions the node's threads executed while `troupe bench` ran, divided by the
# requests the bench made (kernel time is not counted). Unlike ops/s, the count hardly
# moves between runs of one binary (0.2% seen here), whatever the machine is doing, so a
# change of a few percent to the request path shows in one run of each build, where the
# ops/s of this machine need eight or more alternating pairs (docs/BENCHMARKS.md). Between
# two builds, a change in one place can also change what the compiler inlines elsewhere (by
# 1-2% of a get, seen with four codegen units): compare the two builds' profiles function
# by function (TROUPE_INSTR_KEEP, below; callgrind_annotate) before crediting a change.
#
# Shape: one fresh node; 50 connections, --pipeline PIPELINE, 100-byte values.
#  - put: no prefill; OPS puts over OPS/2 keys, uniform: 43% are first writes of a key and
#    the rest overwrite it with the context the bench kept (as in bench-vs-redis.sh).
#  - get: OPS/2 keys written first, outside the count; then OPS gets of them.
# Prints the instructions per request of the whole node, of its main thread (the actors'
# event loop) and of its other threads (the WAL writer, the anti-entropy arbiter, ...).
# Under valgrind the node runs about 50x slower, on one core at a time: batches and group
# commits are larger than at full speed, so compare builds with each other, not with the
# ops/s of the other scripts.
# TROUPE_INSTR_KEEP=DIR keeps the per-thread callgrind files there, for callgrind_annotate.
# Usage: bash scripts/instr-per-op.sh [BIN] [DURABILITY] [WORKLOAD] [PIPELINE] [OPS]
#        (defaults: target/release/troupe relaxed put 16 20000)
set -euo pipefail
BIN=${1:-target/release/troupe}
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
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

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
  if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then up=1 && break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || {
  echo "the node did not start under valgrind; its log:" >&2
  cat "$work/node.log" >&2
  exit 1
}
bench=("$BIN" bench --addr 127.0.0.1:$PORT --concurrency 50 --value-size 100 --keys "$KEYS" --json)
extra=()
if [ "$W" = get ]; then
  "${bench[@]}" --workload put --fill sequential --ops "$KEYS" --pipeline 16 >/dev/null
  extra=(--no-prefill)
fi
callgrind_control -i on "$pid" >/dev/null 2>&1
out=$("${bench[@]}" --workload "$W" --pipeline "$PL" --ops "$OPS" "${extra[@]}")
callgrind_control -i off "$pid" >/dev/null 2>&1
callgrind_control -d "$pid" >/dev/null 2>&1
errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$out")
[ "$errors" = 0 ] || {
  echo "the bench had $errors errors" >&2
  exit 1
}
# The dump is written per thread as cg.out.1-NN; thread 01 is the main thread. Wait for
# every file's totals line (written last).
for _ in $(seq 100); do
  files=("$work"/cg.out.1-*)
  [ -e "${files[0]}" ] && ! grep -L '^totals:' "${files[@]}" | grep -q . && break
  sleep 0.1
done
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
print(f"{binary} {d} {w} x{pl}, {ops} requests: instructions per request: "
      f"node {(main + other) / ops:.0f}, main thread {main / ops:.0f}, other threads {other / ops:.0f}")
PY
