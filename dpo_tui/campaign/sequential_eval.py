"""A sequential eval (plan `eval.design = "sequential"`, issue 21): the stage's and audit's one way.

The eval's tasks are cut into rounds before any sample (domain.sequential.rounds, seeded by the
split's seed; each suite is cut into as many rounds as the primary suite, a shorter suite's last
rounds empty); a round runs every seed of its tasks, base and tuned. After each round the gate
looks at every task seen so far, at the level the O'Brien-Fleming spending gives that look
(domain.sequential.look_alphas over the primary suite's information fraction), and the look is
logged as `eval.look`: continue, or ship / rollback (the eval stops there), or inconclusive at
the last look. The gate's decision is the last look's. Audit recomputes each look from the
logged samples with these same functions (campaign/rederive_looks.py)."""

from __future__ import annotations

from typing import Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.domain.gate import INCONCLUSIVE, GateCriteria, decide
from dpo_tui.domain.sequential import look_alphas, rounds
from dpo_tui.domain.stats import compare
from dpo_tui.events.fold import CampaignState

CONTINUE = "continue"


def sequential(plan: Plan) -> bool:
    return plan.eval.design == "sequential"


def suite_ids(plan: Plan, test_ids: list[str], heldout_ids: list[str]) -> dict[str, list[str]]:
    """The eval's task ids per suite, as evaluation.suite_tasks gives them."""
    out = {}
    if "test" in plan.eval.suites:
        out["test"] = sorted(test_ids)
    if "heldout" in plan.eval.suites and heldout_ids:
        out["heldout"] = sorted(heldout_ids)
    return out


def primary_suite(plan: Plan, suites: dict[str, Any]) -> str:
    rb = plan.rollback.primary_suite
    return rb if rb in suites else next(iter(suites))


def eval_rounds(plan: Plan, suites: dict[str, list[str]]) -> list[dict[str, list[str]]]:
    """Per round, each suite's tasks in it (fixed by the plan and the task ids alone)."""
    primary = primary_suite(plan, suites)
    n = len(rounds(suites[primary], plan.eval.looks, seed=plan.split.seed))
    per = {}
    for suite, ids in suites.items():
        cut = rounds(ids, n, seed=plan.split.seed) if ids else []
        per[suite] = cut + [[] for _ in range(n - len(cut))]
    return [{suite: per[suite][j] for suite in suites} for j in range(n)]


def fractions(plan: Plan, plan_rounds: list[dict[str, list[str]]]) -> list[float]:
    """The primary suite's information fraction at each look (tasks seen / planned)."""
    primary = primary_suite(plan, plan_rounds[0])
    planned = sum(len(r[primary]) for r in plan_rounds) or 1
    out, seen = [], 0
    for r in plan_rounds:
        seen += len(r[primary])
        out.append(seen / planned)
    out[-1] = 1.0
    return out


def _seen_outcomes(state: CampaignState, run_id: str, suite: str, tasks: set[str]) -> dict[str, dict[str, list[bool]]]:
    """Per seen task, each arm's pass/fail by seed (evaluation.outcomes' order), finished samples only."""
    per: dict[str, dict[str, list[bool]]] = {}
    recs = sorted((r for r in state.part(ROLLOUTS).by_id.values() if r.stage == "eval" and r.run_id == run_id
                   and r.suite == suite and r.task_id in tasks), key=lambda r: (r.seed, r.rollout_id))
    for rec in recs:
        if rec.finished is not None:
            per.setdefault(rec.task_id, {"base": [], "tuned": []})[rec.arm].append(bool(rec.finished["passed"]))
    return per


def look(state: CampaignState, plan: Plan, run_id: str, plan_rounds: list[dict[str, list[str]]],
         j: int) -> dict[str, Any]:
    """The `eval.look` payload after round j (0-based): the gate over rounds 0..j at that look's level."""
    alphas = look_alphas(fractions(plan, plan_rounds), plan.rollback.alpha)
    a = alphas[j]
    suites = list(plan_rounds[0])
    primary = primary_suite(plan, plan_rounds[0])
    results, samples = {}, 0
    for suite in suites:
        seen = {t for r in plan_rounds[:j + 1] for t in r[suite]}
        per = _seen_outcomes(state, run_id, suite, seen)
        samples += sum(len(v["base"]) + len(v["tuned"]) for v in per.values())
        results[suite] = compare({t: v["base"] for t, v in per.items()}, {t: v["tuned"] for t, v in per.items()},
                                 seed=plan.split.seed, k=plan.eval.k, level=1 - 2 * a)
    rb = plan.rollback
    d = decide(GateCriteria(primary, rb.min_improvement, rb.max_drop, alpha=2 * a), results)
    last = j == len(plan_rounds) - 1
    p = results[primary]
    return {"run_id": run_id, "look": j + 1, "looks": len(plan_rounds),
            "tasks_seen": sum(len(r[primary]) for r in plan_rounds[:j + 1]),
            "tasks_planned": sum(len(r[primary]) for r in plan_rounds),
            "samples_seen": samples, "samples_planned": planned_samples(plan, plan_rounds),
            "fraction": fractions(plan, plan_rounds)[j], "one_sided_alpha": a, "level": 1 - 2 * a,
            "statistic": {"suite": primary, "delta": p.delta, "p_improve": p.p_improve, "p_worse": p.p_worse,
                          "ci_low": p.ci_low, "ci_high": p.ci_high},
            "decision": CONTINUE if d.decision == INCONCLUSIVE and not last else d.decision,
            "criterion": d.criterion, "reason": d.reason,
            "round_tasks": plan_rounds[j], "suites": {s: r.to_json() for s, r in results.items()}}


def planned_samples(plan: Plan, plan_rounds: list[dict[str, list[str]]]) -> int:
    return sum(len(ids) for r in plan_rounds for ids in r.values()) * len(plan.eval.seeds) * 2


def stopped(look_payload: dict[str, Any]) -> bool:
    return look_payload["decision"] != CONTINUE


def gate_reason(lk: dict[str, Any]) -> str:
    where = "the last look" if lk["look"] == lk["looks"] else "stopped early"
    return (f"sequential look {lk['look']}/{lk['looks']} ({where}, {lk['tasks_seen']}/{lk['tasks_planned']} tasks, "
            f"one-sided alpha {lk['one_sided_alpha']:.4f}): {lk['reason']}")


def summary(looks: list[dict[str, Any]], endpoint_usd: float | None = None,
            endpoint_minutes: float | None = None) -> dict[str, Any] | None:
    """What a sequential eval ran and skipped; the endpoint dollars and minutes the skipped
    samples would have cost, pro rata from the plan's estimate of the whole eval's."""
    if not looks:
        return None
    last = looks[-1]
    skipped = last["samples_planned"] - last["samples_seen"] if stopped(last) else 0
    share = skipped / last["samples_planned"] if last["samples_planned"] else 0.0
    return {"looks_run": len(looks), "looks_planned": last["looks"], "stopped_at": last["look"],
            "decision": last["decision"], "early": stopped(last) and last["look"] < last["looks"],
            "samples_run": last["samples_seen"], "samples_planned": last["samples_planned"], "samples_skipped": skipped,
            "skipped_share": share,
            "saved_usd": None if endpoint_usd is None else endpoint_usd * share,
            "saved_minutes": None if endpoint_minutes is None else endpoint_minutes * share}


def summary_text(s: dict[str, Any], simulated: bool) -> str:
    """One line for the console and the report."""
    where = (f"stopped at look {s['stopped_at']} of {s['looks_planned']} ({s['decision']})" if s["early"] else
             f"ran all {s['looks_planned']} looks" if s["stopped_at"] == s["looks_planned"] and s["decision"] != CONTINUE
             else f"{s['looks_run']} of {s['looks_planned']} looks so far")
    saved = ""
    if s["samples_skipped"] and s.get("saved_usd") is not None:
        mins = f", ~{s['saved_minutes']:.1f} endpoint min" if s.get("saved_minutes") is not None else ""
        saved = f"; saved ~${s['saved_usd']:.2f}{mins} (estimated from the plan's price{', simulated' if simulated else ''})"
    return (f"sequential eval: {where}; {s['samples_run']}/{s['samples_planned']} samples run, "
            f"{s['samples_skipped']} skipped{saved}")


def _minutes(a: str, b: str) -> float:
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return max(0.0, (datetime.strptime(b, fmt) - datetime.strptime(a, fmt)).total_seconds() / 60)


def run_summary(state: CampaignState, run_id: str | None) -> dict[str, Any] | None:
    """`summary` of run_id's sequential eval (None for a fixed one), its savings estimated from
    the eval endpoints' logged price and the serving minutes per sample this eval measured (ready
    to stopped, over the samples run): what the skipped samples would have kept them up."""
    from dpo_tui.campaign.state.eval import EVAL
    from dpo_tui.campaign.state.train import ENDPOINTS

    run = state.part(EVAL).runs.get(run_id or "")
    if run is None or not run.looks:
        return None
    last = run.looks[-1]
    usd = minutes = None
    eps = [e for e in state.part(ENDPOINTS).by_id.values() if e.get("role") in ("base", "tuned")
           and (e.get("run_id") == run_id or run_id in (e.get("adapters") or {}))
           and e.get("ready_at") and e.get("stopped_at")]
    if eps and last["samples_seen"]:
        per_sample = [(_minutes(e["ready_at"], e["stopped_at"]) / last["samples_seen"], e["price_cents_per_hour"])
                      for e in eps]
        skipped = last["samples_planned"] - last["samples_seen"] if stopped(last) else 0
        minutes = sum(m for m, _ in per_sample) * skipped
        usd = sum(m * skipped * cents / 100 / 60 for m, cents in per_sample)
    out = summary(run.looks, None, None)
    if out is not None:
        out["saved_usd"], out["saved_minutes"] = usd, minutes
    return out


def pane_lines(state: CampaignState, run_id: str | None, simulated: bool) -> list[str]:
    """The Eval pane's lines of a sequential eval: each look against its boundary, then where it
    stopped, what it skipped and saved (nothing for a fixed eval)."""
    s = run_summary(state, run_id)
    if s is None:
        return []
    from dpo_tui.campaign.state.eval import EVAL

    lines = [f"look {lk['look']}/{lk['looks']}: {lk['tasks_seen']}/{lk['tasks_planned']} tasks, "
             f"delta {lk['statistic']['delta']:+.1%}, p improve {lk['statistic']['p_improve']:.4f} / "
             f"worse {lk['statistic']['p_worse']:.4f} against {lk['one_sided_alpha']:.4f}: {lk['decision']}"
             for lk in state.part(EVAL).runs[run_id].looks]
    return [summary_text(s, simulated), *lines]
