"""Yield-aware rollout allocation: the same total of rollouts, spent where pairs come from.

A task yields pairs only while its rollouts disagree (domain/pairs.py), so a fixed
`rollouts_per_task` spends most of its rollouts on tasks that can no longer yield one. The
allocation runs in rounds over the same total (train tasks x rollouts_per_task):

  round 1   every train task gets its floor (and the pilot's rollouts of it, already run)
  round n   once every rollout allocated before has finished, up to `round_size` rollouts go,
            one at a time, to the open task with the most expected new kept pairs per expected
            dollar (the next rollout's cost as the same urn draws it: `_usd`):
            E[pairs | k + 1 rollouts] - E[pairs | k] from the task's outcomes so far
            through domain.yields' Polya urn and the funnel's own rules (a drawn repeat of the
            task's own outcome repeats its program as often as its rollouts did, shrunk toward
            the pooled share: `repeat_shares`; a seeded Monte Carlo,
            the seed derived from the plan's seed, the round and the task), divided by the
            task's mean cost per rollout so far. A task whose next rollout is expected to add
            fewer than `min_gain` kept pairs stops for good (`stopped`); one at `ceiling`
            rollouts closes (`ceiling`). The floor is given before any of this: the stop rule
            never takes a task below it.

Everything here is a pure function of its arguments, so replay and audit re-derive each
round from the outcomes logged before it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from dpo_tui.domain.yields import Outcome, concentration_draws, repeat_shares, task_pairs_curve

MIN_GAIN = 0.1  # expected new kept pairs per rollout below which a task stops (uniform QuixBugs: ~0.125)
CEILING_FACTOR = 3  # a task gets at most this many times rollouts_per_task
ALLOC_DRAWS = 200
REASONS = ("floor", "yield", "stopped", "ceiling")


@dataclass(frozen=True)
class Policy:
    total: int  # rollouts in all: train tasks x rollouts_per_task
    floor: int
    ceiling: int
    round_size: int
    min_margin: float
    per_task_cap: int | None
    seed: int
    min_gain: float = MIN_GAIN
    draws: int = ALLOC_DRAWS


@dataclass(frozen=True)
class Decision:
    """One task's allocation in one round (a `rollouts.allocated` event's payload, with the round)."""

    task_id: str
    rollouts: int  # given in this round
    allocated: int  # the task's rollouts in all after this round
    expected_gain: float  # expected new kept pairs from the rollouts given (stopped, ceiling: from one more)
    expected_pairs: float  # expected kept pairs of the task with `allocated` rollouts
    usd_per_rollout: float  # the task's expected cost per rollout the decision divided by
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def first_round(order: Sequence[str], floor: int, pilot: Mapping[str, int]) -> list[Decision]:
    """Round 1: each task its floor, or the pilot's rollouts of it when those are more."""
    out = []
    for t in order:
        n = max(floor, pilot.get(t, 0))
        out.append(Decision(t, n, n, 0.0, 0.0, 0.0, "floor"))
    return out


def round_seed(seed: int, round_no: int, task_id: str) -> int:
    return random.Random(f"{seed}:allocation:{round_no}:{task_id}").getrandbits(32)


def _usd(costs: Mapping[str, Sequence[float]], task: str, c: Sequence[float]) -> float:
    """The expected cost of the task's next rollout as its urn draws it: its own mean cost with
    weight k (its rollouts), the pooled mean with weight c (the mean concentration). A task
    that only passed so far is cheap only while it keeps passing; a failure, which is what
    would pair it, costs what the pool's rollouts cost."""
    own, pooled = list(costs.get(task, ())), [x for cs in costs.values() for x in cs]
    pool_mean = sum(pooled) / len(pooled) if pooled else 0.0
    own_mean = sum(own) / len(own) if own else pool_mean
    cbar = sum(c) / len(c) if c else 1.0
    mean = (len(own) * own_mean + cbar * pool_mean) / (len(own) + cbar) if own or cbar else pool_mean
    return mean if mean > 0 else 1e-6


def next_round(round_no: int, order: Sequence[str], allocated: Mapping[str, int], closed: set[str] | frozenset[str],
               outcomes: Mapping[str, Sequence[Outcome]], costs: Mapping[str, Sequence[float]],
               policy: Policy) -> list[Decision]:
    """Round `round_no` (2 on): the decisions, closes first (in task order), then every open task
    (in task order) with the rollouts it is given, 0 when others' gain per dollar was higher;
    each says the task's expected kept pairs at its new count. Empty when the total is spent
    or every task is closed."""
    remaining = policy.total - sum(allocated.values())
    open_tasks = [t for t in order if t not in closed]
    if remaining <= 0 or not open_tasks:
        return []
    pool = [o for t in order for o in outcomes.get(t, ())]
    cs = concentration_draws({t: list(outcomes.get(t, ())) for t in order if outcomes.get(t)}, policy.draws) \
        if pool else [1.0]
    repeats = repeat_shares({t: list(outcomes.get(t, ())) for t in order})
    closes, curves, usd = [], {}, {}
    size = min(policy.round_size, remaining)
    for t in open_tasks:
        k = allocated.get(t, 0)
        usd[t] = _usd(costs, t, cs)
        own = list(outcomes.get(t, ()))
        room = max(policy.ceiling - k, 0)
        curve = task_pairs_curve(own, min(max(room, 1), size), pool=pool, c=cs, min_margin=policy.min_margin,
                                 per_task_cap=policy.per_task_cap, seed=round_seed(policy.seed, round_no, t),
                                 draws=policy.draws, repeat=repeats[t])
        gain = curve[1] - curve[0]
        if room == 0:
            closes.append(Decision(t, 0, k, gain, curve[0], usd[t], "ceiling"))
        elif gain < policy.min_gain:
            closes.append(Decision(t, 0, k, gain, curve[0], usd[t], "stopped"))
        else:
            curves[t] = curve[: room + 1]
    given = _greedy(order, curves, usd, size, policy.min_gain)
    out = list(closes)
    for t in order:  # every open task, those ranked out of this round with 0 (the forecast sums them all)
        if t in curves:
            g, c = given.get(t, 0), curves[t]
            out.append(Decision(t, g, allocated.get(t, 0) + g, c[g] - c[0], c[g], usd[t], "yield"))
    return out


def _greedy(order: Sequence[str], curves: Mapping[str, list[float]], usd: Mapping[str, float], size: int,
            min_gain: float) -> dict[str, int]:
    """`size` rollouts one at a time to the highest marginal gain per dollar (ties: task order);
    a marginal gain below `min_gain` is not bought this round."""
    rank = {t: i for i, t in enumerate(order)}
    given: dict[str, int] = {}
    heap = [(-(c[1] - c[0]) / usd[t], rank[t], t) for t, c in curves.items()]
    heapq.heapify(heap)
    left = size
    while heap and left > 0:
        neg, _, t = heapq.heappop(heap)
        g = given.get(t, 0)
        if curves[t][g + 1] - curves[t][g] < min_gain:
            continue
        given[t] = g + 1
        left -= 1
        if g + 2 < len(curves[t]):
            heapq.heappush(heap, (-(curves[t][g + 2] - curves[t][g + 1]) / usd[t], rank[t], t))
    return given
