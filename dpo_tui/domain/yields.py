"""The pair yield from the pilot's per-task outcomes, not its mean pass rate.

A task yields pairs only when its rollouts disagree: the funnel (domain/pairs.py) pairs the
task's best rollout with each other one and drops a pair whose programs are the same (or
repeat another pair's rejected program), whose two sides both pass, or whose score gap is
below `min_margin`, then keeps at most `per_task_cap` per task. A task whose pilot rollouts
all passed, or all failed with the same score, is therefore forecast to yield nothing.

Model: a task's rollouts are exchangeable draws from its own outcome distribution, which
the pilot estimates by its observed outcomes (passed, score). A pilot task's full set of R
rollouts is its pilot rollouts plus R - k draws from them; a drawn rollout repeats its
source's program as often as the task's pilot rollouts repeated each other's (the share of
pilot pairs with the same normalised program), else it is a new program. A train task the
pilot did not reach is like a pilot task picked at random. The expectation is a
seeded Monte Carlo over those draws through the funnel's own rules. The token budget and
leakage filters are not modelled (the pilot cannot see them; both are usually empty).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DRAWS = 300


@dataclass(frozen=True)
class Outcome:
    """One pilot rollout as the funnel sees it."""

    passed: bool
    score: float  # fraction of the task's tests passed
    program: str  # the final program, normalised (dedupe compares these)


def kept_pairs(outcomes: Sequence[Outcome], *, min_margin: float, per_task_cap: int | None) -> int:
    """Pairs the funnel keeps from one task's rollouts (best against each other one)."""
    if len(outcomes) < 2:
        return 0
    order = sorted(range(len(outcomes)), key=lambda i: (not outcomes[i].passed, -outcomes[i].score, i))
    best, seen, kept = outcomes[order[0]], set(), 0
    for i in order[1:]:
        r = outcomes[i]
        if r.program == best.program or not best.program.strip() or r.program in seen:
            seen.add(r.program)
            continue
        seen.add(r.program)
        if (best.passed and r.passed) or best.score - r.score < min_margin:
            continue
        kept += 1
    return kept if per_task_cap is None else min(kept, per_task_cap)


def task_expected_pairs(pilot: Sequence[Outcome], rollouts: int, *, min_margin: float, per_task_cap: int | None,
                        seed: int = 0, draws: int = DRAWS, fresh: bool = False) -> float:
    """E[kept pairs] of a task with `rollouts` rollouts whose outcomes follow its pilot ones:
    the pilot rollouts themselves plus `rollouts - len(pilot)` draws (or, `fresh`, all
    `rollouts` drawn: a task the pilot did not reach, modelled on this one)."""
    if not pilot:
        return 0.0
    if len({(o.passed, o.score) for o in pilot}) == 1 and (pilot[0].passed or min_margin > 0):
        return 0.0  # all passed, or all failed alike: every draw repeats that, no pair has a margin
    keep = [] if fresh else list(pilot[:rollouts])
    extra = rollouts - len(keep)
    if extra <= 0:
        return float(kept_pairs(keep, min_margin=min_margin, per_task_cap=per_task_cap))
    k = len(pilot)
    same = sum(pilot[i].program == pilot[j].program for i in range(k) for j in range(i + 1, k))
    repeat = same / (k * (k - 1) / 2) if k > 1 else 0.0
    rng = random.Random(seed)
    total = 0
    for d in range(draws):
        drawn = []
        for j in range(extra):
            src = rng.choice(pilot)
            fresh_program = rng.random() >= repeat
            drawn.append(Outcome(src.passed, src.score, f"\0draw {d}.{j}" if fresh_program else src.program))
        total += kept_pairs(keep + drawn, min_margin=min_margin, per_task_cap=per_task_cap)
    return total / draws


def expected_pairs(pilot: Mapping[str, Sequence[Outcome]], *, train_tasks: int, rollouts: int, min_margin: float,
                   per_task_cap: int | None, seed: int = 0, draws: int = DRAWS) -> tuple[float, int]:
    """(E[kept pairs] over all `train_tasks`, pilot tasks forecast to yield any): each pilot
    task from its own outcomes, each unreached task as the mean of the pilot tasks drawn fresh."""
    if not pilot:
        return 0.0, 0
    kw = dict(min_margin=min_margin, per_task_cap=per_task_cap, draws=draws)
    own = {t: task_expected_pairs(o, rollouts, seed=seed + i, **kw) for i, (t, o) in enumerate(sorted(pilot.items()))}
    unreached = max(train_tasks - len(pilot), 0)
    fresh = 0.0
    if unreached:
        fresh = sum(task_expected_pairs(o, rollouts, seed=seed + 7919 + i, fresh=True, **kw)
                    for i, (_t, o) in enumerate(sorted(pilot.items()))) / len(pilot)
    return sum(own.values()) + unreached * fresh, sum(1 for v in own.values() if v > 0)
