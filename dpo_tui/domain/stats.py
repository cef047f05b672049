"""Eval statistics: pass@k, a paired comparison over tasks (the gate's sign-flip test and
the interval that inverts it, domain/signflip.py), exact sign and McNemar tests, and the
smallest effect this many tasks and runs could show. Pure, seeded, stdlib only."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

from dpo_tui.domain.signflip import signflip


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with n samples of which c pass (Chen et al. 2021,
    "Evaluating Large Language Models Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k),
    computed as a product to stay exact for large n."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(outcomes: Mapping[str, Sequence[bool]], k: int) -> float:
    """Mean over tasks of pass@k, from each task's per-run pass/fail outcomes."""
    if not outcomes:
        return float("nan")
    return sum(pass_at_k(len(runs), sum(runs), k) for runs in outcomes.values()) / len(outcomes)


def binomial_two_sided(successes: int, trials: int) -> float:
    """Exact two-sided p-value of `successes` in `trials` under p = 0.5."""
    if trials == 0:
        return 1.0
    k = min(successes, trials - successes)
    tail = sum(math.comb(trials, i) for i in range(k + 1)) / 2**trials
    return min(1.0, 2 * tail)


def sign_test(diffs: Sequence[float]) -> tuple[int, int, float]:
    """(improved, worsened, p) over per-task differences; ties are dropped."""
    up = sum(d > 0 for d in diffs)
    down = sum(d < 0 for d in diffs)
    return up, down, binomial_two_sided(up, up + down)


def mcnemar_exact(base_only: int, tuned_only: int) -> float:
    """Exact McNemar on discordant run pairs (same task, same seed)."""
    return binomial_two_sided(tuned_only, base_only + tuned_only)


def minimum_detectable_effect(sd_diff: float, n_tasks: int, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true mean difference a two-sided paired test at `alpha` detects with `power`
    (normal approximation); None when the exact sign-flip test over `n_tasks` tasks cannot
    reject at all (2^n * alpha/2 < 1: 5 tasks at alpha 0.05), whatever the effect."""
    if n_tasks < 2 or 2**n_tasks * alpha / 2 < 1:
        return None
    z = NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * sd_diff / math.sqrt(n_tasks)


def planning_sd(runs: int, p: float = 0.5) -> float:
    """A conservative sd of a per-task difference of two pass rates, each a mean of `runs`
    Bernoulli(p) runs, for the MDE before any data (no task heterogeneity)."""
    return math.sqrt(2 * p * (1 - p) / max(runs, 1))


NO_DISCORDANT = "no discordant tasks"


def interval_text(low: float | None, high: float | None) -> str:
    """"[+1.0%, +9.0%]", or "no discordant tasks" for the interval of a comparison in which
    base and tuned passed the same share of runs on every task (there is none: a zero-width
    [+0.0%, +0.0%] would read as certainty)."""
    return NO_DISCORDANT if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


@dataclass(frozen=True)
class PairedComparison:
    """Base against tuned. delta is the mean over tasks of the per-task difference of pass
    rates; [ci_low, ci_high] the sign-flip interval at `level` (None when no task differs:
    discordant == 0); p_improve and p_worse the test's one-sided p-values, perm_p its
    two-sided one; sign_p and mcnemar_p the exact sign test over tasks and McNemar over runs."""
    tasks: int
    runs: int
    base_pass1: float
    tuned_pass1: float
    base_passk: float
    tuned_passk: float
    k: int
    delta: float
    ci_low: float | None
    ci_high: float | None
    level: float
    improved: int
    worsened: int
    sign_p: float
    mcnemar_p: float
    mde: float | None
    discordant: int
    p_improve: float
    p_worse: float
    perm_p: float
    ci_method: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def compare(base: Mapping[str, Sequence[bool]], tuned: Mapping[str, Sequence[bool]], *, seed: int,
            k: int | None = None, level: float = 0.95, power: float = 0.8) -> PairedComparison:
    """Base against tuned on the same tasks; runs of a task are paired by position (seed).
    `seed` fixes the Monte Carlo draws of the interval on large suites."""
    if set(base) != set(tuned):
        missing = sorted(set(base) ^ set(tuned))[:5]
        raise ValueError(f"base and tuned were run on different tasks (e.g. {missing})")
    tasks = sorted(base)
    runs = min(min(len(base[t]), len(tuned[t])) for t in tasks) if tasks else 0
    k = k or max(runs, 1)
    exact = [Fraction(sum(tuned[t]) * len(base[t]) - sum(base[t]) * len(tuned[t]), len(tuned[t]) * len(base[t]))
             for t in tasks]
    diffs = [float(d) for d in exact]
    n = len(diffs)
    mean = sum(diffs) / n if n else float("nan")
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    sd = sd if sd > 0 else planning_sd(runs)
    test = signflip(exact, alpha=1 - level, seed=seed)
    up, down, p_sign = sign_test(diffs)
    base_only = sum(b and not u for t in tasks for b, u in zip(base[t], tuned[t]))
    tuned_only = sum(u and not b for t in tasks for b, u in zip(base[t], tuned[t]))
    return PairedComparison(
        tasks=n, runs=runs, base_pass1=mean_pass_at_k(base, 1), tuned_pass1=mean_pass_at_k(tuned, 1),
        base_passk=mean_pass_at_k(base, k), tuned_passk=mean_pass_at_k(tuned, k), k=k,
        delta=mean, ci_low=test.ci_low, ci_high=test.ci_high, level=level, improved=up, worsened=down,
        sign_p=p_sign, mcnemar_p=mcnemar_exact(base_only, tuned_only),
        mde=minimum_detectable_effect(sd, n, alpha=1 - level, power=power), discordant=test.discordant,
        p_improve=test.p_improve, p_worse=test.p_worse, perm_p=min(1.0, 2 * min(test.p_improve, test.p_worse)),
        ci_method=test.method)
