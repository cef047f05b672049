"""Spend where it buys information (issue 21): yield-aware rollout allocation against uniform,
and the sequential eval against the fixed one, through the real engine and SDK against the
embedded simulator (simulated figures: compare ratios, not dollars).

    .venv/bin/python tests/perf/bench_adaptive.py [--quick] [--json] [--only alloc|eval]

1. Allocation (tests/perf/adaptive_alloc.py `measure_alloc`): two campaigns of one plan on
   QuixBugs' train split, `rollouts.allocation` uniform then yield, at the same cap and total
   of rollouts; kept pairs after the funnel per dollar of the log's spend.
2. Eval (tests/perf/adaptive_eval.py `measure_eval`): fixed and sequential designs run on
   QuixBugs test and HumanEvalFix held-out, each with a true effect (a trained model) and
   with none (learning rate 1e-8); dollars from the log. The sequential design's A/A ship and
   rollback rates and both designs' power come from simulating the gate over 2,000 trials.

Goals (the issue's): yield_pairs_per_usd >= 1.5 x uniform; eval_sequential_usd <= 0.7 x fixed
with a true effect and no more than fixed without; A/A rates within alpha/2 plus Monte Carlo
error; sequential power at most 5 points below fixed. The last stdout line of --json is
{"uniform_pairs_per_usd", "yield_pairs_per_usd", "eval_fixed_usd", "eval_sequential_usd",
"sequential_aa_ship_rate", "sequential_aa_rollback_rate", "fixed_power", "sequential_power"}
plus the figures behind them; the exit code is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

KEYS = ("uniform_pairs_per_usd", "yield_pairs_per_usd", "eval_fixed_usd", "eval_sequential_usd",
        "sequential_aa_ship_rate", "sequential_aa_rollback_rate", "fixed_power", "sequential_power")
ALPHA = 0.05  # the demo plan's rollback.alpha, which the eval bench's plans keep


def goals(out: dict) -> dict[str, bool]:
    """Each goal of the issue that this run measured: met or not."""
    met: dict[str, bool] = {}
    if out.get("uniform_pairs_per_usd") and out.get("yield_pairs_per_usd") is not None:
        met["yield >= 1.5x uniform pairs/$"] = out["yield_pairs_per_usd"] >= 1.5 * out["uniform_pairs_per_usd"]
    if "eval_fixed_usd_effect" in out:
        met["sequential <= 0.7x fixed with an effect"] = out["sequential_cost_ratio_effect"] <= 0.7
        met["sequential <= fixed with none"] = out["sequential_cost_ratio_null"] <= 1.0 + 1e-9
    if "sequential_aa_ship_rate" in out:
        trials = out.get("aa_trials", 2000)
        mc = 2 * math.sqrt((ALPHA / 2) * (1 - ALPHA / 2) / trials)  # two standard errors at alpha/2
        met["A/A ship <= alpha/2 + MC error"] = out["sequential_aa_ship_rate"] <= ALPHA / 2 + mc
        met["A/A rollback <= alpha/2 + MC error"] = out["sequential_aa_rollback_rate"] <= ALPHA / 2 + mc
        met["power within 5 points of fixed"] = out["sequential_power"] >= out["fixed_power"] - 0.05
    return met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs of both parts (minutes)")
    ap.add_argument("--json", action="store_true", help="the last stdout line is the JSON object")
    ap.add_argument("--only", choices=("alloc", "eval"), help="one part only")
    args = ap.parse_args(argv)

    def say(*a: object) -> None:
        print(*a, file=sys.stderr if args.json else sys.stdout, flush=True)

    t0, out = time.perf_counter(), {"simulated": True}
    if args.only in (None, "alloc"):
        from adaptive_alloc import measure_alloc

        out.update(measure_alloc(args.quick, say=say))
    if args.only in (None, "eval"):
        from adaptive_eval import measure_eval

        out.update(measure_eval(args.quick))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    met = goals(out)
    for name, ok in met.items():
        say(f"[simulated] {name}: {'met' if ok else 'MISSED'}")
    for key in KEYS:
        say(f"[simulated] {key} = {out.get(key)}")
    out["goals"] = met
    if args.json:
        print(json.dumps({**{k: out.get(k) for k in KEYS}, **out}))
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
