from __future__ import annotations

import math
import random

import pytest

from dpo_tui.domain.gate import INCONCLUSIVE, ROLLBACK, SHIP, GateCriteria, decide
from dpo_tui.domain.stats import (
    binomial_two_sided, compare, mcnemar_exact, minimum_detectable_effect, pass_at_k, sign_test,
)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (10, 3, 5), (10, 0, 10), (20, 19, 2)])
def test_pass_at_k_equals_the_closed_form(n, c, k):
    closed = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)


def test_pass_at_k_special_cases_and_bad_input():
    assert pass_at_k(7, 3, 1) == pytest.approx(3 / 7)
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at_k(4, 1, 5)


def test_exact_tests_against_known_values():
    assert binomial_two_sided(0, 5) == pytest.approx(2 / 32)
    assert binomial_two_sided(3, 6) == 1.0
    assert sign_test([0.2, 0.1, 0.0, -0.1, 0.3]) == (3, 1, pytest.approx(0.625))
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_mde_shrinks_with_more_tasks():
    assert minimum_detectable_effect(0.3, 100) == pytest.approx(2.8016 * 0.03, rel=1e-3)
    assert minimum_detectable_effect(0.3, 400) < minimum_detectable_effect(0.3, 100)
    assert minimum_detectable_effect(0.3, 5) is None  # 2^5 sign patterns: nothing rejects at 0.05


def _simulate(rng: random.Random, tasks: int, runs: int, shift: float = 0.0):
    difficulty = [rng.random() for _ in range(tasks)]
    base = {f"t{i}": [rng.random() < d for _ in range(runs)] for i, d in enumerate(difficulty)}
    tuned = {f"t{i}": [rng.random() < min(1.0, d + shift) for _ in range(runs)] for i, d in enumerate(difficulty)}
    return base, tuned


def test_a_real_improvement_ships_and_a_real_drop_rolls_back():
    rng = random.Random(3)
    base, tuned = _simulate(rng, 80, 5, shift=0.25)
    better = compare(base, tuned, seed=1)
    assert better.delta > 0.1 and better.ci_low > 0 and better.improved > better.worsened
    assert decide(GateCriteria("test"), {"test": better}).decision == SHIP
    worse = compare(tuned, base, seed=1)
    d = decide(GateCriteria("test"), {"test": worse})
    assert d.decision == ROLLBACK and d.criterion == "max_drop"


def test_a_a_coverage_and_gate_error_rates():
    """Same model as base and tuned, many repetitions: the 95% CI covers zero at about its
    nominal rate and the gate rolls back no more often than alpha allows."""
    rng = random.Random(20261124)
    reps, covered, decisions = 200, 0, {SHIP: 0, ROLLBACK: 0, INCONCLUSIVE: 0}
    for rep in range(reps):
        base, tuned = _simulate(rng, 40, 4)
        r = compare(base, tuned, seed=rep, level=0.95)
        covered += r.ci_low <= 0 <= r.ci_high
        decisions[decide(GateCriteria("test", alpha=0.05), {"test": r}).decision] += 1
    coverage, rollback_rate = covered / reps, decisions[ROLLBACK] / reps
    print(f"\nA/A over {reps} repetitions (40 tasks x 4 runs): CI coverage {coverage:.1%} (nominal 95%), "
          f"gate ship {decisions[SHIP] / reps:.1%}, rollback {rollback_rate:.1%}, inconclusive "
          f"{decisions[INCONCLUSIVE] / reps:.1%} (alpha 5%)")
    assert 0.89 <= coverage <= 0.99
    assert rollback_rate <= 0.05 + 0.03  # alpha plus sampling slack for 200 repetitions
    assert decisions[SHIP] / reps <= 0.05 + 0.03


def test_compare_is_seeded_and_refuses_mismatched_tasks():
    base, tuned = _simulate(random.Random(4), 80, 2, shift=0.1)
    assert compare(base, tuned, seed=5) == compare(base, tuned, seed=5)
    with pytest.raises(ValueError, match="different tasks"):
        compare({"a": [True]}, {"b": [True]}, seed=0)
