"""The yield allocation's rounds from the log: one function for the rollouts stage and audit.

`round_decisions` is a pure function of the plan, the frozen split and the outcomes of the
paid rollouts finished before the round (domain/allocation.py decides): the stage appends
what it returns as `rollouts.allocated` events, and audit (campaign/rederive_alloc.py)
recomputes it from the same log and names a round that does not follow.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dpo_tui.campaign.pilot import pilot_plan
from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.allocation import ALLOCATION, AllocationState
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.domain.allocation import CEILING_FACTOR, Decision, Policy, first_round, next_round
from dpo_tui.domain.code import normalized
from dpo_tui.domain.yields import Outcome
from dpo_tui.events.fold import CampaignState


def train_order(plan: Plan, train: Iterable[str]) -> list[str]:
    """The train tasks in the rollouts' seeded round-robin order."""
    order = sorted(train)
    random.Random(f"{plan.rollouts.seed}:order").shuffle(order)
    return order


def rollout_id(task_id: str, k: int) -> str:
    return f"{task_id}/r{k}"


def rollout_seed(plan: Plan, order: Sequence[str], task_id: str, k: int) -> int:
    """Seed of rollout k of a task: the uniform order's index (k x tasks + the task's place)."""
    return plan.rollouts.seed + k * len(order) + order.index(task_id)


def policy(plan: Plan, train: int) -> Policy:
    r = plan.rollouts
    return Policy(total=train * r.rollouts_per_task, floor=r.floor_rollouts,
                  ceiling=CEILING_FACTOR * r.rollouts_per_task, round_size=max(1, r.concurrency),
                  min_margin=plan.pairs.min_margin, per_task_cap=plan.pairs.per_task_cap, seed=r.seed)


def pilot_counts(plan: Plan, order: Sequence[str]) -> dict[str, int]:
    """How many of each task's rollouts the pilot runs (a prefix r0, r1, ...)."""
    ids = [rollout_id(t, k) for k in range(plan.rollouts.rollouts_per_task) for t in order]
    counts: dict[str, int] = {}
    for rid in pilot_plan(plan, ids)[0]:
        t = rid.rsplit("/r", 1)[0]
        counts[t] = counts.get(t, 0) + 1
    return counts


def outcomes_of(state: CampaignState, ids: Iterable[str],
                program: Callable[[str], str]) -> tuple[dict[str, list[Outcome]], dict[str, list[float]]]:
    """(each task's outcomes as the funnel sees them, each task's costs) of finished rollouts
    `ids`, in rollout order; `program(rollout_id)` gives a rollout's final program."""
    by_id = state.part(ROLLOUTS).by_id
    outs: dict[str, list[tuple[int, Outcome, float]]] = {}
    for rid in ids:
        rec = by_id[rid]
        f = rec.finished
        score = f["tests_passed"] / f["tests"] if f.get("tests") else 0.0
        k = int(rid.rsplit("/r", 1)[1]) if "/r" in rid else 0
        outs.setdefault(rec.task_id, []).append((k, Outcome(bool(f["passed"]), score, normalized(program(rid) or "")),
                                                 float(f["cost_usd"])))
    ordered = {t: sorted(v, key=lambda x: x[0]) for t, v in outs.items()}
    return ({t: [o for _, o, _ in v] for t, v in ordered.items()},
            {t: [c for _, _, c in v] for t, v in ordered.items()})


def round_decisions(state: CampaignState, plan: Plan, train: Iterable[str], round_no: int, basis: Sequence[str],
                    before: AllocationState | tuple[dict[str, int], dict[str, str]],
                    program: Callable[[str], str]) -> list[Decision]:
    """Round `round_no`'s decisions from the rollouts `basis` finished before it and the
    allocation `before` it (the state part, or its (allocated, closed) at the round's start)."""
    order = train_order(plan, train)
    if round_no == 1:
        return first_round(order, plan.rollouts.floor_rollouts, pilot_counts(plan, order))
    allocated, closed = (before.allocated, before.closed) if isinstance(before, AllocationState) else before
    outcomes, costs = outcomes_of(state, basis, program)
    return next_round(round_no, order, allocated, set(closed), outcomes, costs, policy(plan, len(order)))


def payloads(round_no: int, decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    return [{"round": round_no, "decisions": len(decisions)} | d.to_json() for d in decisions]


def allocated_ids(state: CampaignState) -> list[tuple[str, int]]:
    """(task, k) of every rollout the allocation has given so far."""
    a: AllocationState = state.part(ALLOCATION)
    return [(t, k) for t, n in sorted(a.allocated.items()) for k in range(n)]


def forecast(state: CampaignState, plan: Plan, train: int) -> dict[str, Any]:
    """The allocation the plan uses and where it stands, for the Budget and Rollouts panes and
    `rollouts --json`: under yield, the rounds so far, what they allocated of the total, the
    tasks closed, and the kept pairs the rounds expect (domain.yields' urn through the funnel,
    each task at its allocated count, summed from its latest decision; None before round 2)."""
    r = plan.rollouts
    total = train * r.rollouts_per_task
    out: dict[str, Any] = {"allocation": r.allocation, "total": total, "rollouts_per_task": r.rollouts_per_task}
    if r.allocation != "yield":
        return out
    a: AllocationState = state.part(ALLOCATION)
    latest: dict[str, dict[str, Any]] = {}
    for rnd in sorted(a.by_round):
        if rnd > 1:
            for d in a.by_round[rnd]:
                latest[d["task_id"]] = d
    closed = list(a.closed.values())
    return out | {"floor": r.floor_rollouts, "ceiling": CEILING_FACTOR * r.rollouts_per_task, "rounds": a.rounds,
                  "allocated": a.total(), "complete": a.complete(total), "stopped": closed.count("stopped"),
                  "at_ceiling": closed.count("ceiling"),
                  "expected_pairs": sum(d["expected_pairs"] for d in latest.values()) if latest else None}


def forecast_line(f: dict[str, Any]) -> str:
    """`forecast` in one line, as both panes say it."""
    if f["allocation"] != "yield":
        return f"allocation: uniform, {f['rollouts_per_task']} rollouts per train task ({f['total']} in all)"
    line = (f"allocation: yield (floor {f['floor']}, at most {f['ceiling']} per task, {f['total']} in all): ")
    if not f["rounds"]:
        return line + "rounds start after the pilot"
    line += (f"round {f['rounds']}, {f['allocated']} of {f['total']} allocated, {f['stopped']} tasks stopped"
             + (f", {f['at_ceiling']} at their ceiling" if f["at_ceiling"] else ""))
    if f["expected_pairs"] is not None:
        line += f"; ~{f['expected_pairs']:.1f} kept pairs expected from the rounds so far"
    return line + ("; done" if f["complete"] else "")
