"""A sequential eval design (issue 21): the gate looks after each round of tasks and stops as
soon as its decision is settled, with the same error rates as the fixed design.

Rounds: the eval's tasks are split, in a seeded order fixed before any sample, into `looks`
rounds of about equal size; a round runs every seed of its tasks, so each look sees whole
tasks and the gate's statistic (the per-task difference) is the fixed design's.

Boundary: Lan-DeMets alpha spending with an O'Brien-Fleming shape, per side,
    spent(t) = 2 * (1 - Phi(z_{1 - a/2} / sqrt(t))),   a = alpha / 2,  t = tasks seen / planned,
and look j tests at the increment spent(t_j) - spent(t_{j-1}): the gate is run at that look
with alpha = 2 x increment (the sign-flip test and its interval at level 1 - 2 x increment).
Guarantee: the sign-flip test is exact (P(p <= x) <= x under no difference), so by the union
bound over looks the chance of shipping at any look in A/A is at most the sum of the
increments = a = alpha / 2, and the same for rolling back on max_drop; no simulation needed
for the bound (tests/domain/test_sequential.py measures it anyway). O'Brien-Fleming spends
almost nothing early: the last look keeps most of alpha, so power stays near the fixed
design's, and a large true effect stops the eval after a fraction of its samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from dpo_tui.domain.gate import INCONCLUSIVE, GateCriteria, GateDecision, decide
from dpo_tui.domain.stats import PairedComparison


def spent(t: float, one_sided: float) -> float:
    """Alpha spent by information fraction t (0 < t <= 1), O'Brien-Fleming-like, one side."""
    if t <= 0:
        return 0.0
    z = NormalDist()
    return min(one_sided, 2 * (1 - z.cdf(z.inv_cdf(1 - one_sided / 2) / math.sqrt(min(t, 1.0)))))


def look_alphas(fractions: Sequence[float], alpha: float) -> list[float]:
    """Per look, the one-sided level it tests at (the increments of `spent`); they sum to alpha/2."""
    if not fractions or any(b <= a for a, b in zip(fractions, fractions[1:])) or abs(fractions[-1] - 1) > 1e-9:
        raise ValueError(f"look fractions must increase to 1, got {list(fractions)}")
    out, before = [], 0.0
    for t in fractions:
        now = spent(t, alpha / 2)
        out.append(now - before)
        before = now
    return out


def rounds(task_ids: Sequence[str], looks: int, *, seed: int) -> list[list[str]]:
    """The tasks in `looks` rounds of about equal size, in a seeded order fixed before any sample."""
    if looks < 1:
        raise ValueError("a sequential eval needs at least one look")
    order = sorted(task_ids)
    random.Random(seed).shuffle(order)
    looks = min(looks, len(order)) or 1
    size, extra = divmod(len(order), looks)
    out, i = [], 0
    for j in range(looks):
        n = size + (j < extra)
        out.append(order[i:i + n])
        i += n
    return out


@dataclass(frozen=True)
class Look:
    """One look of the gate: which, over how many tasks, at what level, and what it said."""
    index: int
    tasks: int
    fraction: float
    one_sided_alpha: float
    decision: str
    criterion: str
    reason: str
    p_improve: float
    p_worse: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


def run_looks(criteria: GateCriteria, planned_tasks: int, round_sizes: Sequence[int],
              compare_at: Callable[[int, float], Mapping[str, PairedComparison]]) -> tuple[GateDecision, list[Look]]:
    """Look after each round; `compare_at(j, level)` gives every suite's comparison over the
    tasks of rounds 0..j at that level. Stops at the first look that ships or rolls back;
    inconclusive when the last look is."""
    fractions, seen = [], 0
    for n in round_sizes:
        seen += n
        fractions.append(seen / planned_tasks)
    fractions[-1] = 1.0
    looks: list[Look] = []
    decision = GateDecision(INCONCLUSIVE, "min_improvement", "no look ran")
    seen = 0
    for j, a in enumerate(look_alphas(fractions, criteria.alpha)):
        seen += round_sizes[j]
        results = compare_at(j, 1 - 2 * a)
        at = GateCriteria(criteria.primary_suite, criteria.min_improvement, criteria.max_drop, alpha=2 * a)
        decision = decide(at, results)
        primary = results[criteria.primary_suite]
        looks.append(Look(j + 1, seen, fractions[j], a, decision.decision, decision.criterion, decision.reason,
                          primary.p_improve, primary.p_worse))
        if decision.decision != INCONCLUSIVE:
            break
    return decision, looks
