#!/usr/bin/env bash
# Hinted handoff catch-up (issue 12): three nodes (N=3, R=W=2, durability sync). A put load
# through n0 and n1 runs all along in back-to-back windows of WINDOW seconds (`troupe bench
# --duration`), each reporting its ops/s and client p50/p99. Timeline:
#   1. BASE windows with every node up (the p99 "without catch-up");
#   2. SIGKILL n2, wait until n0 and n1 see it dead, then DOWN seconds of load (n0 and n1
#      keep a hint per write for n2: with three nodes there is no fallback);
#   3. restart n2 and time until `admin hints` counts 0 on n0 and n1 (every hint delivered),
#      polled every 100 ms; the windows that overlap the catch-up give the p99 "during it";
#   4. then one anti-entropy round on n2 (`admin repair`, load still running), timed, with
#      what it still found different and repaired: consistent again when it ends.
# Prints the figures as a markdown table for docs/BENCHMARKS.md.
# Usage: bash scripts/bench-catchup.sh [DOWN_SECONDS] [CONCURRENCY]   (defaults 60, 16)
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN=${1:-60}
CONC=${2:-16}
WINDOW=2
BASE_WINDOWS=5
BASE=${TROUPE_BENCH_PORT:-17600}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin troupe
T=target/release/troupe
source scripts/lib/three-nodes.sh
start_three_nodes "$BASE"
ADDR01="127.0.0.1:$BASE,127.0.0.1:$((BASE + 10))"
admin() { "$T" admin "$@" --json; }
now() { date +%s.%N; }

# One load window: appends "start end ops_per_sec p50 p99 errors" to $work/windows.
window() {
  local s e out
  s=$(now)
  out=$("$T" bench --addr "$ADDR01" --workload put --concurrency "$CONC" --value-size 100 \
    --keys 100000 --ops 100000000 --duration "$WINDOW" --seed "$RANDOM" --json)
  e=$(now)
  python3 - "$out" "$s" "$e" >>"$work/windows" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(sys.argv[2], sys.argv[3], round(r["ops_per_sec"]), r["latency_us"]["p50"], r["latency_us"]["p99"], r["errors"])
PY
}
hints_count() { # node index -> pending hints
  admin hints --addr "127.0.0.1:$((BASE + 10 * $1 + 2))" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'
}
status_of_n2() { # node index -> n2's status in that node's view
  admin members --addr "127.0.0.1:$((BASE + 10 * $1 + 2))" |
    python3 -c 'import json,sys; print(next(m["status"] for m in json.load(sys.stdin)["members"] if m["id"]=="n2"))'
}

: >"$work/windows"
for _ in $(seq $BASE_WINDOWS); do window; done
t_base_end=$(now)

kill -KILL "${node_pids[2]}"
for _ in $(seq 600); do
  [ "$(status_of_n2 0)" = dead ] && [ "$(status_of_n2 1)" = dead ] && break
  sleep 0.1
done
t_down=$(now)
for _ in $(seq $((DOWN / WINDOW))); do window; done
t_up=$(now)

# Restart n2 exactly as three-nodes.sh started it, and time the hand-off.
p=$((BASE + 20))
"$T" node --node-id n2 --data-dir "$work/n2" --durability sync --listen 127.0.0.1:$p \
  --peer-listen 127.0.0.1:$((p + 1)) --admin-listen 127.0.0.1:$((p + 2)) \
  --metrics-listen 127.0.0.1:$((p + 3)) --seeds "127.0.0.1:$((BASE + 1))" >>"$work/n2.log" 2>&1 &
pids+=($!)
pending_at_restart=$(( $(hints_count 0) + $(hints_count 1) ))
(
  for _ in $(seq 6000); do
    [ "$(hints_count 0)" = 0 ] && [ "$(hints_count 1)" = 0 ] && { now >"$work/caught_up"; exit 0; }
    sleep 0.1
  done
) &
poller=$!
while kill -0 $poller 2>/dev/null; do window; done
t_caught=$(cat "$work/caught_up" 2>/dev/null || echo "")
t_ae0=$(now)
"$T" admin repair --addr 127.0.0.1:$((BASE + 22)) --json >"$work/repair.json" &
repair=$!
while kill -0 $repair 2>/dev/null; do window; done
t_ae1=$(now)
window # one window after the catch-up
python3 - "$work/repair.json" "$t_ae0" "$t_ae1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"anti-entropy round on n2 after the hints: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s, "
      f"keys compared {r.get('keys_compared')}, differing {r.get('keys_differing')}, repaired {r.get('keys_repaired')}, "
      f"bytes {r.get('bytes')}")
PY
stored=$(( $(admin hints --addr 127.0.0.1:$((BASE + 2)) | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored"])') \
  + $(admin hints --addr 127.0.0.1:$((BASE + 12)) | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored"])') ))

python3 - "$work/windows" "$t_base_end" "$t_down" "$t_up" "${t_caught:-0}" "$pending_at_restart" "$stored" "$CONC" "$t_ae1" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
base_end, down, up, caught = map(float, sys.argv[2:6])
pending, stored, conc = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
ae_end = float(sys.argv[9])
base = [r for r in rows if r[1] <= base_end]
during_down = [r for r in rows if r[0] >= down and r[1] <= up]
catch = [r for r in rows if r[1] > up and r[0] < caught]
ae = [r for r in rows if caught > 0 and r[1] > caught and r[0] < ae_end]
after = [r for r in rows if r[0] >= ae_end]
def summary(rs):
    if not rs:
        return "-", "-", "-"
    ops = sum(r[2] for r in rs) / len(rs)
    p99s = sorted(r[4] for r in rs)
    return f"{ops:.0f}", f"{p99s[len(p99s)//2]:.0f}", f"{p99s[-1]:.0f}"
print(f"concurrency {conc}; n2 down {up - down:.1f} s; hints stored {stored}, pending at restart {pending}")
print(f"catch-up (restart to every hint delivered): {caught - up:.1f} s" if caught > 0 else "catch-up: not within 600 s")
print()
print("| phase | windows | put ops/s (mean) | p99 us (median window) | p99 us (worst window) |")
print("|---|---:|---:|---:|---:|")
for name, rs in [("all up (baseline)", base), ("n2 down (hinting)", during_down), ("catch-up (hints delivered)", catch), ("anti-entropy round", ae), ("after", after)]:
    o, m, w = summary(rs)
    print(f"| {name} | {len(rs)} | {o} | {m} | {w} |")
errors = sum(r[5] for r in rows)
print(f"\nclient errors over the run: {errors:.0f}")
PY
