#!/usr/bin/env bash
# Starts N troupe nodes on loopback (ports 7400+10*i), data under ./cluster-data/nodeI.
# Usage: deploy/local-cluster.sh start [N] | stop | status
# PIDs are kept in ./cluster-data/nodeI.pid and every node is stopped by its own PID.
set -euo pipefail
BIN=${TROUPE_BIN:-target/release/troupe}
DIR=${TROUPE_CLUSTER_DIR:-./cluster-data}
cmd=${1:-start}
n=${2:-3}
mkdir -p "$DIR"
case "$cmd" in
  start)
    seeds=""
    for i in $(seq 0 $((n - 1))); do
      base=$((7400 + 10 * i))
      "$BIN" node --node-id "node$i" --data-dir "$DIR/node$i" \
        --listen "127.0.0.1:$base" --peer-listen "127.0.0.1:$((base + 1))" \
        --admin-listen "127.0.0.1:$((base + 2))" --metrics-listen "127.0.0.1:$((base + 3))" \
        ${seeds:+--seeds "$seeds"} >"$DIR/node$i.log" 2>&1 &
      echo $! >"$DIR/node$i.pid"
      seeds="127.0.0.1:7401"
      echo "node$i: client 127.0.0.1:$base admin 127.0.0.1:$((base + 2)) pid $!"
    done
    ;;
  stop)
    for f in "$DIR"/node*.pid; do
      [ -e "$f" ] || continue
      kill -TERM "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    done
    ;;
  status)
    for f in "$DIR"/node*.pid; do
      [ -e "$f" ] || continue
      if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running"; else echo "$(basename "$f" .pid): stopped"; fi
    done
    ;;
  *) echo "usage: $0 start [N] | stop | status" >&2; exit 2 ;;
esac
