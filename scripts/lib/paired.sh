# Sourced by the paired benchmarks (bench-vs-redis.sh, bench-cluster.sh), which set RPORT
# (Redis's port) and OPS. `paired_round` measures one round of a row, troupe and Redis back
# to back; `settle`, run before each measurement, waits, up to 10 s, until the whole machine is at most 10% busy over 200 ms, so that what one
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

# One Redis measurement -> "ops/s p50 p99" (us)
redis_one() { # SET|GET pipeline
  redis-benchmark -p "$RPORT" -c 50 -d 100 -r 100000 -n "$OPS" -P "$2" -t "${1,,}" --csv 2>/dev/null \
    | grep "^\"$1\"" | tr -d '"' | awk -F, '{ printf "%d %d %d\n", $2, $5 * 1000, $7 * 1000 }'
}

# One round of a row: troupe (the command given) and Redis back to back, troupe first in odd
# rounds and Redis first in even ones, each after `settle`. Prints "label|troupe fields|Redis
# fields" (space-separated fields become |-separated) for paired.py; a measurement that
# failed loses its round, not the run.
paired_round() { # round label SET|GET pipeline troupe-command...
  local r=$1 label=$2 test=$3 pl=$4 t='' rr=''
  shift 4
  if [ $((r % 2)) = 1 ]; then
    settle; t=$("$@") || t=''
    settle; rr=$(redis_one "$test" "$pl") || rr=''
  else
    settle; rr=$(redis_one "$test" "$pl") || rr=''
    settle; t=$("$@") || t=''
  fi
  if [ -n "$t" ] && [ -n "$rr" ]; then echo "$label|${t// /|}|${rr// /|}"
  else echo "round $r of \"$label\" failed (troupe: '$t', Redis: '$rr'); left out" >&2; fi
}
