"""The yield allocation's rules as properties over many random outcome sets (domain/allocation.py):
every task keeps its floor whatever the stop rule says, nothing passes its ceiling or the total,
the same inputs give the same rounds, and tasks that can still yield pairs get the rollouts."""

from __future__ import annotations

import random

from dpo_tui.domain.allocation import Policy, first_round, next_round
from dpo_tui.domain.yields import Outcome, concentration_draws, task_pairs_curve


def _world(rng: random.Random, tasks: int) -> dict[str, list[tuple[bool, float]]]:
    """Each task's own outcome distribution: always solved, never solved, or mixed."""
    kinds = {}
    for i in range(tasks):
        k = rng.choice(["solved", "stuck", "mixed", "mixed"])
        if k == "solved":
            kinds[f"t{i}"] = [(True, 1.0)]
        elif k == "stuck":
            kinds[f"t{i}"] = [(False, rng.choice([0.0, 0.5]))]
        else:
            kinds[f"t{i}"] = [(True, 1.0), (False, 0.0), (False, round(rng.random(), 2))]
    return kinds


def _run(seed: int, tasks: int, per_task: int, floor: int, round_size: int):
    """A whole allocation against a random world: (floor decisions, later rounds, allocated)."""
    rng = random.Random(seed)
    world = _world(rng, tasks)
    order = sorted(world)
    pilot = {order[0]: min(2, per_task)} if per_task >= 2 else {}
    policy = Policy(total=tasks * per_task, floor=floor, ceiling=3 * per_task, round_size=round_size,
                    min_margin=0.2, per_task_cap=3, seed=seed, draws=24)
    first = first_round(order, floor, pilot)
    allocated = {d.task_id: d.allocated for d in first}
    outcomes: dict[str, list[Outcome]] = {t: [] for t in order}
    costs: dict[str, list[float]] = {t: [] for t in order}
    closed: set[str] = set()
    rounds = []
    for r in range(2, 40):
        for t in order:  # run what is allocated
            while len(outcomes[t]) < allocated[t]:
                passed, score = rng.choice(world[t])
                outcomes[t].append(Outcome(passed, score, f"p{rng.randrange(4)}"))
                costs[t].append(0.01 if passed else 0.03)
        decisions = next_round(r, order, allocated, closed, outcomes, costs, policy)
        if not decisions:
            break
        rounds.append(decisions)
        for d in decisions:
            assert d.allocated == allocated[d.task_id] + d.rollouts
            allocated[d.task_id] = d.allocated
            if d.reason in ("stopped", "ceiling"):
                assert d.rollouts == 0 and d.task_id not in closed
                closed.add(d.task_id)
            else:
                assert d.reason == "yield" and d.task_id not in closed
        assert 1 <= sum(d.rollouts for d in decisions) <= round_size or all(t in closed for t in order)
    return first, rounds, allocated, policy


def test_the_stop_rule_never_takes_a_task_below_its_floor_nor_past_its_ceiling_or_the_total():
    for seed in range(60):
        rng = random.Random(seed)
        per_task = rng.randint(1, 4)
        floor = rng.randint(1, per_task)
        first, rounds, allocated, policy = _run(seed, rng.randint(1, 7), per_task, floor, rng.randint(1, 6))
        assert all(d.reason == "floor" and d.rollouts >= floor for d in first)
        assert all(allocated[t] >= floor for t in allocated), (seed, allocated)
        assert all(n <= policy.ceiling for n in allocated.values())
        assert sum(allocated.values()) <= policy.total
        stopped = {d.task_id for ds in rounds for d in ds if d.reason == "stopped"}
        for ds in rounds:  # a stopped task is never given more afterwards
            assert not [d for d in ds if d.rollouts and d.task_id in stopped and d.reason != "yield"]


def test_the_same_outcomes_give_the_same_rounds():
    assert _run(7, 6, 3, 1, 4)[:3] == _run(7, 6, 3, 1, 4)[:3]


def test_rollouts_go_where_the_outcomes_disagree_and_tasks_that_always_pass_stop():
    solved = [Outcome(True, 1.0, "a")] * 3
    outcomes = {"s1": solved, "s2": solved, "s3": solved,
                "mixed": [Outcome(True, 1.0, "b"), Outcome(False, 0.0, "c"), Outcome(False, 0.0, "d")]}
    order = sorted(outcomes)
    policy = Policy(total=24, floor=2, ceiling=9, round_size=4, min_margin=0.2, per_task_cap=4, seed=1, draws=200)
    d = next_round(2, order, {t: 3 for t in order}, set(), outcomes, {t: [0.01] for t in order}, policy)
    by = {x.task_id: x for x in d}
    assert by["mixed"].reason == "yield" and by["mixed"].rollouts == 4 and by["mixed"].allocated == 7
    for t in ("s1", "s2", "s3"):
        assert by[t].reason == "stopped" and by[t].rollouts == 0 and by[t].expected_gain < policy.min_gain
    assert [x.task_id for x in d] == ["s1", "s2", "s3", "mixed"]  # closes first, then the given, in task order


def test_the_curve_is_the_expectation_at_each_count_on_the_same_draws():
    own = [Outcome(True, 1.0, "x"), Outcome(False, 0.0, "y")]
    cs = concentration_draws({"t": own}, 50)
    curve = task_pairs_curve(own, 3, pool=own, c=cs, min_margin=0.2, per_task_cap=2, seed=3, draws=50)
    assert curve[0] == 1.0 and len(curve) == 4
    assert all(b >= a for a, b in zip(curve, curve[1:]))  # one more rollout never loses a kept pair here
    assert curve[-1] <= 2.0  # the per-task cap


def test_a_task_with_few_rollouts_repeats_its_programs_as_often_as_the_pool_does():
    from dpo_tui.domain.yields import repeat_shares

    same = [Outcome(False, 0.0, "p")] * 3  # 3 pairs, all the same program
    fresh = [Outcome(False, 0.0, "a"), Outcome(False, 0.0, "b")]  # 1 pair, different
    shares = repeat_shares({"same": same, "fresh": fresh, "once": [Outcome(True, 1.0, "x")]}, weight=3.0)
    pooled = 3 / 4
    assert shares["once"] == pooled  # one rollout says nothing: the pool's share
    assert shares["same"] == (3 + 3 * pooled) / 6 and shares["fresh"] == 3 * pooled / 4
    assert shares["fresh"] < shares["once"] < shares["same"]
