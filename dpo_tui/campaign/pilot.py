"""The pilot's arithmetic, one place for the runner and both front ends: which of the paid
rollouts run first, how many that is, and what a share of the rollout stage's estimate costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from dpo_tui.campaign.plan import Plan

T = TypeVar("T")


def pilot_specs(specs: Sequence[T], n: int, rollouts_per_task: int, repeats: int) -> list[T]:
    """The pilot: the first `n` rollouts of the round-robin order (one per task while there
    are tasks left: the cost is calibrated on these, no task weighing double), then the second
    rollout (r1) of the first `repeats` of those tasks, so the pilot sees each task's spread of
    outcomes, which the per-task pair yield and the eval's power need. Nothing is extra: every
    pilot rollout is one of the campaign's paid rollouts, run earlier."""
    first = list(range(min(n, len(specs))))
    tasks = len(specs) // max(rollouts_per_task, 1)
    chosen = set(first)
    more = [tasks + i for i in range(min(repeats, n, tasks)) if rollouts_per_task >= 2 and tasks + i not in chosen]
    return [specs[i] for i in sorted(chosen | set(more))]


def pilot_plan(plan: Plan, specs: Sequence[T]) -> tuple[list[T], list[T]]:
    """(the pilot's rollouts, the ones its cost is calibrated on: one per task)."""
    r = plan.rollouts
    n = min(r.pilot_rollouts, len(specs))
    repeats = r.pilot_repeats if r.pilot_repeats is not None else n // 2
    return pilot_specs(specs, n, r.rollouts_per_task, repeats), list(specs[:n])


def pilot_size(plan: Plan, train_tasks: int) -> int:
    """How many rollouts the pilot runs for `train_tasks` train tasks (pilot_plan's count)."""
    return len(pilot_plan(plan, list(range(train_tasks * plan.rollouts.rollouts_per_task)))[0])


def rollouts_usd(estimate: dict[str, Any] | None, rollouts: int, total: int) -> float | None:
    """The point estimate of `rollouts` of the stage's `total` (the stage's estimate per
    rollout); None without a logged estimate."""
    if estimate is None:
        return None
    return estimate["by_stage"]["rollouts"]["usd"] * rollouts / max(total, 1)
