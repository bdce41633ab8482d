#!/usr/bin/env bash
# Two commits of troupe on three replicated nodes, like for like: the same machine, minutes
# apart, alternating. For a stage goal stated against an earlier commit's figures ("1.5x what
# the replication issue measured"): this machine's speed differs from session to session and
# phase to phase by up to 2x, so figures measured on another day cannot be divided by
# today's; the earlier commit, built and run beside the new one, can.
#
# Builds each commit's `troupe` (the commit, not the work tree: a git worktree per commit under
# target/ab, removed once built; one target directory for both; the binaries are kept, so a
# second run with the same commits builds nothing), then runs PAIRS pairs. In each pair,
# each commit in turn (the older first in odd pairs, the newer first in even ones): three
# fresh nodes of that commit (scripts/lib/three-nodes.sh: N=3, R=W=2, durability sync), a
# sequential prefill of the 100,000 keys (--pipeline 16), then put and get with one request in
# flight on each of 50 connections, 100-byte values, OPS operations each, each commit's own
# `troupe bench` (the system as that commit shipped it). Prints each run's ops/s and node CPU
# seconds per thousand operations (all three nodes, from /proc), then the per-pair ratios
# (new / old) and their medians.
# Both commits need `troupe bench --fill` and `admin ring --json` with `effective_n` (from
# 2026-11-30, 10:45 UTC on).
# Usage: bash scripts/bench-ab-cluster.sh OLD_REV [NEW_REV] [PAIRS] [OPS]
#        (defaults: NEW_REV HEAD, 3 pairs, 60000 operations per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 OLD_REV [NEW_REV] [PAIRS] [OPS]" >&2; exit 64; }
OLD=$(git rev-parse --short "$1^{commit}")
NEW=$(git rev-parse --short "${2:-HEAD}^{commit}")
PAIRS=${3:-3}
OPS=${4:-60000}
BASE=${TROUPE_BENCH_PORT:-17500}
root=$(pwd)
ab="$root/target/ab"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source scripts/lib/three-nodes.sh

build() { # rev -> path of its release binary (copied out of the shared target directory)
  local rev=$1 tree="$ab/tree-$1"
  if [ ! -x "$ab/troupe-$rev" ]; then
    [ -d "$tree" ] || git worktree add -f --detach "$tree" "$rev" >/dev/null
    (cd "$tree" && CARGO_TARGET_DIR="$ab/target" cargo build --release --quiet --bin troupe) >&2
    cp "$ab/target/release/troupe" "$ab/troupe-$rev"
    git worktree remove --force "$tree"
  fi
  echo "$ab/troupe-$rev"
}
mkdir -p "$ab"
declare -A bin=([old]=$(build "$OLD") [new]=$(build "$NEW"))

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ {print $2}') RAM"
echo "start: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "old: $OLD  new: $NEW  ($PAIRS pairs; each run: 3 fresh nodes, prefill, then put and get x1, $OPS ops each)"

one_run() { # binary -> sets `run_out` to "put_ops put_cpu get_ops get_cpu" ("errors" if any)
  local T=$1 w b a out p
  run_out=''
  start_three_nodes "$BASE"
  "$T" bench --addr "$ADDRS" --workload put --concurrency 50 --value-size 100 --keys 100000 \
    --ops 100000 --pipeline 16 --fill sequential --json >/dev/null
  for w in put get; do
    b=$(cpu_ticks)
    out=$("$T" bench --addr "$ADDRS" --workload "$w" --concurrency 50 --pipeline 1 --value-size 100 \
      --keys 100000 --ops "$OPS" --no-prefill --json)
    a=$(cpu_ticks)
    run_out+=$(python3 - "$out" "$b" "$a" "$hz" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = (int(x) for x in sys.argv[2:])
print("errors" if r["errors"] else f'{r["ops_per_sec"]:.0f} {(a - b) / hz / (r["ops"] / 1000):.4f}', end=" ")
PY
)
  done
  for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  rm -rf "${work:?}"/n*
}

results=()
for i in $(seq "$PAIRS"); do
  order=(old new); [ $((i % 2)) = 0 ] && order=(new old)
  declare -A got=()
  for v in "${order[@]}"; do
    one_run "${bin[$v]}"
    got[$v]=$run_out
    echo "pair $i $v: put ops/s, CPU s/1k, get ops/s, CPU s/1k: $run_out"
  done
  results+=("${got[old]}|${got[new]}")
done

python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [(o.split(), n.split()) for o, n in (r.split("|") for r in sys.argv[1:])]
rows = [(o, n) for o, n in rows if len(o) == 4 and len(n) == 4]
if not rows:
    sys.exit("no pair without errors")
print("\n| pair | old put ops/s (CPU s/1k) | new put ops/s (CPU s/1k) | put new/old | old get ops/s (CPU s/1k) | new get ops/s (CPU s/1k) | get new/old |")
print("|---|---:|---:|---:|---:|---:|---:|")
pr, gr = [], []
for i, (o, n) in enumerate(rows, 1):
    p, g = float(n[0]) / float(o[0]), float(n[2]) / float(o[2])
    pr.append(p); gr.append(g)
    print(f"| {i} | {o[0]} ({o[1]}) | {n[0]} ({n[1]}) | {p:.2f} | {o[2]} ({o[3]}) | {n[2]} ({n[3]}) | {g:.2f} |")
print(f"\nmedian new/old: put {statistics.median(pr):.2f} ({min(pr):.2f}-{max(pr):.2f}), "
      f"get {statistics.median(gr):.2f} ({min(gr):.2f}-{max(gr):.2f}) over {len(rows)} pairs")
PY
