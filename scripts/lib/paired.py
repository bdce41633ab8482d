#!/usr/bin/env python3
"""Summarises paired benchmark rounds (bench-vs-redis.sh, bench-cluster.sh) as a markdown table.

Each input line is one round of one row: troupe and Redis measured back to back (the scripts
alternate which goes first), so both saw the machine in the same phase (on a shared VM its
speed moves by 1.5x within minutes):

    label|t_ops|t_p50|t_p99|t_cpu|t_allocs|t_errors|r_ops|r_p50|r_p99

Each row of the table gives the median over its rounds of every figure, the range of ops/s,
and the median and range of the per-round ratio troupe / Redis (a ratio of two figures
taken minutes apart measures the machine as much as the code).

Usage: python3 scripts/lib/paired.py CPU_HEADER < rounds
"""
import statistics
import sys


def fmt_ops(values):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main():
    cpu_header = sys.argv[1] if len(sys.argv) > 1 else "node CPU per op"
    rows = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        label, *fields = line.split("|")
        try:
            t_ops, t_p50, t_p99, t_cpu, t_allocs, t_err, r_ops, r_p50, r_p99 = map(float, fields)
            if r_ops <= 0:
                raise ValueError("no Redis figure")
        except ValueError as e:
            print(f"paired.py: round left out ({e}): {line}", file=sys.stderr)
            continue
        rows.setdefault(label, []).append(
            dict(t_ops=t_ops, t_p50=t_p50, t_p99=t_p99, t_cpu=t_cpu, t_allocs=t_allocs,
                 t_err=t_err, r_ops=r_ops, r_p50=r_p50, r_p99=r_p99, ratio=t_ops / r_ops)
        )
    rounds = max((len(r) for r in rows.values()), default=0)
    print(f"| measurement ({rounds} rounds: median (range)) | troupe ops/s | p50 / p99 us "
          f"| {cpu_header} | allocs per op | errors (all rounds) | Redis ops/s | Redis p50 / p99 us "
          "| troupe / Redis |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, rs in rows.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        ratios = [r["ratio"] for r in rs]
        ratio = f"{statistics.median(ratios):.2f}"
        if len(rs) > 1:
            ratio += f" ({min(ratios):.2f}-{max(ratios):.2f})"
        print(
            f"| {label} | {fmt_ops([r['t_ops'] for r in rs])} | {med('t_p50'):.0f} / {med('t_p99'):.0f} "
            f"| {med('t_cpu'):.3g} | {med('t_allocs'):.1f} | {sum(r['t_err'] for r in rs):.0f} "
            f"| {fmt_ops([r['r_ops'] for r in rs])} | {med('r_p50'):.0f} / {med('r_p99'):.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
