#!/usr/bin/env bash
# The history checker's figures: SEEDS seeded schedules per workload on 3 and 5 local nodes
# with kills, pauses and partitions; one markdown row per (nodes, workload) with the sums
# and the worst figures. Bounded: every run lasts DURATION plus start-up and read-back.
# Usage: bash scripts/check-matrix.sh [SEEDS] [DURATION]     (default 20 seeds, 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-20}
DURATION=${2:-10s}
cargo build --release --quiet
T=target/release/troupe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| nodes | workload | runs | faults | ops ok / fail / unknown | lost | resurrected | unexpected | session violations | counter violations | worst siblings | convergence after heal (worst) |"
echo "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for nodes in 3 5; do
  for w in set register counter session; do
    for seed in $(seq 1 "$SEEDS"); do
      "$T" check --local "$nodes" --workload "$w" --seed "$seed" --duration "$DURATION" \
        --faults kill,pause,partition --fault-every 2s --fault-for 1500ms \
        --out "$work/$nodes-$w-$seed" --json > "$work/$nodes-$w-$seed.json" || true
    done
    python3 - "$work" "$nodes" "$w" "$SEEDS" <<'PY'
import json, sys, glob
work, nodes, w, seeds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tot = dict(ok=0, fail=0, unknown=0, lost=0, res=0, unexp=0, sess=0, ctr=0, sib=0, conv=0.0, faults=0, runs=0)
for s in range(1, seeds + 1):
    try:
        v = json.load(open(f"{work}/{nodes}-{w}-{s}.json"))
        h = json.load(open(f"{work}/{nodes}-{w}-{s}/history.json"))
    except Exception as e:
        print(f"<!-- {nodes}-{w}-{s}: no result ({e}) -->")
        continue
    tot["runs"] += 1
    tot["faults"] += len(h["faults"])
    tot["ok"] += v["ops_ok"]; tot["fail"] += v["ops_fail"]; tot["unknown"] += v["ops_unknown"]
    tot["lost"] += len(v["lost"]); tot["res"] += len(v["resurrected"]); tot["unexp"] += len(v["unexpected"])
    tot["sess"] += len(v["session_violations"]); tot["ctr"] += len(v["counter_violations"])
    tot["sib"] = max(tot["sib"], v["max_siblings"])
    tot["conv"] = max(tot["conv"], v["convergence_ms"] or float("inf"))
print(f"| {nodes} | {w} | {tot['runs']} | {tot['faults']} | {tot['ok']} / {tot['fail']} / {tot['unknown']} | {tot['lost']} | {tot['res']} | {tot['unexp']} | {tot['sess']} | {tot['ctr']} | {tot['sib']} | {tot['conv']:.0f} ms |")
PY
  done
done
