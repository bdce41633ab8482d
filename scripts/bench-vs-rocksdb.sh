#!/usr/bin/env bash
# The storage engine against RocksDB's db_bench on this machine, same sizes, one run.
# Usage: bash scripts/bench-vs-rocksdb.sh [NUM] [SYNC_NUM]     (defaults 1000000 20000)
# Needs db_bench (Debian: apt-get install rocksdb-tools) and about 2 GiB free under $TMPDIR.
# Prints each tool's own output; docs/BENCHMARKS.md holds the table made from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
NUM=${1:-1000000}
SYNC_NUM=${2:-20000}
command -v db_bench >/dev/null || {
  echo "db_bench not found: apt-get install rocksdb-tools" >&2
  exit 2
}
cargo build --release --quiet
TROUPE=${CARGO_TARGET_DIR:-$PWD/target}/release/troupe
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-rocksdb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "== machine"
nproc
lscpu | grep -E "Model name|^CPU\(s\)" || true
free -h | head -2

for c in 1 64; do
  echo "== troupe engine-bench, $c in flight"
  "$TROUPE" engine-bench --dir "$WORK/troupe" --num "$NUM" --sync-num "$SYNC_NUM" --concurrency "$c"
done

COMMON=(--num="$NUM" --key_size=16 --value_size=100 --compression_type=none --disable_wal=0 --sync=0)
# db_bench redraws its progress line with carriage returns; keep only the result lines.
grep_ops() { tr '\r' '\n' | grep -E "^(fillseq|fillrandom|overwrite|readrandom|compact) +:|[Ee]rror|Invalid" || true; }
echo "== db_bench fillseq"
db_bench --db="$WORK/rdb" "${COMMON[@]}" --threads=1 --benchmarks=fillseq 2>&1 | grep_ops
echo "== db_bench fillrandom, overwrite, readrandom, compact, readrandom (1 thread)"
db_bench --db="$WORK/rdb" "${COMMON[@]}" --threads=1 --use_existing_db=0 \
  --benchmarks=fillrandom,overwrite,readrandom,compact,readrandom 2>&1 | grep_ops
echo "== db_bench readrandom on the compacted database, 2 threads (one per core)"
db_bench --db="$WORK/rdb" "${COMMON[@]}" --threads=2 --use_existing_db=1 \
  --benchmarks=readrandom 2>&1 | grep_ops
echo "== db_bench readrandom after fillrandom + overwrite (no manual compaction), 2 threads"
db_bench --db="$WORK/rdb2" "${COMMON[@]}" --threads=1 --use_existing_db=0 \
  --benchmarks=fillrandom,overwrite 2>&1 | grep_ops
db_bench --db="$WORK/rdb2" "${COMMON[@]}" --threads=2 --use_existing_db=1 \
  --benchmarks=readrandom 2>&1 | grep_ops
echo "== db_bench fillrandom, 2 threads (one per core), NUM/2 each"
db_bench --db="$WORK/rdb3" --num=$((NUM / 2)) --key_size=16 --value_size=100 --compression_type=none \
  --disable_wal=0 --sync=0 --threads=2 --benchmarks=fillrandom 2>&1 | grep_ops
for t in 1 8; do
  echo "== db_bench fillrandom sync=1, $t thread(s)"
  db_bench --db="$WORK/rdb-sync$t" --num=$((SYNC_NUM / t)) --key_size=16 --value_size=100 \
    --compression_type=none --threads=$t --sync=1 --benchmarks=fillrandom 2>&1 | grep_ops
done
