"""The eval's power before any spend: what the gate's own test can detect with the planned
tasks and seeds. Pure, seeded, stdlib only.

Model (a stated, conservative prior before a pilot): every task's base pass rate is 0.5
(the largest run-to-run variance, so the widest spread of per-task differences) and the
tuned model's is 0.5 + delta on every task. A design (tasks, seeds) ships in a simulated
trial when the gate's ship rule holds: the exact sign-flip test of the per-task
differences minus the bar (min_improvement) rejects at alpha/2, which is the same as the
inverted interval's lower bound clearing the bar (domain/signflip.py). The trials share
their random numbers across effects (common random numbers), so the power curve is
monotone in delta and the MDE a clean bisection. Above EXACT_POWER_TASKS the test's
normal limit stands in for the exact count.
  mde            the smallest delta shipped with probability >= power; None when even
                 delta 0.5 (base 0.5, tuned 1.0) is not (5 tasks at alpha 0.05: the exact
                 test can never reject)
  tasks_needed   the fewest tasks (same seeds) that ship a true effect of min_improvement
                 + 5 points (`effect`) with probability >= power; None above MAX_TASKS
  aa rates       the gate itself (stats.compare + gate.decide) on A/A trials of this design
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

from dpo_tui.domain.signflip import _tails

PRIOR = "every task at base pass rate 0.5 (the most variable), tuned 0.5 + delta on every task"
DEFAULT_EFFECT = 0.05  # tasks_needed sizes for a true effect this far above the bar
EXACT_POWER_TASKS = 200
MAX_TASKS = 2000


@dataclass(frozen=True)
class SuitePower:
    tasks: int
    seeds: int
    mde: float | None
    detectable: bool
    effect: float
    tasks_needed: int | None
    aa_ship_rate: float
    aa_rollback_rate: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


class _Trials:
    """`trials` simulated evals, each from its own seeded stream, so the first n tasks of a
    trial are the same for every n and every delta: run j of task i passes for the base when
    u < 0.5 and for the tuned model when v < 0.5 + delta (u, v uniform)."""

    def __init__(self, trials: int, seeds: int, seed: int):
        self.trials, self.seeds, self.seed = trials, seeds, seed

    def ships(self, tasks: int, delta: float, *, alpha: float, bar: float) -> float:
        """The share of trials in which the gate's ship rule holds for the first `tasks` tasks."""
        shipped, cut = 0, 0.5 + delta
        for t in range(self.trials):
            draw = random.Random(self.seed * 1_000_003 + t).random
            a = []
            for _ in range(tasks):
                u = [draw() for _ in range(self.seeds)]
                v = [draw() for _ in range(self.seeds)]
                a.append(sum(x < cut for x in v) - sum(x < 0.5 for x in u))
            shipped += _rejects(a, self.seeds, alpha=alpha, bar=bar)
        return shipped / self.trials


def _rejects(a: list[int], seeds: int, *, alpha: float, bar: float) -> bool:
    """Whether the one-sided sign-flip test of (a_i / seeds - bar) rejects at alpha/2."""
    n = len(a)
    if n < 64 and 2**n * alpha / 2 < 1:
        return False
    shift = Fraction(bar).limit_denominator(1000) * seeds
    b = [x * shift.denominator - shift.numerator for x in a]  # (d_i - bar) on an integer lattice
    if n <= EXACT_POWER_TASKS:
        return _tails(b)[0] <= alpha / 2
    s2 = sum(x * x for x in b)
    return s2 > 0 and sum(b) / math.sqrt(s2) > NormalDist().inv_cdf(1 - alpha / 2)


def mde(tasks: int, seeds: int, *, alpha: float, power: float = 0.8, bar: float = 0.0,
        trials: int = 400, seed: int = 0) -> float | None:
    sim = _Trials(trials, seeds, seed)
    if sim.ships(tasks, 0.5, alpha=alpha, bar=bar) < power:
        return None
    lo, hi = 0.0, 0.5
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if sim.ships(tasks, mid, alpha=alpha, bar=bar) >= power else (mid, hi)
    return round(hi, 3)


def normal_power(tasks: int, seeds: int, delta: float, *, alpha: float, bar: float = 0.0) -> float:
    """The sign-flip test's power in its normal limit under the prior: the statistic
    sum(b) / sqrt(sum(b^2)), b = d - bar, against the normal quantile at 1 - alpha/2."""
    z = NormalDist()
    var = (0.25 + (0.5 + delta) * (0.5 - delta)) / seeds  # of d = (tuned - base passes) / seeds
    mean = delta - bar
    if var <= 0:
        return 1.0 if mean > 0 else 0.0
    return z.cdf((math.sqrt(tasks) * mean - z.inv_cdf(1 - alpha / 2) * math.sqrt(var + mean * mean)) / math.sqrt(var))


def tasks_needed(effect: float, seeds: int, *, alpha: float, power: float = 0.8, bar: float = 0.0,
                 trials: int = 400, seed: int = 0) -> int | None:
    """The fewest tasks that ship a true `effect` with probability >= `power`: from the
    normal limit when that is above EXACT_POWER_TASKS, else by simulation (doubling from
    6 tasks, then bisection, on the same trials)."""
    if effect <= bar:
        return None
    z = NormalDist()
    var = (0.25 + (0.5 + effect) * (0.5 - effect)) / seeds
    mean = effect - bar
    root = (z.inv_cdf(power) * math.sqrt(var) + z.inv_cdf(1 - alpha / 2) * math.sqrt(var + mean * mean)) / mean
    guess = math.ceil(root * root)
    if guess > EXACT_POWER_TASKS:
        return guess if guess <= MAX_TASKS else None
    sim = _Trials(trials, seeds, seed)
    ok = lambda n: sim.ships(n, effect, alpha=alpha, bar=bar) >= power  # noqa: E731
    lo, hi = 5, max(6, guess)  # ok(5) is False: at 5 tasks nothing ships
    while not ok(hi):
        lo, hi = hi, 2 * hi
        if hi > EXACT_POWER_TASKS:
            return guess if guess <= MAX_TASKS else None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def aa_rates(tasks: int, seeds: int, *, alpha: float, bar: float, max_drop: float,
             trials: int = 400, seed: int = 0) -> tuple[float, float]:
    """The gate's ship and rollback rates on A/A trials of this design (base and tuned from
    the same per-task pass rates, drawn uniformly), through stats.compare and gate.decide."""
    from dpo_tui.domain.gate import ROLLBACK, SHIP, GateCriteria, decide
    from dpo_tui.domain.stats import compare

    rng = random.Random(seed)
    counts = {SHIP: 0, ROLLBACK: 0}
    criteria = GateCriteria("s", min_improvement=bar, max_drop=max_drop, alpha=alpha)
    for rep in range(trials):
        rates = [rng.random() for _ in range(tasks)]
        base = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(rates)}
        tuned = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(rates)}
        d = decide(criteria, {"s": compare(base, tuned, seed=rep, level=1 - alpha)}).decision
        counts[d] = counts.get(d, 0) + 1
    return counts[SHIP] / trials, counts[ROLLBACK] / trials


def suite_power(tasks: int, seeds: int, *, alpha: float, bar: float = 0.0, max_drop: float = 0.05,
                power: float = 0.8, trials: int = 400, seed: int = 0) -> SuitePower:
    """The power of the gate's ship rule for one suite; `effect` (what tasks_needed sizes
    for) is DEFAULT_EFFECT above the bar: +5 points over min_improvement (0 by default)."""
    bar = max(bar, 0.0)
    effect = round(bar + DEFAULT_EFFECT, 6)
    m = mde(tasks, seeds, alpha=alpha, power=power, bar=bar, trials=trials, seed=seed)
    needed = tasks_needed(effect, seeds, alpha=alpha, power=power, bar=bar, trials=trials, seed=seed)
    ship, rollback = aa_rates(tasks, seeds, alpha=alpha, bar=bar, max_drop=max_drop, trials=trials, seed=seed)
    return SuitePower(tasks, seeds, m, m is not None, effect, needed, ship, rollback)
