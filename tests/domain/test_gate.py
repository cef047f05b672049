"""The gate's error rates and the regression cases of issue 15, through the public API that
scripts and the audit call: stats.compare and gate.decide."""

from __future__ import annotations

import math
import random

import pytest

from dpo_tui.domain.gate import INCONCLUSIVE, ROLLBACK, SHIP, GateCriteria, decide
from dpo_tui.domain.stats import compare

ALPHA = 0.05
# (tasks, seeds): A/A trials, sized so the whole test stays under ~20 s on a 2-core machine
AA_DESIGNS = {(5, 1): 1500, (5, 3): 1500, (12, 1): 1500, (12, 3): 1500, (40, 1): 600, (40, 3): 600,
              (164, 1): 150, (164, 3): 150}


def binomial_upper(trials: int, p: float, tail: float = 1e-3) -> int:
    """The smallest x with P(X > x) < tail for X ~ Binomial(trials, p): a count above it
    says the true rate exceeds p (a one-sided exact test at level `tail`)."""
    cdf = 0.0
    for x in range(trials + 1):
        cdf += math.exp(math.lgamma(trials + 1) - math.lgamma(x + 1) - math.lgamma(trials - x + 1)
                        + x * math.log(p) + (trials - x) * math.log1p(-p))
        if 1 - cdf < tail:
            return x
    return trials


def a_a(rng: random.Random, tasks: int, seeds: int):
    """Base and tuned drawn from the same per-task pass rates (no true difference)."""
    rates = [rng.random() for _ in range(tasks)]
    draw = lambda: {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(rates)}  # noqa: E731
    return draw(), draw()


def test_a_a_ship_and_rollback_each_at_most_alpha_over_2():
    """The documented property: with no true difference the gate ships at most alpha/2 and
    rolls back at most alpha/2 of the time, at 5, 12, 40 and 164 tasks with 1 and 3 seeds
    (checked against an exact binomial bound on the Monte Carlo count, per design and pooled)."""
    rng = random.Random(20261125)
    totals = {SHIP: 0, ROLLBACK: 0, "trials": 0}
    lines, failures = [], []
    for (tasks, seeds), trials in AA_DESIGNS.items():
        counts = {SHIP: 0, ROLLBACK: 0, INCONCLUSIVE: 0}
        for rep in range(trials):
            base, tuned = a_a(rng, tasks, seeds)
            r = compare(base, tuned, seed=rep, level=1 - ALPHA)
            counts[decide(GateCriteria("test", alpha=ALPHA), {"test": r}).decision] += 1
        bound = binomial_upper(trials, ALPHA / 2)
        lines.append(f"{tasks:>4} tasks x {seeds} seeds, {trials} trials: ship {counts[SHIP] / trials:.2%}, "
                     f"rollback {counts[ROLLBACK] / trials:.2%} (bound {bound / trials:.2%})")
        failures += [f"{tasks}x{seeds} {d} {counts[d]}/{trials} > {bound}" for d in (SHIP, ROLLBACK) if counts[d] > bound]
        totals[SHIP] += counts[SHIP]
        totals[ROLLBACK] += counts[ROLLBACK]
        totals["trials"] += trials
    print("\nA/A gate error rates (alpha 0.05, each side should be <= 2.5%):\n" + "\n".join(lines))
    pooled = binomial_upper(totals["trials"], ALPHA / 2)
    failures += [f"pooled {d} {totals[d]}/{totals['trials']} > {pooled}" for d in (SHIP, ROLLBACK) if totals[d] > pooled]
    assert not failures


def _outcomes(spec: str) -> tuple[dict, dict]:
    """'W' a task the tuned model passes and the base fails, 'L' the reverse, 'T' a tie."""
    base = {f"t{i:02d}": [c == "L"] for i, c in enumerate(spec)}
    tuned = {f"t{i:02d}": [c == "W"] for i, c in enumerate(spec)}
    return base, tuned


def test_five_wins_no_loss_seven_ties_over_12_tasks_does_not_ship():
    """Issue 15's QuixBugs case: the exact sign test gives one-sided p = 1/32 > alpha/2."""
    r = compare(*_outcomes("WWWWW" + "T" * 7), seed=0, level=0.95)
    assert (r.improved, r.worsened, r.discordant) == (5, 0, 5)
    assert r.p_improve == pytest.approx(1 / 32)
    assert r.ci_low == 0.0 and r.ci_high > 0.3  # the interval reaches down to zero exactly
    d = decide(GateCriteria("test"), {"test": r})
    assert d.decision == INCONCLUSIVE
    assert "straddles" not in d.reason and "does not clear" in d.reason
    # one more win is enough: 6/6 discordant, p = 1/64 <= 0.025
    r6 = compare(*_outcomes("WWWWWW" + "T" * 6), seed=0, level=0.95)
    assert r6.ci_low > 0 and decide(GateCriteria("test"), {"test": r6}).decision == SHIP


def test_all_ties_show_no_interval():
    r = compare(*_outcomes("T" * 12), seed=0)
    assert (r.ci_low, r.ci_high, r.discordant) == (None, None, 0)
    assert r.to_json()["ci_low"] is None
    d = decide(GateCriteria("test"), {"test": r})
    assert d.decision == INCONCLUSIVE and "no discordant tasks" in d.reason


def test_five_tasks_can_never_ship():
    """2^5 sign patterns: the most extreme has probability 1/32 > 0.025, so even 5 wins out
    of 5 do not reject, and the interval is the whole range."""
    r = compare(*_outcomes("WWWWW"), seed=0)
    assert r.p_improve == pytest.approx(1 / 32) and (r.ci_low, r.ci_high) == (-1.0, 1.0)
    assert r.mde is None
    assert decide(GateCriteria("test"), {"test": r}).decision == INCONCLUSIVE


def test_rollback_is_the_mirror_image_and_max_drop_still_applies_to_secondary_suites():
    worse = compare(*_outcomes("L" * 8 + "T" * 4), seed=0)
    d = decide(GateCriteria("test"), {"test": worse})
    assert d.decision == ROLLBACK and d.criterion == "max_drop"
    better = compare(*_outcomes("W" * 8 + "T" * 4), seed=0)
    assert decide(GateCriteria("test"), {"test": better}).decision == SHIP
    d = decide(GateCriteria("test"), {"test": better, "heldout": worse})
    assert d.decision == ROLLBACK and d.criterion == "max_drop" and d.reason.startswith("heldout")
    # a point drop beyond max_drop without confidence blocks ship but does not roll back
    slight = compare(*_outcomes("LL" + "T" * 4), seed=0)
    d = decide(GateCriteria("test"), {"test": better, "heldout": slight})
    assert d.decision == INCONCLUSIVE and d.criterion == "max_drop"
    # the bar: confidently better than base, but confidently short of the required improvement
    d = decide(GateCriteria("test", min_improvement=better.ci_high + 0.01), {"test": better})
    assert d.decision == ROLLBACK and d.criterion == "min_improvement"


def test_a_real_improvement_ships_and_a_real_drop_rolls_back_at_164_tasks():
    rng = random.Random(3)
    rates = [rng.random() for _ in range(164)]
    base = {f"t{i}": [rng.random() < p for _ in range(3)] for i, p in enumerate(rates)}
    tuned = {f"t{i}": [rng.random() < min(1.0, p + 0.2) for _ in range(3)] for i, p in enumerate(rates)}
    r = compare(base, tuned, seed=1)
    assert r.ci_method == "monte-carlo" and 0 < r.ci_low < r.delta < r.ci_high
    assert r == compare(base, tuned, seed=1)  # seeded: the same draws every time
    assert decide(GateCriteria("test"), {"test": r}).decision == SHIP
    assert decide(GateCriteria("test"), {"test": compare(tuned, base, seed=1)}).decision == ROLLBACK


def test_the_exact_test_and_interval_match_brute_force_enumeration():
    """Every sign pattern and every non-empty subset mean enumerated, for small random inputs
    with 1-3 seeds and several alphas: the same p-values and bounds, exactly."""
    import itertools
    from fractions import Fraction

    from dpo_tui.domain.signflip import signflip

    rng = random.Random(11)
    for _ in range(150):
        n, runs, alpha = rng.randint(1, 10), rng.choice((1, 2, 3)), rng.choice((0.05, 0.1, 0.2, 0.3))
        d = [Fraction(rng.randint(0, runs) - rng.randint(0, runs), runs) for _ in range(n)]
        if not any(d):
            continue
        total = sum(d)
        sums = [sum(s * x for s, x in zip(signs, d)) for signs in itertools.product((1, -1), repeat=n)]
        means = sorted(sum(sub) / len(sub) for k in range(1, n + 1) for sub in itertools.combinations(d, k))
        rank = math.floor(Fraction(alpha).limit_denominator(100) / 2 * 2**n)
        r = signflip(d, alpha=alpha)
        assert r.p_improve == sum(s >= total for s in sums) / 2**n
        assert r.p_worse == sum(s <= total for s in sums) / 2**n
        expected = (-1.0, 1.0) if rank == 0 else (float(means[rank - 1]), float(means[-rank]))
        assert (r.ci_low, r.ci_high) == expected, (d, alpha)
        assert (r.ci_low > 0) == (r.p_improve <= alpha / 2)  # the interval and the test agree


def test_interval_text():
    from dpo_tui.domain.stats import interval_text

    assert interval_text(None, None) == "no discordant tasks"
    assert interval_text(0.0, 0.4) == "[+0.0%, +40.0%]"
