"""Estimates against actual spend: the plan's estimate before the pilot and the calibrated one
after it, against what the campaign really spent, on the demo and on a QuixBugs campaign,
through the real runner and SDK against the embedded simulator (every figure simulated).

    .venv/bin/python tests/perf/bench_estimates.py [--json] [--skip-quixbugs]

Goals (issue 15): the calibrated total within 15% of the actual spend; before the pilot,
within a factor of 1.5. The last stdout line of --json is
{"campaigns": {name: {"before_usd", "calibrated_usd", "actual_usd", "before_ratio",
"calibrated_ratio", "by_stage": {...}, "pairs": {"forecast", "mean_based", "model", "exported"}}}}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dpo_tui.campaign.plan import demo_plan_path  # noqa: E402
from dpo_tui.campaign.runner import run_campaign  # noqa: E402
from dpo_tui.events.campaign import Campaign  # noqa: E402

SHARED = ROOT.parent / "shared"


def quixbugs_plan(tmp: Path) -> Path:
    text = demo_plan_path().read_text()
    text = (text.replace('train_test = ["fixtures"]', f'train_test = ["quixbugs:{SHARED / "benchmarks" / "quixbugs"}"]')
            .replace("prompt_tokens_per_call = 350 ", "prompt_tokens_per_call = 600 ")
            .replace("rollouts_per_task = 4", "rollouts_per_task = 2")
            .replace("test_cpu_seconds = 0.5", "test_cpu_seconds = 1.0")
            .replace('name = "demo:', 'name = "quixbugs estimates:'))
    path = tmp / "quixbugs.toml"
    path.write_text(text)
    return path


def measure(name: str, plan: Path, tmp: Path) -> dict:
    db = tmp / f"{name}.db"
    t0 = time.monotonic()
    result = run_campaign(plan, db, yes=True)
    with Campaign.open(db, readonly=True) as c:
        b = c.state.part("budget")
        spend = c.state.part("spend")
        before, cal = b.first, b.calibrated
        actual = spend.total_usd
        yld = b.pair_yield or {}
        export = c.state.part("pairs").export or {}
        pairs = {"forecast": yld.get("expected_pairs"), "mean_based": yld.get("mean_based_pairs"),
                 "model": yld.get("model"), "exported": export.get("pairs")}
        stages = {s: {"before": before["by_stage"][s]["usd"], "calibrated": (cal or before)["by_stage"][s]["usd"],
                      "actual": spend.by_stage.get(s, 0.0)} for s in before["by_stage"]}
    return {"status": result.status, "seconds": round(time.monotonic() - t0, 1),
            "before_usd": before["total_usd"], "calibrated_usd": (cal or before)["total_usd"], "actual_usd": actual,
            "before_ratio": before["total_usd"] / actual if actual else None,
            "calibrated_ratio": (cal or before)["total_usd"] / actual if actual else None, "by_stage": stages,
            "pairs": pairs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-quixbugs", action="store_true")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        out["demo"] = measure("demo", demo_plan_path(), tmp)
        if not args.skip_quixbugs:
            out["quixbugs"] = measure("quixbugs", quixbugs_plan(tmp), tmp)
    for name, r in out.items():
        print(f"{name:9s} {r['status']:6s} actual ${r['actual_usd']:.4f}  before the pilot ${r['before_usd']:.4f} "
              f"({r['before_ratio']:.2f}x)  calibrated ${r['calibrated_usd']:.4f} ({r['calibrated_ratio']:.2f}x)  "
              f"{r['seconds']} s", file=sys.stderr)
        p = r["pairs"]
        print(f"    pairs     forecast {p['forecast'] or 0:.1f} ({p['model']}), mean-based "
              f"{p['mean_based'] if p['mean_based'] is not None else float('nan'):.1f}, exported {p['exported']}",
              file=sys.stderr)
        for stage, v in r["by_stage"].items():
            print(f"    {stage:9s} before ${v['before']:.4f}  calibrated ${v['calibrated']:.4f}  actual "
                  f"${v['actual']:.4f}", file=sys.stderr)
    if args.json:
        print(json.dumps({"campaigns": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
