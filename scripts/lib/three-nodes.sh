# Sourced by the three-node benchmarks (bench-ab-cluster.sh, bench-catchup.sh, bench-cluster.sh,
# bench-join.sh, bench-types.sh): starts nodes n0..n2
# of "$T" (N=3, R=W=2, durability sync) on ports BASE, BASE+10, BASE+20 (+1 peer, +2 admin,
# +3 metrics) with data and logs in "$work", adds their PIDs to `pids` (the caller's cleanup
# kills them) and `node_pids`, waits until every node places keys over three members with
# no partition still moving (the formation's transfers done; `admin ring` reports `pending`
# since partition transfers came, 91779a5, so an older build, which has none to wait for, is
# ready once it places keys over three), and
# sets ADDRS (the client addresses) and `cpu_ticks` (user + system ticks of the three nodes,
# from /proc) with `hz`.
start_three_nodes() {
  local base=$1 i p n
  node_pids=()
  for i in 0 1 2; do
    p=$((base + 10 * i))
    local seeds=()
    [ "$i" -gt 0 ] && seeds=(--seeds "127.0.0.1:$((base + 1))")
    "$T" node --node-id "n$i" --data-dir "$work/n$i" --durability sync --listen 127.0.0.1:$p \
      --peer-listen 127.0.0.1:$((p + 1)) --admin-listen 127.0.0.1:$((p + 2)) \
      --metrics-listen 127.0.0.1:$((p + 3)) "${seeds[@]}" >"$work/n$i.log" 2>&1 &
    node_pids+=($!); pids+=($!)
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
  done
  for _ in $(seq 200); do
    n=0
    for i in 0 1 2; do
      "$T" admin ring --json --addr 127.0.0.1:$((base + 10 * i + 2)) |
        python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["effective_n"]==3 and not r.get("pending") else 1)' &&
        n=$((n + 1))
    done
    [ "$n" -eq 3 ] && break
    sleep 0.1
  done
  [ "$n" -eq 3 ] || { echo "the three nodes never agreed on a ring of three" >&2; exit 2; }
  ADDRS="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
  hz=$(getconf CLK_TCK)
}

cpu_ticks() { local t=0 p; for p in "${node_pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
