# Sourced by the paired benchmarks (bench-vs-redis.sh, bench-cluster.sh). `settle` waits, up
# to 10 s, until the whole machine is at most 10% busy over 200 ms, so that what one
# measurement left running (a flush, a compaction, an anti-entropy round, an AOF rewrite in a
# forked child) is not charged to the next one, which may be the other system's.
settle() {
  local try j a b busy total
  for try in $(seq 50); do
    read -r -a a </proc/stat
    sleep 0.2
    read -r -a b </proc/stat
    # "cpu", then user nice system idle iowait irq softirq steal: busy is this guest's own
    # work (steal, time the hypervisor gave others, is not something waiting here ends).
    total=0
    for j in 1 2 3 4 5 6 7 8; do total=$((total + b[j] - a[j])); done
    busy=$((total - (b[4] - a[4]) - (b[5] - a[5]) - (b[8] - a[8])))
    if [ $((busy * 10)) -le "$total" ]; then
      [ "$try" -gt 5 ] && echo "settle: waited $((try / 5)) s for the machine to settle" >&2
      return 0
    fi
  done
  echo "settle: the machine stayed busy for 10 s; measuring anyway" >&2
}
