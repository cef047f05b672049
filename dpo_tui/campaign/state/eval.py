"""Eval results, the gate's decision and overrides, as events and a part of the state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from dpo_tui.campaign.state.train import TRAINING
from dpo_tui.domain.stats import interval_text
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

Decision = Literal["ship", "rollback", "inconclusive"]


@event_type("eval.results", version=1)
class EvalResults(Payload):
    run_id: str
    suite: str
    comparison: dict[str, Any]  # domain.stats.PairedComparison
    per_task: dict[str, dict[str, list[bool]]]  # task -> {"base": [...], "tuned": [...]} by seed
    metrics: dict[str, dict[str, Any]]  # arm -> iterations/tokens per solved task, cost
    serving: dict[str, str]  # arm -> the chat model name it was served as


@event_type("decision.gate", version=1)
class GateDecided(Payload):
    run_id: str
    decision: Decision
    criterion: str
    reason: str
    criteria: dict[str, Any]
    plan_hash: str
    look: int | None = None  # a sequential eval: the look whose decision this is (its eval.look)


@event_type("eval.look", version=1)
class EvalLook(Payload):
    """One look of a sequential eval's gate after a round (campaign/sequential_eval.py)."""

    run_id: str
    look: int  # 1-based
    looks: int  # rounds planned
    tasks_seen: int  # of the primary suite, rounds 1..look
    tasks_planned: int
    samples_seen: int  # eval rollouts over every suite, both arms
    samples_planned: int
    fraction: float  # information fraction, the primary suite's tasks seen / planned
    one_sided_alpha: float  # the level this look tests at, each side (the spending's increment)
    level: float  # the interval's level at this look
    statistic: dict[str, Any]  # the primary suite's delta, p_improve, p_worse, interval
    decision: Literal["continue", "ship", "rollback", "inconclusive"]
    criterion: str
    reason: str
    round_tasks: dict[str, list[str]]  # suite -> the tasks of this look's round
    suites: dict[str, dict[str, Any]]  # suite -> the comparison at this look's level


@event_type("decision.gate_overridden", version=1)
class GateOverridden(Payload):
    run_id: str
    decision: Decision
    previous: Decision
    reason: str = Field(min_length=10, description="a written reason, at least a sentence")


def task_outcomes(per_task: dict[str, dict[str, list[bool]]]) -> dict[str, Any]:
    """Per task: base and tuned passes of their runs (seeds) and the result, "win" when the
    tuned model passed a larger share of its runs, "loss" when a smaller one, else "tie";
    and the suite's tally of each."""
    out: dict[str, dict[str, Any]] = {}
    for task, arms in sorted(per_task.items()):
        base, tuned = arms.get("base", []), arms.get("tuned", [])
        bk, bn, tk, tn = sum(base), len(base), sum(tuned), len(tuned)
        diff = tk * bn - bk * tn  # tk/tn against bk/bn without dividing (equal runs: tk against bk)
        out[task] = {"base_passed": bk, "base_runs": bn, "tuned_passed": tk, "tuned_runs": tn,
                     "result": "win" if diff > 0 else "loss" if diff < 0 else "tie"}
    results = [t["result"] for t in out.values()]
    return {"per_task": out, "wins": results.count("win"), "losses": results.count("loss"),
            "ties": results.count("tie")}


def _interval(c: dict[str, Any]) -> dict[str, Any]:
    """The gate's interval and p-value: "ci" is None when no task differs ("discordant": 0);
    "p_value" is the sign-flip test's two-sided p (the sign test's in logs written before it)."""
    ci = None if c["ci_low"] is None else [c["ci_low"], c["ci_high"]]
    return {"ci": ci, "ci_text": interval_text(c["ci_low"], c["ci_high"]), "discordant": c.get("discordant"),
            "p_value": c.get("perm_p", c["sign_p"]), "p_improve": c.get("p_improve"), "p_worse": c.get("p_worse"),
            "sign_p": c["sign_p"]}


@dataclass
class EvalRun:
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    decision: str | None = None
    decided_by: str | None = None
    criterion: str | None = None
    reason: str | None = None
    gate_decision: str | None = None
    overridden: bool = False
    looks: list[dict[str, Any]] = field(default_factory=list)  # a sequential eval's eval.look payloads

    def to_json(self) -> dict[str, Any]:
        suites = {}
        for suite, r in self.suites.items():
            c = r["comparison"]
            suites[suite] = {"base": {"pass@1": c["base_pass1"], f"pass@{c['k']}": c["base_passk"]},
                             "tuned": {"pass@1": c["tuned_pass1"], f"pass@{c['k']}": c["tuned_passk"]},
                             "delta": c["delta"], "ci_level": c["level"], **_interval(c),
                             "mcnemar_p": c["mcnemar_p"], "mde": c["mde"],
                             "tasks": c["tasks"], "runs": c["runs"], "serving": r["serving"],
                             **task_outcomes(r.get("per_task") or {})}
        return {"suites": suites, "decision": self.decision, "decided_by": self.decided_by,
                "criterion": self.criterion, "reason": self.reason, "gate_decision": self.gate_decision,
                "overridden": self.overridden, "looks": [_look_json(lk) for lk in self.looks]}


def _look_json(lk: dict[str, Any]) -> dict[str, Any]:
    return {k: lk[k] for k in ("look", "looks", "tasks_seen", "tasks_planned", "samples_seen", "samples_planned",
                               "fraction", "one_sided_alpha", "statistic", "decision", "criterion", "reason")}


@dataclass
class EvalState:
    runs: dict[str, EvalRun] = field(default_factory=dict)
    latest: str | None = None

    def to_json(self) -> dict[str, Any]:
        latest = self.runs[self.latest].to_json() if self.latest in self.runs else {
            "suites": {}, "decision": None, "decided_by": None}
        return {**latest, "run_id": self.latest, "runs": {k: r.to_json() for k, r in self.runs.items()}}


EVAL = state_part("eval", factory=EvalState, to_json=EvalState.to_json)


@on("eval.results")
def _results(state: CampaignState, event: StoredEvent) -> None:
    e: EvalState = state.part(EVAL)
    e.runs.setdefault(event.payload["run_id"], EvalRun()).suites[event.payload["suite"]] = dict(event.payload)
    e.latest = event.payload["run_id"]


@on("eval.look")
def _look(state: CampaignState, event: StoredEvent) -> None:
    e: EvalState = state.part(EVAL)
    e.runs.setdefault(event.payload["run_id"], EvalRun()).looks.append(dict(event.payload))
    e.latest = event.payload["run_id"]


@on("decision.gate")
def _gate(state: CampaignState, event: StoredEvent) -> None:
    run = state.part(EVAL).runs.setdefault(event.payload["run_id"], EvalRun())
    run.decision = run.gate_decision = event.payload["decision"]
    run.decided_by, run.criterion, run.reason = event.actor, event.payload["criterion"], event.payload["reason"]


@on("decision.gate_overridden")
def _override(state: CampaignState, event: StoredEvent) -> None:
    run = state.part(EVAL).runs.setdefault(event.payload["run_id"], EvalRun())
    run.decision, run.decided_by, run.reason = event.payload["decision"], event.actor, event.payload["reason"]
    run.criterion, run.overridden = "operator override", True


@invariant("gate-criteria-fixed-before-training", "decision.gate")
def _criteria_fixed(state: CampaignState, event: StoredEvent) -> str | None:
    run = state.part(TRAINING).runs.get(event.payload["run_id"])
    if run is None or run.plan_hash is None:
        return f"gate decision for run {event.payload['run_id']} without a logged training request"
    if run.plan_hash == event.payload["plan_hash"]:
        return None
    protocols = state.part("plan").protocols
    before, after = protocols.get(run.plan_hash), protocols.get(event.payload["plan_hash"])
    if before is None or after is None:
        return (f"gate used plan {event.payload['plan_hash'][:12]}, training plan {run.plan_hash[:12]}: "
                f"one of them was never recorded, so the criteria cannot be compared")
    changed = sorted(k for k in before if before[k] != after.get(k))
    if changed:
        return (f"gate used plan {event.payload['plan_hash'][:12]}, but training was requested under plan "
                f"{run.plan_hash[:12]}: the rollback criteria or eval protocol changed after training started "
                f"({', '.join(changed)})")
    return None  # another field of the plan changed (logged in plan.recorded's `changed`): the criteria hold


@invariant("override-by-operator", "decision.gate_overridden")
def _override_actor(state: CampaignState, event: StoredEvent) -> str | None:
    if not event.actor.startswith("operator:"):
        return f"gate overridden by {event.actor}; only an operator may override, with a written reason"
    return None
