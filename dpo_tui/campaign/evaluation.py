"""The eval stage's pure-ish service parts: interleaved specs, per-suite comparisons, the gate."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, get_args

from dpo_tui.campaign.specs import RolloutSpec
from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.eval import EVAL, Decision
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.suites import PlanTasks
from dpo_tui.domain.gate import GateCriteria, GateDecision, decide
from dpo_tui.domain.stats import compare
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.fold import CampaignState

ARMS = ("base", "tuned")


def suite_tasks(plan: Plan, tasks: PlanTasks, test_ids: list[str]) -> dict[str, list[str]]:
    out = {}
    if "test" in plan.eval.suites:
        out["test"] = sorted(test_ids)
    if "heldout" in plan.eval.suites and tasks.heldout:
        out["heldout"] = sorted(tasks.heldout)
    return out


def eval_specs(plan: Plan, tasks: PlanTasks, test_ids: list[str], run_id: str,
               models: dict[str, str]) -> list[RolloutSpec]:
    """Base and tuned through the same agent, prompts, iteration budget and seeds; the two
    arms alternate (base first on even positions, tuned first on odd) so drift hits both."""
    r = plan.rollouts
    specs, position = [], 0
    by_id = {**tasks.pool, **tasks.heldout}
    for suite, ids in suite_tasks(plan, tasks, test_ids).items():
        for seed in plan.eval.seeds:
            for task_id in ids:
                arms = ARMS if position % 2 == 0 else tuple(reversed(ARMS))
                position += 1
                for arm in arms:
                    specs.append(RolloutSpec(f"eval/{run_id}/{suite}/{task_id}/s{seed}/{arm}", by_id[task_id], "eval",
                                             models[arm], seed, r.max_iters, r.reflections, r.temperature,
                                             r.max_tokens, arm=arm, suite=suite, run_id=run_id))
    return specs


def _outcomes(campaign: Campaign, run_id: str, suite: str) -> tuple[dict, dict]:
    return outcomes(campaign.state, run_id, suite)


def outcomes(state: CampaignState, run_id: str, suite: str) -> tuple[dict, dict]:
    """Per task, each arm's pass/fail by seed, and each arm's metrics, from the folded rollouts
    (the runner records them; audit recomputes them from the same log)."""
    per_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"base": [], "tuned": []})
    metrics = {arm: {"rollouts": 0, "solved": 0, "iterations_solved": 0, "tokens": 0, "cost_usd": 0.0} for arm in ARMS}
    recs = sorted((r for r in state.part(ROLLOUTS).by_id.values()
                   if r.stage == "eval" and r.run_id == run_id and r.suite == suite), key=lambda r: (r.seed, r.rollout_id))
    for rec in recs:
        if rec.finished is None:  # an errored sample is no model failure: it is retried, never counted
            why = "errored on the API (a rerun retries it)" if rec.errored is not None else "has not finished"
            raise InputError(f"eval rollout {rec.rollout_id} {why}: no result is computed on missing samples")
        f, m = rec.finished, metrics[rec.arm]
        per_task[rec.task_id][rec.arm].append(bool(f["passed"]))
        m["rollouts"] += 1
        m["tokens"] += f["prompt_tokens"] + f["completion_tokens"]
        m["cost_usd"] += f["cost_usd"]
        if f["passed"]:
            m["solved"] += 1
            m["iterations_solved"] += f["iterations"]
    for m in metrics.values():
        solved = m["solved"]
        m["iterations_per_solved"] = m.pop("iterations_solved") / solved if solved else None
        m["tokens_per_solved"] = m["tokens"] / solved if solved else None
    return dict(per_task), metrics


def record_results(campaign: Campaign, plan: Plan, tasks: PlanTasks, run_id: str, test_ids: list[str],
                   serving: dict[str, str]) -> dict[str, Any]:
    results = {}
    for suite in suite_tasks(plan, tasks, test_ids):
        per_task, metrics = _outcomes(campaign, run_id, suite)
        comparison = suite_comparison(plan, per_task)
        campaign.append("eval.results", {"run_id": run_id, "suite": suite, "comparison": comparison.to_json(),
                                         "per_task": per_task, "metrics": metrics, "serving": serving}, actor="system")
        results[suite] = comparison
    return results


def suite_comparison(plan: Plan, per_task: dict[str, dict[str, list[bool]]]):
    """Base against tuned on one suite, as the plan asks (the runner's and audit's one way)."""
    return compare({t: v["base"] for t, v in per_task.items()}, {t: v["tuned"] for t, v in per_task.items()},
                   seed=plan.split.seed, k=plan.eval.k, level=1 - plan.rollback.alpha)


def gate_criteria(plan: Plan, results: dict[str, Any]) -> GateCriteria:
    rb = plan.rollback
    return GateCriteria(primary_suite=rb.primary_suite if rb.primary_suite in results else next(iter(results)),
                        min_improvement=rb.min_improvement, max_drop=rb.max_drop, alpha=rb.alpha)


def gate_decision(plan: Plan, results: dict[str, Any]):
    """(criteria, decision) of the gate on `results` under the plan's rollback criteria."""
    criteria = gate_criteria(plan, results)
    return criteria, decide(criteria, results)


def gate(campaign: Campaign, plan: Plan, run_id: str, results: dict[str, Any],
         look: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the gate: on the results (a fixed design), or the sequential eval's last look's."""
    criteria, d = gate_decision(plan, results)
    extra: dict[str, Any] = {}
    if look is not None:
        from dpo_tui.campaign.sequential_eval import gate_reason

        d = GateDecision(look["decision"], look["criterion"], gate_reason(look))
        extra["look"] = look["look"]
    campaign.append("decision.gate", {"run_id": run_id, "decision": d.decision, "criterion": d.criterion,
                                      "reason": d.reason, "criteria": criteria.__dict__,
                                      "plan_hash": campaign.state.part(PLAN).hash, **extra}, actor="system")
    return campaign.state.part(EVAL).runs[run_id].to_json()


def check_override_reason(reason: str) -> str:
    """The override's written reason, stripped; InputError when it is not a sentence."""
    if len(reason.strip()) < 10:
        raise InputError("an override needs a written reason (a sentence, at least 10 characters)")
    return reason.strip()


def decided_gate(campaign: Campaign, run_id: str | None = None) -> str:
    """The eval run whose gate an override changes (run_id None: the latest eval run);
    InputError when its gate has not decided."""
    e = campaign.state.part(EVAL)
    rid = run_id if run_id is not None else e.latest
    run = e.runs.get(rid or "")
    if run is None or run.gate_decision is None:
        raise InputError("the gate has not decided yet: nothing to override"
                         + (f" (run {run_id!r})" if run_id is not None else ""))
    return rid


def override_gate(campaign: Campaign, decision: str, *, reason: str, actor: str, run_id: str | None = None) -> str:
    """The operator's override (console and `dpo-tui override`) of the latest eval run's gate
    (or run_id's); returns the run id."""
    rid = decided_gate(campaign, run_id)
    override(campaign, rid, decision, reason=reason, actor=actor)
    return rid


def override(campaign: Campaign, run_id: str, decision: str, *, reason: str, actor: str) -> None:
    run = campaign.state.part(EVAL).runs.get(run_id)
    if run is None or run.gate_decision is None:
        raise InputError(f"run {run_id!r} has no gate decision to override")
    if decision not in get_args(Decision):
        raise InputError(f"a gate decision is one of {', '.join(get_args(Decision))}, not {decision!r}")
    if not actor.startswith("operator:"):
        raise InputError("only an operator can override the gate")
    check_override_reason(reason)
    if decision == run.decision:
        raise InputError(f"the decision is already {decision}: an override changes it")
    campaign.append("decision.gate_overridden", {"run_id": run_id, "decision": decision, "previous": run.decision,
                                                 "reason": reason.strip()}, actor=actor)
