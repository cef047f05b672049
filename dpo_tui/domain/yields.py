"""The pair yield from the pilot's per-task outcomes, not its mean pass rate.

A task yields pairs only when its rollouts disagree: the funnel (domain/pairs.py) pairs the
task's best rollout with each other one and drops a pair whose programs are the same (or
repeat another pair's rejected program), whose two sides both pass, or whose score gap is
below `min_margin`, then keeps at most `per_task_cap` per task. A task whose pilot rollouts
all passed, or all failed with the same score, is therefore forecast to yield nothing.

Model: a task's rollouts are exchangeable draws from its own outcome distribution, which
is unknown; two pilot rollouts of a task cannot pin it down, so its predictive is a Polya
urn (the posterior predictive of a Dirichlet process): the next rollout repeats one of the
task's outcomes so far (its pilot rollouts, then the ones drawn) with probability
k / (k + c), else it is drawn from all the pilot's outcomes pooled, and joins the urn. The
concentration c = (1 - rho) / rho comes from the pilot's intraclass correlation rho of the
rollouts' scores (one-way ANOVA over its tasks): when tasks differ much more than their
rollouts do (rho near 1, as on a suite of always-solved and never-solved bugs), a task
keeps to its own outcomes, so one whose pilot rollouts all passed, or all failed with the
same score, yields (nearly) nothing; when they do not (rho near 0), every task draws from
the pool. A drawn repeat of the task's own outcome repeats its program as often as the
task's pilot rollouts repeated each other's; a draw from the pool is a new program. A
train task the pilot did not reach starts from an empty urn. The expectation is a seeded
Monte Carlo through the funnel's own rules. The token budget and leakage filters are not
modelled (the pilot cannot see them; both are usually empty).
"""

from __future__ import annotations

import math
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


def concentration(pilot: Mapping[str, Sequence[Outcome]]) -> float:
    """c = (1 - rho) / rho from the intraclass correlation rho of the pilot rollouts' scores
    (one-way ANOVA estimator, unbalanced tasks: k0); inf when rho <= 0 (tasks alike), 0 when
    rho >= 1 (each task repeats itself). Needs a task with two rollouts (else 1.0, stated)."""
    groups = [[o.score for o in outs] for outs in pilot.values() if outs]
    n, t = sum(len(g) for g in groups), len(groups)
    if t < 2 or n <= t:
        return 1.0
    grand = sum(sum(g) for g in groups) / n
    ssw = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups)
    ssb = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups)
    msw, msb = ssw / (n - t), ssb / (t - 1)
    k0 = (n - sum(len(g) ** 2 for g in groups) / n) / (t - 1)
    if msb + (k0 - 1) * msw <= 0:
        return math.inf
    rho = (msb - msw) / (msb + (k0 - 1) * msw)
    if rho <= 0:
        return math.inf
    return 0.0 if rho >= 1 else (1 - rho) / rho


def task_expected_pairs(own: Sequence[Outcome], rollouts: int, *, pool: Sequence[Outcome], c: float,
                        min_margin: float, per_task_cap: int | None, seed: int = 0, draws: int = DRAWS) -> float:
    """E[kept pairs] of a task with `rollouts` rollouts: its pilot rollouts `own`, then draws
    from its Polya urn (own outcomes with weight k, the pooled pilot `pool` with weight c)."""
    keep = list(own[:rollouts])
    extra = rollouts - len(keep)
    if extra <= 0 or not (keep or pool):
        return float(kept_pairs(keep, min_margin=min_margin, per_task_cap=per_task_cap))
    k = len(own)
    same = sum(own[i].program == own[j].program for i in range(k) for j in range(i + 1, k))
    repeat = same / (k * (k - 1) / 2) if k > 1 else 0.0
    rng = random.Random(seed)
    total = 0
    for d in range(draws):
        urn = list(keep)
        for j in range(extra):
            own_draw = bool(urn) and (not pool or (not math.isinf(c) and rng.random() * (len(urn) + c) < len(urn)))
            if own_draw:
                src = rng.choice(urn)
                program = src.program if rng.random() < repeat else f"\0draw {d}.{j}"
            else:
                src = rng.choice(pool)
                program = f"\0draw {d}.{j}"
            urn.append(Outcome(src.passed, src.score, program))
        total += kept_pairs(urn, min_margin=min_margin, per_task_cap=per_task_cap)
    return total / draws


def expected_pairs(pilot: Mapping[str, Sequence[Outcome]], *, train_tasks: int, rollouts: int, min_margin: float,
                   per_task_cap: int | None, seed: int = 0, draws: int = DRAWS) -> tuple[float, int]:
    """(E[kept pairs] over all `train_tasks`, pilot tasks forecast to yield a pair or more):
    each pilot task from its own urn, each task the pilot did not reach from an empty one."""
    if not pilot:
        return 0.0, 0
    c = concentration(pilot)
    pool = [o for _t, outs in sorted(pilot.items()) for o in outs]
    kw = dict(pool=pool, c=c, min_margin=min_margin, per_task_cap=per_task_cap, draws=draws)
    own = {t: task_expected_pairs(o, rollouts, seed=seed + i, **kw) for i, (t, o) in enumerate(sorted(pilot.items()))}
    unreached = max(train_tasks - len(pilot), 0)
    fresh = task_expected_pairs([], rollouts, seed=seed + 7919, **{**kw, "draws": draws * 4}) if unreached else 0.0
    return sum(own.values()) + unreached * fresh, sum(1 for v in own.values() if v >= 1)
