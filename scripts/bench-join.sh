#!/usr/bin/env bash
# Ring change under load (issue 13): three nodes (N=3, R=W=2, durability sync) hold DATA_MB
# of data (1 KiB values); a fourth joins while a put load runs in back-to-back windows of
# WINDOW seconds (`troupe bench --duration`), each reporting ops/s and client p50/p99.
# Timeline:
#   1. load the data (sequential keys, 50 connections), then BASE windows with three nodes;
#   2. start n3 with --seeds, and time until every node's `admin ring` has four members and
#      no partition pending (the transfers done, the new layout stable), polled every 200 ms;
#   3. what n3 fetched (`admin stats` transfers: keys, bytes) and one window after;
#   4. the listing rate: `troupe keys` through n0 pages through every key (10,000 a page).
# Prints the figures as markdown for docs/BENCHMARKS.md.
# Usage: bash scripts/bench-join.sh [DATA_MB] [CONCURRENCY]   (defaults 1024, 16)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_MB=${1:-1024}
CONC=${2:-16}
WINDOW=2
BASE_WINDOWS=5
VALUE=1000
KEYS=$((DATA_MB * 1024 * 1024 / VALUE))
BASE=${TROUPE_BENCH_PORT:-17700}
work=${TROUPE_BENCH_DIR:-$(mktemp -d)}
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin troupe
T=target/release/troupe
source scripts/lib/three-nodes.sh
start_three_nodes "$BASE"
admin() { "$T" admin "$@" --json; }
now() { date +%s.%N; }

echo "loading $KEYS keys of $VALUE bytes ($DATA_MB MiB) ..." >&2
t0=$(now)
"$T" bench --addr "$ADDRS" --workload put --fill sequential --concurrency 50 --value-size $VALUE \
  --keys $KEYS --ops $KEYS --duration 3600 --json >"$work/load.json"
t1=$(now)

window() {
  local s e out
  s=$(now)
  out=$("$T" bench --addr "$ADDRS" --workload put --concurrency "$CONC" --value-size 100 \
    --keys 100000 --ops 100000000 --duration "$WINDOW" --seed "$RANDOM" --json)
  e=$(now)
  python3 - "$out" "$s" "$e" >>"$work/windows" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(sys.argv[2], sys.argv[3], round(r["ops_per_sec"]), r["latency_us"]["p50"], r["latency_us"]["p99"], r["errors"])
PY
}
settled() { # node index -> 0 when it holds a four-member layout with nothing pending
  admin ring --addr "127.0.0.1:$((BASE + 10 * $1 + 2))" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if len(r["members"])==4 and not r["pending"] else 1)'
}

: >"$work/windows"
for _ in $(seq $BASE_WINDOWS); do window; done
t_join=$(now)
p=$((BASE + 30))
"$T" node --node-id n3 --data-dir "$work/n3" --durability sync --listen 127.0.0.1:$p \
  --peer-listen 127.0.0.1:$((p + 1)) --admin-listen 127.0.0.1:$((p + 2)) \
  --metrics-listen 127.0.0.1:$((p + 3)) --seeds "127.0.0.1:$((BASE + 1))" >"$work/n3.log" 2>&1 &
pids+=($!)
(
  for _ in $(seq 18000); do
    ok=1
    for i in 0 1 2 3; do settled $i 2>/dev/null || { ok=0; break; }; done
    [ $ok = 1 ] && { now >"$work/settled"; exit 0; }
    sleep 0.2
  done
) &
poller=$!
while kill -0 $poller 2>/dev/null; do window; done
t_settled=$(cat "$work/settled" 2>/dev/null || echo 0)
window
admin stats --addr 127.0.0.1:$((BASE + 32)) >"$work/n3-stats.json"

echo "listing every key through n0 ..." >&2
l0=$(now)
listed=$("$T" keys --addr 127.0.0.1:$BASE --page 10000 | wc -l)
l1=$(now)

python3 - "$work/windows" "$t_join" "$t_settled" "$work/n3-stats.json" "$work/load.json" "$t0" "$t1" "$KEYS" "$CONC" "$listed" "$l0" "$l1" <<'PY'
import json, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
join, settled = float(sys.argv[2]), float(sys.argv[3])
st = json.load(open(sys.argv[4]))["transfers"]
load = json.load(open(sys.argv[5]))
t0, t1, keys, conc = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
listed, l0, l1 = int(sys.argv[10]), float(sys.argv[11]), float(sys.argv[12])
base = [r for r in rows if r[1] <= join]
during = [r for r in rows if r[1] > join and (settled == 0 or r[0] < settled)]
after = [r for r in rows if settled > 0 and r[0] >= settled]
def summary(rs):
    if not rs:
        return "-", "-", "-", "-"
    ops = sum(r[2] for r in rs) / len(rs)
    p50 = sorted(r[3] for r in rs)[len(rs)//2]
    p99s = sorted(r[4] for r in rs)
    return f"{ops:.0f}", f"{p50:.0f}", f"{p99s[len(p99s)//2]:.0f}", f"{p99s[-1]:.0f}"
print(f"data: {keys} keys of 1000 bytes loaded in {t1 - t0:.1f} s ({load['ops_per_sec']:.0f} puts/s, errors {load['errors']})")
if settled > 0:
    secs = settled - join
    b = st["bytes_received"]
    print(f"join (start of n3 to every node settled on four members): {secs:.1f} s; "
          f"n3 fetched {st['keys_received']} keys, {b/1e6:.1f} MB = {b/1e6/secs:.1f} MB/s over the join; "
          f"streams completed {st['streams_completed']}, stalled {st['streams_stalled']}, failed {st['streams_failed']}")
else:
    print("join: not settled within an hour")
print(f"listing: {listed} keys in {l1 - l0:.1f} s = {listed / (l1 - l0):.0f} keys/s (troupe keys, pages of 10,000)")
print()
print(f"put load, {conc} connections, 100-byte values:")
print("| phase | windows | put ops/s (mean) | p50 us (median window) | p99 us (median window) | p99 us (worst window) |")
print("|---|---:|---:|---:|---:|---:|")
for name, rs in [("three nodes (before)", base), ("during the join", during), ("after", after)]:
    o, p50, m, w = summary(rs)
    print(f"| {name} | {len(rs)} | {o} | {p50} | {m} | {w} |")
print(f"\nclient errors over the run: {sum(r[5] for r in rows):.0f}")
PY
