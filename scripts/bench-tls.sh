#!/usr/bin/env bash
# The cost of TLS (issue 15): one node, 50 connections, one request in flight each, 100-byte
# values over 10,000 keys; `put` then `get`, with TLS off and on, alternating ROUNDS times
# (so a machine whose load changes during the run shifts both alike). The node runs with
# durability relaxed, so the WAL's fdatasync does not hide the network's cost. Certificates
# (P-256, a throwaway CA) are made here with the openssl CLI. Prints each run, then per mode
# and op the median ops/s, p50 and p99 (us) and node CPU seconds per thousand ops, and the
# TLS/plain ratios.
# Usage: bash scripts/bench-tls.sh [OPS] [ROUNDS]      (defaults 50000, 3)
#   TROUPE_BIN=path: use that binary (default: build and use target/release/troupe).
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-50000}
ROUNDS=${2:-3}
PORT=${TROUPE_BENCH_PORT:-17700}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "${TROUPE_BIN:-}" ]; then
  cargo build --release --quiet
  TROUPE_BIN=target/release/troupe
fi
T=$TROUPE_BIN
hz=$(getconf CLK_TCK)

o() { openssl "$@" >/dev/null 2>&1; }
o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" \
  -out "$work/ca.pem" -days 1 -subj "/CN=bench CA"
o req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/n.key" \
  -out "$work/n.csr" -subj "/CN=bench node"
echo "subjectAltName=IP:127.0.0.1" >"$work/san.ext"
o x509 -req -in "$work/n.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/n.crt" -days 1 -extfile "$work/san.ext"

start_node() { # $1: plain|tls
  rm -rf "$work/data"
  local env=()
  if [ "$1" = tls ]; then
    env=(TROUPE__TLS__CERT="$work/n.crt" TROUPE__TLS__KEY="$work/n.key" TROUPE__TLS__CA="$work/ca.pem")
  fi
  env "${env[@]}" "$T" node --node-id bench --data-dir "$work/data" --durability relaxed \
    --listen "127.0.0.1:$PORT" --peer-listen "127.0.0.1:$((PORT + 1))" \
    --admin-listen "127.0.0.1:$((PORT + 2))" --metrics-listen "127.0.0.1:$((PORT + 3))" \
    2>"$work/node.log" &
  pid=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node did not start:"; cat "$work/node.log"; exit 1
}
stop_node() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

: >"$work/runs"
for round in $(seq "$ROUNDS"); do
  for mode in plain tls; do
    start_node "$mode"
    tls=()
    [ "$mode" = tls ] && tls=(--tls-ca "$work/ca.pem")
    for w in put get; do
      before=$(cpu_ticks)
      out=$("$T" bench --addr "127.0.0.1:$PORT" "${tls[@]}" --workload "$w" --concurrency 50 \
        --pipeline 1 --value-size 100 --keys 10000 --ops "$OPS" --seed "$round" --json)
      after=$(cpu_ticks)
      python3 - "$out" "$before" "$after" "$hz" "$mode" "$round" >>"$work/runs" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b, a, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(json.dumps({"mode": sys.argv[5], "round": int(sys.argv[6]), "op": r["workload"],
                  "ops": r["ops"], "errors": r["errors"], "ops_per_sec": r["ops_per_sec"],
                  "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
                  "cpu_s_per_kop": (a - b) / hz / r["ops"] * 1000}))
PY
      tail -1 "$work/runs"
    done
    stop_node
  done
done

python3 - "$work/runs" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {}
print(f"{'mode':6} {'op':4} {'ops/s':>8} {'p50 us':>7} {'p99 us':>7} {'node cpu s/kop':>15}")
for op in ("put", "get"):
    for mode in ("plain", "tls"):
        rs = [r for r in runs if r["mode"] == mode and r["op"] == op]
        m = {k: statistics.median(r[k] for r in rs) for k in ("ops_per_sec", "p50", "p99", "cpu_s_per_kop")}
        med[(mode, op)] = m
        print(f"{mode:6} {op:4} {m['ops_per_sec']:8.0f} {m['p50']:7.0f} {m['p99']:7.0f} {m['cpu_s_per_kop']:15.4f}")
for op in ("put", "get"):
    p, t = med[("plain", op)], med[("tls", op)]
    print(f"{op}: TLS/plain ops/s {t['ops_per_sec'] / p['ops_per_sec']:.2f}, "
          f"p50 {t['p50'] / p['p50']:.2f}, node CPU per op {t['cpu_s_per_kop'] / p['cpu_s_per_kop']:.2f}")
PY
