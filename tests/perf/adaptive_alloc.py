"""Kept pairs per dollar, uniform against yield allocation, from real runs on QuixBugs.

    python tests/perf/adaptive_alloc.py [--quick] [--json] [--quixbugs PATH] [--generator serverless|dedicated]

Two campaigns of the same plan but `rollouts.allocation` ("uniform", then "yield"), each run
through its rollouts and pairs stages (the runner, the engine and the together SDK against the
embedded simulator, tests in the sandbox) on QuixBugs' train split at the same cap and the
same total of rollouts (train tasks x rollouts_per_task). Kept pairs are the funnel's (dedupe,
low margin, token budget, leakage, per-task cap) after the pairs stage; dollars are the log's
spend of the campaign (rollout calls, and a dedicated generator's billed minutes). Nothing in
the simulator is tuned for this: its seed and rates are the defaults.

`measure_alloc(quick)` returns uniform_pairs_per_usd, yield_pairs_per_usd, their ratio and
the counts behind them (tests/perf/bench_adaptive.py reads it); the last stdout line of
`--json` is that dict. `--quick`: rollouts_per_task 3, max_iters 4; otherwise 4 and 10 (the
issue's QuixBugs setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parents[0] / "shared" / "benchmarks"
GENERATORS = {"serverless": ('"Qwen/Qwen2.5-7B-Instruct-Turbo"', "serverless"),
              "dedicated": ('"Qwen/Qwen2.5-72B-Instruct-Turbo"', "dedicated")}


def _plan(quixbugs: Path, allocation: str, *, quick: bool, generator: str) -> str:
    from dpo_tui.campaign.plan import demo_plan_path

    model, serving = GENERATORS[generator]
    text = demo_plan_path().read_text()
    for old, new in (('train_test = ["fixtures"]', f'train_test = ["quixbugs:{quixbugs}"]'),
                     ("rollouts_per_task = 4", f"rollouts_per_task = {3 if quick else 4}"),
                     ("max_iters = 4", f"max_iters = {4 if quick else 10}"),
                     ("test_cpu_seconds = 0.5", f'test_cpu_seconds = 1.0\nallocation = "{allocation}"'),
                     ('generator = "Qwen/Qwen2.5-72B-Instruct-Turbo"', f"generator = {model}"),
                     ('generator_serving = "dedicated"', f'generator_serving = "{serving}"'),
                     ("cap_usd = 5.00", "cap_usd = 50.00"),
                     ("target_pairs = 20", "target_pairs = 40")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def _run(folder: Path, quixbugs: Path, allocation: str, *, quick: bool, generator: str) -> dict:
    from dpo_tui.campaign.runner import run_campaign
    from dpo_tui.campaign.state.allocation import ALLOCATION
    from dpo_tui.campaign.state.pairs import PAIRS
    from dpo_tui.campaign.state.rollouts import ROLLOUTS
    from dpo_tui.events.campaign import Campaign

    plan = folder / f"{allocation}.toml"
    plan.write_text(_plan(quixbugs, allocation, quick=quick, generator=generator))
    db = folder / f"{allocation}.db"
    t0 = time.monotonic()
    result = run_campaign(plan, db, until="pairs", yes=True)
    if result.exit_code != 0:
        raise RuntimeError(f"{allocation}: {result.message}")
    c = Campaign.open(db, readonly=True)
    try:
        st = c.state
        built = st.part(PAIRS).built
        kept = sum(1 for p in built["pairs"] if p["dropped_by"] is None)
        usd = st.parts["spend"].total_usd
        a = st.part(ALLOCATION)
        return {"kept_pairs": kept, "usd": round(usd, 6), "rollouts": st.part(ROLLOUTS).finished.get("rollouts", 0),
                "tasks_with_pairs": len({p["task_id"] for p in built["pairs"] if p["dropped_by"] is None}),
                "funnel": built["funnel"], "rounds": a.rounds, "stopped": sum(1 for v in a.closed.values()
                                                                               if v == "stopped"),
                "pairs_per_usd": round(kept / usd, 3) if usd else None, "seconds": round(time.monotonic() - t0, 1)}
    finally:
        c.close()


def measure_alloc(quick: bool, *, quixbugs: Path | None = None, generator: str = "serverless",
                  keep: Path | None = None, say=lambda *a: None) -> dict:  # noqa: ANN001
    """`keep`: leave the two campaigns there (else in a temporary folder, removed)."""
    quixbugs = quixbugs or SHARED / "quixbugs"
    out: dict = {"generator": generator, "quick": quick}
    with tempfile.TemporaryDirectory() as tmp:
        for allocation in ("uniform", "yield"):
            folder = (keep or Path(tmp)) / allocation
            folder.mkdir(parents=True, exist_ok=True)
            r = _run(folder, quixbugs, allocation, quick=quick, generator=generator)
            say(f"{allocation}: {r['kept_pairs']} kept pairs from {r['rollouts']} rollouts "
                f"({r['tasks_with_pairs']} tasks), ${r['usd']:.4f}, {r['pairs_per_usd']} pairs/$ "
                f"(rounds {r['rounds']}, stopped {r['stopped']}; {r['seconds']} s)")
            out[allocation] = r
    u, y = out["uniform"]["pairs_per_usd"], out["yield"]["pairs_per_usd"]
    out["uniform_pairs_per_usd"], out["yield_pairs_per_usd"] = u, y
    out["yield_over_uniform"] = round(y / u, 3) if u and y is not None else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quixbugs", type=Path, default=SHARED / "quixbugs")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true", help="print only the final JSON line")
    ap.add_argument("--generator", choices=sorted(GENERATORS), default="serverless",
                    help="serverless: the 7B Turbo, per token; dedicated: the 72B Turbo on its own endpoint, per minute")
    ap.add_argument("--keep", type=Path, help="keep the two campaign files in this folder")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    out = measure_alloc(args.quick, quixbugs=args.quixbugs, generator=args.generator, keep=args.keep, say=say)
    say(f"yield / uniform kept pairs per dollar: {out['yield_over_uniform']} (goal in issue 21: >= 1.5)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
