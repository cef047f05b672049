"""Campaign commands: estimate (more join as the stages land: run, demo)."""

from __future__ import annotations

import argparse
import json
import sys

from dpo_tui.campaign.budget import plan_estimate
from dpo_tui.campaign.plan import load_plan
from dpo_tui.campaign.suites import load_plan_tasks
from dpo_tui.errors import EXIT_OK
from dpo_tui.provider.prices import load_prices


def cmd_estimate(args: argparse.Namespace) -> int:
    prices = load_prices(args.prices)
    plan = load_plan(args.plan, prices=prices)
    tasks = load_plan_tasks(plan)
    inp, est = plan_estimate(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout))
    out = est.to_json()
    out["prices"] = {"source": prices.source, "date": prices.date}
    if plan.backend.kind == "simulator":
        out["backend"] = "simulated"
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return EXIT_OK
    label = " (simulated backend; prices from the table)" if plan.backend.kind == "simulator" else ""
    print(f"Estimate for {plan.campaign.name}{label}")
    print(f"  {inp.tasks} train tasks x {inp.rollouts_per_task} rollouts, {inp.calls_per_rollout:g} calls per rollout "
          f"(avg_iters {inp.avg_iters:g} + avg_reflections {inp.avg_reflections:g})")
    print(f"  {'stage':<10} {'calls':>10} {'tokens':>12} {'usd':>10} {'low':>10} {'high':>10}")
    for stage, s in est.by_stage.items():
        print(f"  {stage:<10} {s.calls:>10,.0f} {s.tokens:>12,.0f} {s.usd:>10.2f} {s.low_usd:>10.2f} {s.high_usd:>10.2f}")
    print(f"  {'total':<10} {est.calls:>10,.0f} {'':>12} {est.total_usd:>10.2f} {est.low_usd:>10.2f} {est.high_usd:>10.2f}")
    print(f"  cap ${plan.budget.cap_usd:.2f}; prices: {prices.source} ({prices.date})")
    if est.high_usd > plan.budget.cap_usd:
        print(f"  warning: the high end ${est.high_usd:.2f} is above the cap; the cap will stop the run before it is crossed")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate calls, tokens and dollars per stage for a plan",
                       description="The budget before any spend: per stage, with a low/high range.")
    p.add_argument("--plan", required=True, help="plan file (TOML)")
    p.add_argument("--prices", help="price table (default: the shipped, dated table)")
    p.add_argument("--json", action="store_true", help='print {"total_usd", "low_usd", "high_usd", "calls", "by_stage"}')
    p.set_defaults(func=cmd_estimate)
