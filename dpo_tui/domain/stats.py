"""Eval statistics: pass@k, a paired comparison over tasks, exact tests, and the smallest
effect this many tasks and runs could show. Pure, seeded, stdlib only."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist


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


def bootstrap_ci(diffs: Sequence[float], *, seed: int, level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-task differences, resampling tasks."""
    n = len(diffs)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * (resamples - 1))], means[math.ceil((1 - tail) * (resamples - 1))]


def minimum_detectable_effect(sd_diff: float, n_tasks: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired test at `alpha` detects with `power`."""
    if n_tasks < 2:
        return float("inf")
    z = NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * sd_diff / math.sqrt(n_tasks)


def planning_sd(runs: int, p: float = 0.5) -> float:
    """A conservative sd of a per-task difference of two pass rates, each a mean of `runs`
    Bernoulli(p) runs, for the MDE before any data (no task heterogeneity)."""
    return math.sqrt(2 * p * (1 - p) / max(runs, 1))


@dataclass(frozen=True)
class PairedComparison:
    tasks: int
    runs: int
    base_pass1: float
    tuned_pass1: float
    base_passk: float
    tuned_passk: float
    k: int
    delta: float
    ci_low: float
    ci_high: float
    level: float
    improved: int
    worsened: int
    sign_p: float
    mcnemar_p: float
    mde: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


def compare(base: Mapping[str, Sequence[bool]], tuned: Mapping[str, Sequence[bool]], *, seed: int,
            k: int | None = None, level: float = 0.95, power: float = 0.8) -> PairedComparison:
    """Base against tuned on the same tasks; runs of a task are paired by position (seed)."""
    if set(base) != set(tuned):
        missing = sorted(set(base) ^ set(tuned))[:5]
        raise ValueError(f"base and tuned were run on different tasks (e.g. {missing})")
    tasks = sorted(base)
    runs = min(min(len(base[t]), len(tuned[t])) for t in tasks) if tasks else 0
    k = k or max(runs, 1)
    diffs = [sum(tuned[t]) / len(tuned[t]) - sum(base[t]) / len(base[t]) for t in tasks]
    n = len(diffs)
    mean = sum(diffs) / n if n else float("nan")
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    sd = sd if sd > 0 else planning_sd(runs)
    lo, hi = bootstrap_ci(diffs, seed=seed, level=level)
    up, down, p_sign = sign_test(diffs)
    base_only = sum(b and not u for t in tasks for b, u in zip(base[t], tuned[t]))
    tuned_only = sum(u and not b for t in tasks for b, u in zip(base[t], tuned[t]))
    return PairedComparison(
        tasks=n, runs=runs, base_pass1=mean_pass_at_k(base, 1), tuned_pass1=mean_pass_at_k(tuned, 1),
        base_passk=mean_pass_at_k(base, k), tuned_passk=mean_pass_at_k(tuned, k), k=k,
        delta=mean, ci_low=lo, ci_high=hi, level=level, improved=up, worsened=down, sign_p=p_sign,
        mcnemar_p=mcnemar_exact(base_only, tuned_only),
        mde=minimum_detectable_effect(sd, n, alpha=1 - level, power=power))
