#!/usr/bin/env bash
# Two commits of troupe on three replicated nodes, like for like: the same machine, minutes
# apart, alternating. For a stage goal stated against an earlier commit's figures ("1.5x what
# the replication issue measured"): this machine's speed differs from session to session and
# phase to phase by 2x or more, so figures measured on another day cannot be divided by
# today's; the earlier commit, built and run beside the new one, can.
#
# Builds each commit's `troupe` (the commit, not the work tree: a git worktree per commit in
# a temporary directory, removed once built; one target directory for both, target/ab/target;
# the binaries are kept as target/ab/troupe-REV, so a second run with the same commits builds
# nothing), then runs PAIRS pairs. In each pair, each commit in turn (the older first in odd
# pairs, the newer first in even ones): three fresh nodes of that commit
# (scripts/lib/three-nodes.sh: N=3, R=W=2, durability sync), then the shape of
# scripts/bench-cluster.sh when the replication issue measured it: put with one request in
# flight on each of 50 connections into the empty cluster (OPS puts over 100,000 keys, 100-byte
# values; a key written twice is overwritten with the context of the first write), then get
# the same way without a prefill (keys never written are misses). Each commit runs its own
# `troupe bench` (the system as that commit shipped it), built with that commit's own release
# profile: from 6d7a852 (2026-12-02) on, fat LTO and one codegen unit, which alone runs 9-13%
# fewer instructions per request than the earlier profile. Prints each run's ops/s and node CPU
# seconds per thousand operations (all three nodes, from /proc), then the per-pair ratios
# (new / old) and their medians. A run with errors is reported and its pair left out of the
# ratios.
# Both commits need `admin ring --json` with `effective_n` (from 2026-11-30, 10:45 UTC on).
# Usage: bash scripts/bench-ab-cluster.sh OLD_REV [NEW_REV] [PAIRS] [OPS]
#        (defaults: NEW_REV HEAD, 3 pairs, 100000 operations per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 OLD_REV [NEW_REV] [PAIRS] [OPS]" >&2; exit 64; }
OLD=$(git rev-parse --short "$1^{commit}")
NEW=$(git rev-parse --short "${2:-HEAD}^{commit}")
PAIRS=${3:-3}
OPS=${4:-100000}
BASE=${TROUPE_BENCH_PORT:-17500}
ab="$(pwd)/target/ab"
work=$(mktemp -d)
pids=()
node_pids=()
cleanup() {
  local rc=$?
  stop_nodes
  if [ "$rc" != 0 ]; then
    for f in "$work"/n*.log; do [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -5 "$f" >&2; }; done
  fi
  rm -rf "$work"
  git worktree prune
}
trap cleanup EXIT
source scripts/lib/three-nodes.sh

# Stops the nodes of the current run: SIGTERM, then SIGKILL to any still up after 20 s.
stop_nodes() {
  local p _
  for p in "${node_pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 200); do
    any_alive "${node_pids[@]:-}" || break
    sleep 0.1
  done
  for p in "${node_pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  node_pids=()
}
any_alive() { local p; for p; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

build() { # rev -> sets `built` to its release binary (copied out of the shared target directory)
  local rev=$1 tree="$work/tree-$1"
  built="$ab/troupe-$rev"
  [ -x "$built" ] && return 0
  git worktree add -f --detach "$tree" "$rev" >/dev/null
  (cd "$tree" && CARGO_TARGET_DIR="$ab/target" cargo build --release --quiet --bin troupe) >&2
  cp "$ab/target/release/troupe" "$built.tmp"
  mv "$built.tmp" "$built"
  git worktree remove --force "$tree"
}
mkdir -p "$ab"
declare -A bin=()
build "$OLD"
bin[old]=$built
build "$NEW"
bin[new]=$built

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ {print $2}') RAM"
echo "start: $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "old: $OLD  new: $NEW  ($PAIRS pairs; each run: 3 fresh nodes, put x1 into the empty cluster, then get x1, $OPS ops each)"

one_run() { # binary -> sets `run_out` to "put_ops put_cpu get_ops get_cpu" (a run with errors: "errors")
  local T=$1 w b a out extra
  run_out=''
  start_three_nodes "$BASE"
  for w in put get; do
    extra=()
    [ "$w" = get ] && extra=(--no-prefill)
    b=$(cpu_ticks)
    out=$("$T" bench --addr "$ADDRS" --workload "$w" --concurrency 50 --pipeline 1 --value-size 100 \
      --keys 100000 --ops "$OPS" --json "${extra[@]}")
    a=$(cpu_ticks)
    run_out+=$(python3 - "$out" "$b" "$a" "$hz" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = (int(x) for x in sys.argv[2:])
print("errors" if r["errors"] else f'{r["ops_per_sec"]:.0f} {(a - b) / hz / (r["ops"] / 1000):.4f}', end=" ")
PY
)
  done
  stop_nodes
  rm -rf "${work:?}"/n*
}

results=()
for i in $(seq "$PAIRS"); do
  order=(old new)
  [ $((i % 2)) = 0 ] && order=(new old)
  declare -A got=()
  for v in "${order[@]}"; do
    one_run "${bin[$v]}"
    got[$v]=$run_out
    echo "pair $i $v: put ops/s, CPU s/1k, get ops/s, CPU s/1k: $run_out"
  done
  results+=("$i|${got[old]}|${got[new]}")
done

python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [r.split("|") for r in sys.argv[1:]]
good = [(i, o.split(), n.split()) for i, o, n in rows if len(o.split()) == 4 and len(n.split()) == 4]
dropped = [i for i, o, n in rows if len(o.split()) != 4 or len(n.split()) != 4]
if dropped:
    print(f"\npairs left out (a run had errors): {', '.join(dropped)}")
if not good:
    sys.exit("no pair without errors")
print("\n| pair | old put ops/s (CPU s/1k) | new put ops/s (CPU s/1k) | put new/old | old get ops/s (CPU s/1k) | new get ops/s (CPU s/1k) | get new/old |")
print("|---|---:|---:|---:|---:|---:|---:|")
pr, gr = [], []
for i, o, n in good:
    p, g = float(n[0]) / float(o[0]), float(n[2]) / float(o[2])
    pr.append(p); gr.append(g)
    print(f"| {i} | {o[0]} ({o[1]}) | {n[0]} ({n[1]}) | {p:.2f} | {o[2]} ({o[3]}) | {n[2]} ({n[3]}) | {g:.2f} |")
print(f"\nmedian new/old: put {statistics.median(pr):.2f} ({min(pr):.2f}-{max(pr):.2f}), "
      f"get {statistics.median(gr):.2f} ({min(gr):.2f}-{max(gr):.2f}) over {len(good)} pairs")
PY
