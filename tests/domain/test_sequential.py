"""The sequential eval's boundary (issue 21): its A/A error rates stay at most alpha/2 per side
over all looks, it stops early on a large true effect, and its power stays near the fixed
design's, through the same stats.compare and gate.decide the fixed design uses."""

from __future__ import annotations

import random

import pytest

from dpo_tui.domain.gate import ROLLBACK, SHIP, GateCriteria, decide
from dpo_tui.domain.sequential import look_alphas, rounds, run_looks, spent
from dpo_tui.domain.stats import compare
from tests.domain.test_gate import a_a, binomial_upper

ALPHA = 0.05
LOOKS = 3


def _sequential(base, tuned, *, seed: int):
    order = rounds(list(base), LOOKS, seed=seed)

    def compare_at(j: int, level: float):
        seen = [t for r in order[: j + 1] for t in r]
        return {"test": compare({t: base[t] for t in seen}, {t: tuned[t] for t in seen}, seed=seed, level=level)}

    return run_looks(GateCriteria("test", alpha=ALPHA), len(base), [len(r) for r in order], compare_at)


def test_the_spending_increments_sum_to_alpha_over_2_and_keep_most_for_the_last_look():
    a = look_alphas([1 / 3, 2 / 3, 1.0], ALPHA)
    assert sum(a) == pytest.approx(ALPHA / 2) and a[0] < a[1] < a[2] and a[2] > 0.7 * ALPHA / 2
    assert spent(1.0, 0.025) == pytest.approx(0.025) and spent(0.0, 0.025) == 0.0
    with pytest.raises(ValueError, match="increase to 1"):
        look_alphas([0.5, 0.4, 1.0], ALPHA)


def test_rounds_are_seeded_whole_and_cover_every_task_once():
    tasks = [f"t{i}" for i in range(11)]
    r = rounds(tasks, 3, seed=5)
    assert sorted(t for x in r for t in x) == sorted(tasks) and [len(x) for x in r] == [4, 4, 3]
    assert r == rounds(list(reversed(tasks)), 3, seed=5) != rounds(tasks, 3, seed=6)


@pytest.mark.parametrize("tasks,seeds,trials", [(12, 3, 800), (40, 1, 300)])
def test_a_a_ship_and_rollback_over_all_looks_each_at_most_alpha_over_2(tasks, seeds, trials):
    rng = random.Random(20261202 + tasks)
    counts = {SHIP: 0, ROLLBACK: 0}
    for rep in range(trials):
        base, tuned = a_a(rng, tasks, seeds)
        decision, looks = _sequential(base, tuned, seed=rep)
        if decision.decision in counts:
            counts[decision.decision] += 1
        assert 1 <= len(looks) <= LOOKS
    bound = binomial_upper(trials, ALPHA / 2)
    print(f"\nsequential A/A {tasks}x{seeds}, {trials} trials: ship {counts[SHIP] / trials:.2%}, "
          f"rollback {counts[ROLLBACK] / trials:.2%} (bound {bound / trials:.2%})")
    assert counts[SHIP] <= bound and counts[ROLLBACK] <= bound


def test_a_large_true_effect_stops_early_with_power_near_the_fixed_designs():
    """40 tasks x 1 seed, the tuned model +50 points on every task: the fixed design ships
    always; the sequential one ships as often (within 5 points) on ~70% of the tasks. (At +35
    points, where the fixed design's power is ~88%, O'Brien-Fleming's early looks rarely stop:
    ~84% of the tasks are used.)"""
    rng, trials = random.Random(7), 150
    fixed = seq = 0
    used = []
    for rep in range(trials):
        rates = [rng.uniform(0.1, 0.6) for _ in range(40)]
        base = {f"t{i}": [rng.random() < p] for i, p in enumerate(rates)}
        tuned = {f"t{i}": [rng.random() < p + 0.5] for i, p in enumerate(rates)}
        r = compare(base, tuned, seed=rep, level=1 - ALPHA)
        fixed += decide(GateCriteria("test", alpha=ALPHA), {"test": r}).decision == SHIP
        decision, looks = _sequential(base, tuned, seed=rep)
        seq += decision.decision == SHIP
        used.append(looks[-1].tasks / 40)
    mean_used = sum(used) / trials
    print(f"\nfixed power {fixed / trials:.1%}, sequential {seq / trials:.1%}, tasks used {mean_used:.0%}")
    assert seq / trials >= fixed / trials - 0.05
    assert mean_used <= 0.8


def test_power_reports_both_designs_from_the_same_simulated_trials():
    from dpo_tui.domain.power import mde, sequential_power, suite_power

    m = mde(40, 3, alpha=ALPHA, trials=400)
    q = sequential_power(40, 3, m, alpha=ALPHA, trials=400)
    assert q["fixed_power"] >= 0.8 and q["fixed_power"] - 0.08 <= q["sequential_power"] <= q["fixed_power"]
    assert 0.5 < q["expected_cost_share"] < 1.0  # it stops early in some trials, never runs more
    big = sequential_power(40, 3, 0.6, alpha=ALPHA, trials=300)
    assert big["sequential_power"] >= 0.95 and big["expected_cost_share"] < 0.75
    none = sequential_power(40, 3, 0.0, alpha=ALPHA, trials=400)
    assert none["sequential_power"] <= ALPHA / 2 + 0.02 and none["expected_cost_share"] > 0.97
    assert suite_power(40, 3, alpha=ALPHA, trials=200).sequential["looks"] == 3
    assert suite_power(5, 3, alpha=ALPHA, trials=200).sequential is None  # nothing detectable: no comparison


def test_suite_power_reports_the_no_effect_cost_at_the_plans_looks():
    from dpo_tui.domain.power import suite_power

    q = suite_power(40, 3, alpha=ALPHA, trials=200, looks=4).sequential
    assert q["looks"] == 4 and q["no_effect_cost_share"] > 0.95  # with no effect it runs (nearly) every round
    assert q["expected_cost_share"] < q["no_effect_cost_share"]
