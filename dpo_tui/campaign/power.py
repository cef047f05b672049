"""`dpo-tui power`: per eval suite, what the planned eval can detect before any spend."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dpo_tui.campaign.budget import budget_inputs, split_sizes
from dpo_tui.campaign.plan import Plan
from dpo_tui.domain.costs import estimate
from dpo_tui.domain.power import PRIOR, RateModel, suite_power
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.prices import PriceTable

POWER = 0.8


def suite_sizes(plan: Plan, n_pool: int, n_heldout: int) -> dict[str, int]:
    """Tasks per eval suite the plan implies before the split exists."""
    n_test = round(n_pool * plan.split.test_fraction)
    sizes = {"test": n_test, "heldout": n_heldout}
    return {s: sizes[s] for s in plan.eval.suites if sizes[s] > 0}


def eval_cost(plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int, tasks: int) -> float:
    """The eval and endpoint stages' estimate for an eval of `tasks` tasks x the plan's seeds:
    endpoint minutes from that eval's volume (or, when the plan fixes eval.endpoint_minutes
    for its planned eval, that figure scaled up in proportion to the tasks)."""
    train, planned = split_sizes(plan, n_pool, n_heldout)
    inp = budget_inputs(plan, prices, train_tasks=train, eval_tasks=tasks)
    if inp.endpoint_minutes is not None:
        inp = replace(inp, endpoint_minutes=inp.endpoint_minutes * max(1.0, tasks / max(planned, 1)))
    est = estimate(inp)
    return round(est.by_stage["eval"].usd + est.by_stage["endpoint"].usd, 4)


def pilot_rates(campaign: Campaign | None) -> RateModel | None:
    """The eval tasks' pass-rate model from the campaign's pilot (its per-task pass counts),
    or None when there is no pilot yet or no pilot task ran twice."""
    from dpo_tui.campaign.budget import pilot_outcomes
    from dpo_tui.campaign.state.budget import BUDGET

    if campaign is None:
        return None
    b = campaign.state.part(BUDGET)
    if b.calibrated is None or not b.pilot_rollout_ids:
        return None
    counts = [(sum(o.passed for o in outs), len(outs)) for outs in pilot_outcomes(campaign, b.pilot_rollout_ids).values()]
    return RateModel.from_pilot(counts, what=f"the pilot's per-task pass rates")


def plan_power(plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int, trials: int = 1000,
               rates: RateModel | None = None) -> dict[str, Any]:
    """Per eval suite what the planned eval can detect, from `rates` (the pilot's) or the prior."""
    rb, seeds = plan.rollback, len(plan.eval.seeds)
    suites = {}
    for name, tasks in suite_sizes(plan, n_pool, n_heldout).items():
        p = suite_power(tasks, seeds, alpha=rb.alpha, bar=rb.min_improvement, max_drop=rb.max_drop, power=POWER,
                        trials=trials, seed=plan.split.seed, rates=rates, looks=plan.eval.looks)
        out = p.to_json()
        out["cost_usd"] = (None if p.tasks_needed is None else
                           eval_cost(plan, prices, n_pool=n_pool, n_heldout=n_heldout, tasks=p.tasks_needed))
        out["planned_cost_usd"] = eval_cost(plan, prices, n_pool=n_pool, n_heldout=n_heldout, tasks=tasks)
        if out.get("sequential"):  # the sequential design's expected cost, as a share of the planned one
            q = out["sequential"]
            q["expected_cost_usd"] = out["planned_cost_usd"] * q["expected_cost_share"]
            q["no_effect_cost_usd"] = out["planned_cost_usd"] * q["no_effect_cost_share"]
            q["design"] = plan.eval.design
        suites[name] = out
    used = rates or RateModel()
    return {"alpha": rb.alpha, "power": POWER, "min_improvement": rb.min_improvement, "prior": PRIOR,
            "design": plan.eval.design, "looks": plan.eval.looks,
            "source": used.source, "rates": used.label, "mean_pass_rate": used.mean, "between_task_variance": used.spread,
            "trials": trials, "suites": suites}


def detect_text(s: dict[str, Any], alpha: float) -> str:
    """What one suite's planned eval can detect, in words: "can only detect +37 points" or
    "cannot detect any effect (5 tasks: ...)"."""
    if s["detectable"]:
        return f"can only detect +{s['mde'] * 100:.0f} points or more"
    if s["tasks"] < 64 and 2 ** s["tasks"] * alpha / 2 < 1:
        return (f"cannot detect any effect ({s['tasks']} tasks: the exact test cannot reject at alpha {alpha:g})")
    return "cannot detect any effect (none reaches 80% power)"


def power_summary(out: dict[str, Any]) -> str:
    """One line per plan for a confirmation: each suite's planned eval and what it can detect."""
    parts = [f"{name} ({s['tasks']} tasks x {s['seeds']} seeds) {detect_text(s, out['alpha'])}"
             for name, s in out["suites"].items()]
    src = "from the pilot's per-task pass rates" if out.get("source") == "pilot" else "under the prior, no pilot yet"
    return f"Power ({src}): this eval " + "; ".join(parts) if parts else "Power: no eval suite planned"


def power_lines(out: dict[str, Any], plan_name: str) -> list[str]:
    lines = [f"Power of the gate for {plan_name}: alpha {out['alpha']:g}, {out['power']:.0%} power, "
             f"min_improvement {out['min_improvement']:+.1%}",
             (f"  source: {out['rates']}" if out.get("source") == "pilot" else
              f"  source: prior (no pilot data used): {out['prior']}")]
    for name, s in out["suites"].items():
        what = detect_text(s, out["alpha"])
        need = (f"{s['tasks_needed']} tasks x {s['seeds']} seeds detect {s['effect']:+.1%} "
                f"(eval ~${s['cost_usd']:.2f})" if s["tasks_needed"] else
                f"no design up to 2,000 tasks x {s['seeds']} seeds detects {s['effect']:+.1%}")
        lines.append(f"  {name}: {s['tasks']} tasks x {s['seeds']} seeds {what}; {need}; "
                     f"A/A ship {s['aa_ship_rate']:.1%}, rollback {s['aa_rollback_rate']:.1%} "
                     f"({out['trials']} trials)")
        if s.get("sequential"):
            q = s["sequential"]
            lines.append(f"    at {q['effect']:+.1%}: fixed design power {q['fixed_power']:.0%} (eval ~${s['planned_cost_usd']:.2f}); "
                         f"sequential, {q['looks']} looks (O'Brien-Fleming spending), power {q['sequential_power']:.0%}, "
                         f"expected cost {q['expected_cost_share']:.0%} of it (~${q['expected_cost_usd']:.2f}); "
                         f"with no effect {q['no_effect_cost_share']:.0%} (~${q['no_effect_cost_usd']:.2f}); "
                         f"the plan's eval.design is {q['design']}")
        elif out.get("design") == "sequential":
            lines.append(f"    sequential, {out['looks']} looks (the plan's eval.design): nothing is detectable, so no "
                         f"look stops it early: it runs every round, at the fixed design's cost (~${s['planned_cost_usd']:.2f})")
    return lines


_MEMO: dict[tuple, dict[str, Any]] = {}


def campaign_power(campaign: Campaign | None, plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int,
                   trials: int = 1000) -> dict[str, Any]:
    """`dpo-tui power` for a campaign: the pilot's per-task pass rates once it ran, else the
    prior; the same numbers wherever they are shown (memoised on the plan and the pilot's rates:
    the simulation is seeded, so a repeat gives the same result)."""
    return power_for(plan, prices, n_pool=n_pool, n_heldout=n_heldout, trials=trials, rates=pilot_rates(campaign))


def power_for(plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int, trials: int = 1000,
              rates: RateModel | None = None) -> dict[str, Any]:
    key = (plan.hash(), n_pool, n_heldout, trials, rates, prices.date)
    if key not in _MEMO:
        _MEMO[key] = plan_power(plan, prices, n_pool=n_pool, n_heldout=n_heldout, trials=trials, rates=rates)
    return _MEMO[key]


def power_pane_lines(out: dict[str, Any]) -> list[str]:
    """The Budget pane's lines: per suite what the planned eval detects and what would detect +5 points."""
    src = "pilot's per-task pass rates" if out.get("source") == "pilot" else "prior, no pilot yet"
    lines = []
    for name, s in out["suites"].items():
        need = (f"{s['tasks_needed']} tasks x {s['seeds']} detect {s['effect'] * 100:+.0f} points "
                f"(eval ~${s['cost_usd']:.2f})" if s["tasks_needed"] else
                f"no design up to 2,000 tasks detects {s['effect'] * 100:+.0f} points")
        lines.append(f"power ({src}): {name} {s['tasks']} tasks x {s['seeds']} seeds {detect_text(s, out['alpha'])}; "
                     f"{need}")
    return lines or ["power: no eval suite planned"]
