#!/usr/bin/env bash
# Starts N troupe nodes on loopback, data under ./cluster-data/nodeI, for trying a cluster
# on one machine. Node I uses ports BASE+10*I (clients), +1 (peers), +2 (admin), +3 (metrics).
# Usage: deploy/local-cluster.sh start [N] | stop | status
# Environment: TROUPE_BIN (default target/release/troupe), TROUPE_CLUSTER_DIR (default
# ./cluster-data), TROUPE_BASE_PORT (default 7400), TROUPE_START_TIMEOUT and
# TROUPE_STOP_TIMEOUT in seconds (default 30 each).
# `start` fails (exit 1, with the node's log tail) unless every node comes up, one at a time;
# `stop` sends SIGTERM and waits for every node to exit. PIDs are kept in nodeI.pid and every
# node is signalled by its own PID; logs in nodeI.log are appended to, never truncated.
set -euo pipefail
BIN=${TROUPE_BIN:-target/release/troupe}
DIR=${TROUPE_CLUSTER_DIR:-./cluster-data}
BASE=${TROUPE_BASE_PORT:-7400}
START_TIMEOUT=${TROUPE_START_TIMEOUT:-30}
STOP_TIMEOUT=${TROUPE_STOP_TIMEOUT:-30}
cmd=${1:-start}
n=${2:-3}

die() { echo "local-cluster: $*" >&2; exit 1; }

# A running process (an exited child of an earlier start may linger as a zombie until its
# parent reaps it; that counts as stopped).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ] && [ "${stat:0:1}" != X ]
}

# Whether something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp).
listening() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stops every node of an earlier start; with `failed` set, after a failed start.
stop_all() {
  local pids=() f pid
  for f in "$DIR"/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    # Only a troupe process: the PID may have been reused since.
    if running "$pid" && grep -qa troupe "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid:$(basename "$f" .pid)")
    fi
    rm -f "$f"
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) left p
  while :; do
    left=()
    for p in ${pids[@]+"${pids[@]}"}; do
      if running "${p%%:*}"; then left+=("$p"); fi
    done
    [ ${#left[@]} -eq 0 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "local-cluster: still running after ${STOP_TIMEOUT}s: ${left[*]} (pid:node); kill -KILL them by PID if they are stuck" >&2
      return 1
    fi
    sleep 0.1
  done
}

start() {
  [ -x "$BIN" ] || die "no troupe binary at $BIN: build it (cargo build --release) or set TROUPE_BIN"
  mkdir -p "$DIR"
  local f
  for f in "$DIR"/node*.pid; do
    [ -e "$f" ] || continue
    if running "$(cat "$f")"; then die "$(basename "$f" .pid) is already running (pid $(cat "$f")); run '$0 stop' first"; fi
    rm -f "$f"
  done
  local seeds="" i base port pid log from deadline
  for i in $(seq 0 $((n - 1))); do
    base=$((BASE + 10 * i))
    for port in "$base" $((base + 1)) $((base + 2)) $((base + 3)); do
      if listening "$port"; then
        stop_all || true
        die "port $port (for node$i) is already in use; stop what listens there or set TROUPE_BASE_PORT"
      fi
    done
    log="$DIR/node$i.log"
    echo "=== $(date -u +%FT%TZ) local-cluster.sh start node$i" >>"$log"
    from=$(($(wc -c <"$log") + 1))
    # troupe::node at info at least: its "serving clients" line says start-up is over.
    RUST_LOG="${RUST_LOG:-info},troupe::node=info" "$BIN" node --node-id "node$i" --data-dir "$DIR/node$i" \
      --listen "127.0.0.1:$base" --peer-listen "127.0.0.1:$((base + 1))" \
      --admin-listen "127.0.0.1:$((base + 2))" --metrics-listen "127.0.0.1:$((base + 3))" \
      ${seeds:+--seeds "$seeds"} </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/node$i.pid"
    # Up once its peer port (the last one it binds) answers and it logged that it serves;
    # the ports were free above, so it is this node that answers.
    deadline=$((SECONDS + START_TIMEOUT))
    until listening $((base + 1)) && tail -c "+$from" "$log" | grep -q "serving clients on"; do
      if ! running "$pid"; then
        echo "local-cluster: node$i (pid $pid) exited during start; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        stop_all || true
        exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "local-cluster: node$i did not listen on 127.0.0.1:$((base + 1)) within ${START_TIMEOUT}s; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        stop_all || true
        exit 1
      fi
      sleep 0.1
    done
    seeds="127.0.0.1:$((BASE + 1))"
    echo "node$i: client 127.0.0.1:$base admin 127.0.0.1:$((base + 2)) metrics 127.0.0.1:$((base + 3)) pid $pid log $log"
  done
}

case "$cmd" in
  start) start ;;
  stop) stop_all ;;
  status)
    for f in "$DIR"/node*.pid; do
      [ -e "$f" ] || continue
      if running "$(cat "$f")"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid): stopped"; fi
    done
    ;;
  *) echo "usage: $0 start [N] | stop | status" >&2; exit 2 ;;
esac
