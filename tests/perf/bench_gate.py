"""The gate's speed: comparisons and decisions over 5-40 tasks on 2 worker processes.

    .venv/bin/python tests/perf/bench_gate.py [--comparisons 6000] [--workers 2]

Each comparison is domain.stats.compare (the exact sign-flip test and its inverted
interval, pass@k, the sign test, McNemar) followed by domain.gate.decide, on base and
tuned outcomes drawn from the same per-task pass rates (A/A, the common case: most
comparisons do not reject), with tasks uniform in 5..40 and 1 or 3 seeds. Prints the wall
time, CPU seconds per comparison, the slowest design, and the A/A ship and rollback rates.
Target (issue 15): 6,000 comparisons and decisions under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dpo_tui.domain.gate import GateCriteria, decide  # noqa: E402
from dpo_tui.domain.stats import compare  # noqa: E402

TARGET_S = 600.0


def _chunk(args: tuple[int, int, int]) -> tuple[dict, float, dict]:
    seed, count, _worker = args
    rng = random.Random(seed)
    counts = {"ship": 0, "rollback": 0, "inconclusive": 0}
    by_design: dict = {}
    cpu0 = time.process_time()
    for rep in range(count):
        tasks, seeds = rng.randint(5, 40), rng.choice((1, 3))
        rates = [rng.random() for _ in range(tasks)]
        base = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(rates)}
        tuned = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(rates)}
        t0 = time.process_time()
        r = compare(base, tuned, seed=rep)
        counts[decide(GateCriteria("test"), {"test": r}).decision] += 1
        key = (tasks, seeds)
        n, total = by_design.get(key, (0, 0.0))
        by_design[key] = (n + 1, total + time.process_time() - t0)
    return counts, time.process_time() - cpu0, by_design


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comparisons", type=int, default=6000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    per = [args.comparisons // args.workers + (i < args.comparisons % args.workers) for i in range(args.workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        parts = list(pool.map(_chunk, [(1000 + i, n, i) for i, n in enumerate(per)]))
    wall = time.perf_counter() - t0
    counts = {k: sum(p[0][k] for p in parts) for k in parts[0][0]}
    cpu = sum(p[1] for p in parts)
    designs: dict = {}
    for _c, _cpu, by in parts:
        for key, (n, total) in by.items():
            m, t = designs.get(key, (0, 0.0))
            designs[key] = (m + n, t + total)
    slow_key, (slow_n, slow_t) = max(designs.items(), key=lambda kv: kv[1][1] / kv[1][0])
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"comparisons and decisions: {args.comparisons:,} over 5-40 tasks x 1 or 3 seeds on {args.workers} workers: "
          f"wall {wall:.1f} s, CPU {cpu / args.comparisons * 1000:.2f} ms per comparison")
    print(f"slowest design: {slow_key[0]} tasks x {slow_key[1]} seeds, {slow_t / slow_n * 1000:.2f} ms CPU each")
    print(f"A/A decisions: ship {counts['ship'] / args.comparisons:.2%}, rollback {counts['rollback'] / args.comparisons:.2%}"
          f" (each at most 2.5%)")
    met = wall < TARGET_S * args.comparisons / 6000
    print(f"target: 6,000 under {TARGET_S:.0f} s on 2 cores: {'met' if met else 'missed'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
