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
concentration c = (1 - rho) / rho says how much a task keeps to itself (rho near 1, as on
a suite of always-solved and never-solved bugs: a task whose pilot rollouts all passed, or
all failed with the same score, yields nearly nothing) or draws from the pool (rho near 0).
A pilot repeats only a few tasks, so rho is not estimated as a point (four concordant
repeats would put it at 1 and forecast no pair from any fresh task): it is integrated over
its posterior on a grid, a uniform prior times the urn's own likelihood of each pilot
task's outcomes in order (`rho_posterior`), one c per Monte Carlo draw. A drawn repeat of
the task's own outcome repeats its program as often as the task's pilot rollouts repeated
each other's; a draw from the pool is a new program. A train task the pilot did not reach
starts from an empty urn. The expectation is a seeded
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


RHO_GRID = tuple((i + 0.5) / 20 for i in range(20))  # rho = 1 / (1 + c), uniform prior over it


def _kind(o: Outcome) -> tuple[bool, float]:
    return (o.passed, round(o.score, 6))


def rho_posterior(pilot: Mapping[str, Sequence[Outcome]]) -> list[tuple[float, float]]:
    """(rho, posterior weight) on RHO_GRID: a uniform prior times the urn's likelihood of each
    task's outcomes in order, each after the first repeating one of the task's own with
    weight (its count so far) or drawn from the pooled pilot outcomes with weight c x (its
    pooled share). Tasks seen once carry no information about rho (their factor is constant)."""
    pool = [_kind(o) for outs in pilot.values() for o in outs]
    share = {k: pool.count(k) / len(pool) for k in set(pool)} if pool else {}
    logs = []
    for rho in RHO_GRID:
        c, total = (1 - rho) / rho, 0.0
        for outs in pilot.values():
            seen: list[tuple[bool, float]] = []
            for o in outs:
                k = _kind(o)
                if seen:
                    total += math.log((seen.count(k) + c * share[k]) / (len(seen) + c))
                seen.append(k)
        logs.append(total)
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    z = sum(weights)
    return [(rho, w / z) for rho, w in zip(RHO_GRID, weights)]


def concentration_draws(pilot: Mapping[str, Sequence[Outcome]], draws: int) -> list[float]:
    """`draws` values of c at stratified quantiles of rho's posterior (deterministic)."""
    post = rho_posterior(pilot)
    out, acc, i = [], 0.0, 0
    for d in range(draws):
        q = (d + 0.5) / draws
        while i < len(post) - 1 and acc + post[i][1] < q:
            acc += post[i][1]
            i += 1
        rho = post[i][0]
        out.append((1 - rho) / rho)
    return out


def task_expected_pairs(own: Sequence[Outcome], rollouts: int, *, pool: Sequence[Outcome],
                        c: float | Sequence[float], min_margin: float, per_task_cap: int | None, seed: int = 0,
                        draws: int = DRAWS) -> float:
    """E[kept pairs] of a task with `rollouts` rollouts: its pilot rollouts `own`, then draws
    from its Polya urn (own outcomes with weight k, the pooled pilot `pool` with weight c;
    a sequence of c: one per draw, in turn)."""
    keep = list(own[:rollouts])
    extra = rollouts - len(keep)
    if extra <= 0 or not (keep or pool):
        return float(kept_pairs(keep, min_margin=min_margin, per_task_cap=per_task_cap))
    repeat = _repeat_share(own)
    rng = random.Random(seed)
    random_, choice = rng.random, rng.choice
    cs = [c] if isinstance(c, (int, float)) else list(c)
    # the urn as (passed, score, program) tuples; a draw's new program is its index j, an int
    # that equals no pilot program (a str) and no other new one: the funnel's dedupe sees the
    # same equalities as with distinct strings, at a fraction of the cost (this loop runs
    # draws x rollouts times for every forecast)
    start = [(o.passed, o.score, o.program) for o in keep]
    pooled = [(o.passed, o.score, o.program) for o in pool]
    total = 0
    for d in range(draws):
        urn, cd = list(start), cs[d % len(cs)]
        finite = not math.isinf(cd)
        for j in range(extra):
            n = len(urn)
            if n and (not pooled or (finite and random_() * (n + cd) < n)):
                src = choice(urn)
                urn.append((src[0], src[1], src[2] if random_() < repeat else j))
            else:
                src = choice(pooled)
                urn.append((src[0], src[1], j))
        total += _kept(urn, min_margin, per_task_cap)
    return total / draws


def _kept(urn: list[tuple[bool, float, str | int]], min_margin: float, per_task_cap: int | None) -> int:
    """kept_pairs on (passed, score, program) tuples, where an int program is a fresh one."""
    if len(urn) < 2:
        return 0
    order = sorted(range(len(urn)), key=lambda i: (not urn[i][0], -urn[i][1], i))
    b_passed, b_score, b_program = urn[order[0]]
    if isinstance(b_program, str) and not b_program.strip():
        return 0
    seen: set[str | int] = set()
    kept = 0
    for i in order[1:]:
        passed, score, program = urn[i]
        if program == b_program or program in seen:
            seen.add(program)
            continue
        seen.add(program)
        if (b_passed and passed) or b_score - score < min_margin:
            continue
        kept += 1
    return kept if per_task_cap is None else min(kept, per_task_cap)


def _repeat_share(own: Sequence[Outcome]) -> float:
    """How often two of the task's own rollouts ended with the same program."""
    k = len(own)
    same = sum(own[i].program == own[j].program for i in range(k) for j in range(i + 1, k))
    return same / (k * (k - 1) / 2) if k > 1 else 0.0


def _draw(urn: Sequence[Outcome], rng: random.Random, pool: Sequence[Outcome], cd: float, repeat: float,
          fresh: str) -> Outcome:
    """The urn's next outcome: one of its own with weight len(urn), else one from the pool."""
    own_draw = bool(urn) and (not pool or (not math.isinf(cd) and rng.random() * (len(urn) + cd) < len(urn)))
    if own_draw:
        src = rng.choice(urn)
        program = src.program if rng.random() < repeat else fresh
    else:
        src = rng.choice(pool)
        program = fresh
    return Outcome(src.passed, src.score, program)


def repeat_shares(tasks: Mapping[str, Sequence[Outcome]], weight: float = 3.0) -> dict[str, float]:
    """Each task's chance that a drawn repeat of its own outcome repeats its program too: its own
    share of same-program pairs shrunk toward the pooled share with `weight` pairs' worth of
    prior (two rollouts alone say 0 or 1; one says nothing, and would forecast every further
    rollout a new program, which dedupe then drops)."""
    def pairs(outs: Sequence[Outcome]) -> tuple[int, int]:
        k = len(outs)
        return sum(outs[i].program == outs[j].program for i in range(k) for j in range(i + 1, k)), k * (k - 1) // 2

    counts = {t: pairs(o) for t, o in tasks.items()}
    same, total = sum(s for s, _ in counts.values()), sum(n for _, n in counts.values())
    pooled = same / total if total else 0.0
    return {t: (s + weight * pooled) / (n + weight) for t, (s, n) in counts.items()}


def task_pairs_curve(own: Sequence[Outcome], extra: int, *, pool: Sequence[Outcome], c: Sequence[float],
                     min_margin: float, per_task_cap: int | None, seed: int, draws: int = DRAWS,
                     repeat: float | None = None) -> list[float]:
    """E[kept pairs] of a task with len(own), len(own) + 1, ..., len(own) + extra rollouts, every
    count on the same Monte Carlo draws (each draw's urn extended one outcome at a time), so
    the differences are marginal gains, not two estimates' noise. `repeat`: the chance a
    drawn repeat of an own outcome repeats its program (default: the task's own share)."""
    now = float(kept_pairs(own, min_margin=min_margin, per_task_cap=per_task_cap))
    if extra <= 0 or not (own or pool):
        return [now] * (extra + 1)
    repeat = _repeat_share(own) if repeat is None else repeat
    rng = random.Random(seed)
    sums = [0.0] * extra
    for d in range(draws):
        urn, cd = list(own), c[d % len(c)]
        for j in range(extra):
            urn.append(_draw(urn, rng, pool, cd, repeat, f"\0draw {d}.{j}"))
            sums[j] += kept_pairs(urn, min_margin=min_margin, per_task_cap=per_task_cap)
    return [now] + [v / draws for v in sums]


def expected_pairs(pilot: Mapping[str, Sequence[Outcome]], *, train_tasks: int, rollouts: int, min_margin: float,
                   per_task_cap: int | None, seed: int = 0, draws: int = DRAWS) -> tuple[float, int]:
    """(E[kept pairs] over all `train_tasks`, pilot tasks forecast to yield a pair or more):
    each pilot task from its own urn, each task the pilot did not reach from an empty one."""
    if not pilot:
        return 0.0, 0
    pool = [o for _t, outs in sorted(pilot.items()) for o in outs]
    kw = dict(pool=pool, min_margin=min_margin, per_task_cap=per_task_cap)
    cs = concentration_draws(pilot, draws)
    own = {t: task_expected_pairs(o, rollouts, seed=seed + i, c=cs, draws=draws, **kw)
           for i, (t, o) in enumerate(sorted(pilot.items()))}
    unreached = max(train_tasks - len(pilot), 0)
    fresh = (task_expected_pairs([], rollouts, seed=seed + 7919, c=concentration_draws(pilot, draws * 4),
                                 draws=draws * 4, **kw) if unreached else 0.0)
    return sum(own.values()) + unreached * fresh, sum(1 for v in own.values() if v >= 1)
