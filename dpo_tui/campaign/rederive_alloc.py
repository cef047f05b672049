"""Audit's allocation-derivation rule: each `rollouts.allocated` follows from the log before it.

A round's decisions are recomputed (campaign/allocation.round_decisions, the stage's own
function) from the plan in force, the frozen split, the paid rollouts finished when the
round's first event was folded and the allocation before the round; each logged decision
must be the recomputed one at its place. A round decided before every rollout allocated
earlier had finished, a rollout started beyond what was allocated, or a round cut short
when the next began, is named too. The Monte Carlo runs only here (audit), never in the fold.
"""

from __future__ import annotations

from typing import Any

from dpo_tui.campaign.rederive import DERIVATION, _same
from dpo_tui.campaign.state.allocation import ALLOCATION, AllocationState
from dpo_tui.events.fold import CampaignState, invariant
from dpo_tui.events.store import StoredEvent

FIELDS = ("task_id", "rollouts", "allocated", "expected_gain", "expected_pairs", "usd_per_rollout", "reason")
_CACHE: dict[tuple, list[dict[str, Any]] | str] = {}


_PLANS: dict[str, Any] = {}


def _plan(state: CampaignState):
    from dpo_tui.campaign.plan import Plan
    from dpo_tui.campaign.state.plan import PLAN

    h = state.part(PLAN).hash
    if h not in _PLANS:
        raw = state.part(DERIVATION).plans.get(h)
        _PLANS[h] = None if raw is None else Plan.model_validate(raw)
    return _PLANS[h]


def _expected(state: CampaignState, round_no: int) -> list[dict[str, Any]] | str:
    from dpo_tui.campaign import allocation
    from dpo_tui.campaign.state.split import SPLIT

    a: AllocationState = state.part(ALLOCATION)
    basis, (allocated, closed) = a.basis[round_no], a.before[round_no]
    plan, split = _plan(state), state.part(SPLIT).split
    if plan is None or split is None:
        return "a rollouts.allocated without a recorded plan and a split"
    key = (a.heads[round_no], round_no)  # the hash chain at the round's first event names the log before it
    if key in _CACHE:
        return _CACHE[key]
    if round_no > 1 and sum(allocated.values()) != len(basis):
        out: list[dict[str, Any]] | str = (f"round {round_no} was decided on {len(basis)} finished rollouts, but "
                                           f"{sum(allocated.values())} were allocated before it")
    else:
        programs = state.part(DERIVATION).programs
        decisions = allocation.round_decisions(state, plan, split.train, round_no, basis, (allocated, closed),
                                               lambda rid: programs.get(rid, ""))
        out = [d.to_json() for d in decisions]
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = out
    return out


@invariant("allocation-derivation", "rollouts.allocated")
def _allocation_derived(state: CampaignState, event: StoredEvent) -> str | None:
    a: AllocationState = state.part(ALLOCATION)
    p = event.payload
    r = p["round"]
    if r != a.rounds or (r > 1 and r - 1 not in a.by_round):
        return f"round {r} of the allocation is out of order (rounds logged: {sorted(a.by_round)})"
    if r > 1 and len(a.by_round[r - 1]) != a.by_round[r - 1][0]["decisions"]:
        return f"round {r - 1} logged {len(a.by_round[r - 1])} of its {a.by_round[r - 1][0]['decisions']} decisions"
    expected = _expected(state, r)
    if isinstance(expected, str):
        return expected
    i = len(a.by_round[r]) - 1
    if p["decisions"] != len(expected) or i >= len(expected):
        return f"round {r} logs {p['decisions']} decisions; the outcomes before it give {len(expected)}"
    want = expected[i]
    got = {k: p[k] for k in FIELDS}
    if not _same(got, want):
        return (f"round {r}: the allocation of {p['task_id']} ({p['rollouts']} rollouts, {p['reason']}) does not "
                f"follow from the outcomes before it: they give {want['task_id']} {want['rollouts']} rollouts "
                f"({want['reason']}, expected gain {want['expected_gain']:.3f})")
    return None


@invariant("allocation-derivation", "rollout.started")
def _started_as_allocated(state: CampaignState, event: StoredEvent) -> str | None:
    a: AllocationState = state.part(ALLOCATION)
    p = event.payload
    if p["stage"] != "rollouts" or a.rounds == 0:
        return None
    plan = _plan(state)
    if plan is None or plan.rollouts.allocation != "yield":
        return None
    tail = p["rollout_id"].rsplit("/r", 1)[-1]
    k = int(tail) if tail.isdigit() else -1
    if k < 0 or k >= a.allocated.get(p["task_id"], 0):
        return f"rollout {p['rollout_id']} started beyond the {a.allocated.get(p['task_id'], 0)} allocated to its task"
    return None
