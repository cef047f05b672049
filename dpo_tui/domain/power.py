"""The eval's power before any spend: what the gate's own test can detect with the planned
tasks and seeds. Pure, seeded, stdlib only.

Model: each eval task's base pass rate p comes from a `RateModel`; the tuned model closes
the same share f of every task's headroom, q = p + f (1 - p), so its mean gain is exactly
delta = f (1 - mean p) (a task that always passes cannot gain). Before a pilot the stated,
conservative prior is every task at p = 0.5 (the largest run-to-run variance, the widest
spread of per-task differences), where q = 0.5 + delta. Once there is a pilot, p is drawn
from a beta distribution with the pilot's mean pass rate and between-task variance, the
latter from its per-task pass-rate variance (`RateModel.from_pilot`). A design (tasks, seeds) ships in a simulated
trial when the gate's ship rule holds: the exact sign-flip test of the per-task
differences minus the bar (min_improvement) rejects at alpha/2, which is the same as the
inverted interval's lower bound clearing the bar (domain/signflip.py). The trials share
their random numbers across effects (common random numbers), so the power curve is
monotone in delta and the MDE a clean bisection. Above EXACT_POWER_TASKS the test's
normal limit stands in for the exact count.
  mde            the smallest delta shipped with probability >= power; None when even
                 the largest (f = 1: tuned always passes) is not (5 tasks at alpha 0.05: the exact
                 test can never reject)
  tasks_needed   the fewest tasks (same seeds) that ship a true effect of min_improvement
                 + 5 points (`effect`) with probability >= power; None above MAX_TASKS
  aa rates       the gate itself (stats.compare + gate.decide) on A/A trials of this design
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

from dpo_tui.domain.signflip import _tails

PRIOR = "every task at base pass rate 0.5 (the most variable), tuned 0.5 + delta on every task"


@dataclass(frozen=True)
class RateModel:
    """Where the eval tasks' base pass rates come from: mean pass rate `mean` and the variance
    of the per-task rates across tasks `spread` (0: every task at `mean`)."""

    mean: float = 0.5
    spread: float = 0.0
    source: str = "prior"
    label: str = PRIOR

    @classmethod
    def from_pilot(cls, counts: list[tuple[int, int]], *, what: str = "pilot") -> RateModel | None:
        """From per-task (passes, rollouts): the mean, and the between-task variance
        m (1 - m) - mean over tasks of x (n - x) / (n (n - 1)), the unbiased within-task
        Bernoulli variance p (1 - p) (tasks with 2+ rollouts). None when no task has 2."""
        reps = [(x, n) for x, n in counts if n >= 2]
        if not reps:
            return None
        passes, runs = sum(x for x, _ in counts), sum(n for _, n in counts)
        m = passes / runs
        within = sum(x * (n - x) / (n * (n - 1)) for x, n in reps) / len(reps)
        # conservative: at most half of m (1 - m) is credited to differences between tasks (the
        # beta's a + b >= 1): a small pilot overstates them, and overstated power is the costly error
        spread = min(max(m * (1 - m) - within, 0.0), m * (1 - m) / 2)
        label = (f"{what}: {runs} rollouts on {len(counts)} tasks ({len(reps)} with 2 or more), mean pass rate "
                 f"{m:.0%}, per-task pass-rate variance p(1-p) {within:.3f}, between-task variance "
                 f"{spread:.3f} (at most half of m(1-m)); eval tasks' base rates drawn from a beta with that mean "
                 "and variance")
        return cls(round(m, 6), round(spread, 6), "pilot", label)

    def within(self) -> float:
        """E[p (1 - p)] over tasks: the run-to-run (Bernoulli) variance of one run."""
        return self.mean * (1 - self.mean) - self.spread

    def sampler(self):  # noqa: ANN201 - (draw: random.Random) -> float
        m, v = self.mean, self.spread
        if v <= 0 or m <= 0 or m >= 1:
            return lambda rng: m
        total = max(m * (1 - m) / v - 1, 1.0)  # a + b of the beta (>= 1: see from_pilot)
        a, b = m * total, (1 - m) * total
        return lambda rng: rng.betavariate(a, b)

    def max_delta(self) -> float:
        return 1 - self.mean

    def moments(self, delta: float) -> tuple[float, float]:
        """(per-run variance of base + tuned, between-task variance of the gain) at mean gain delta."""
        if self.mean >= 1:
            return self.within(), 0.0
        f = delta / (1 - self.mean)
        m, ep2 = self.mean, self.spread + self.mean ** 2
        eq, eq2 = f + (1 - f) * m, f * f + 2 * f * (1 - f) * m + (1 - f) ** 2 * ep2
        return (m - ep2) + (eq - eq2), f * f * self.spread
SEQUENTIAL_LOOKS = 3  # the sequential design power reports beside the fixed one
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
    sequential: dict | None = None  # both designs at the fixed design's MDE (sequential_power)

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["sequential"] = dict(self.sequential) if self.sequential else self.sequential  # the caller's own
        return out


class _Trials:
    """`trials` simulated evals, each from its own seeded stream, so the first n tasks of a
    trial are the same for every n and every delta: task i's base rate p is drawn from the
    rate model, run j passes for the base when u < p and for the tuned model when
    v < p + f (1 - p) (u, v uniform)."""

    def __init__(self, trials: int, seeds: int, seed: int, rates: RateModel | None = None):
        self.trials, self.seeds, self.seed = trials, seeds, seed
        self.rates = rates or RateModel()
        self._draw = self.rates.sampler()

    def ships(self, tasks: int, delta: float, *, alpha: float, bar: float) -> float:
        """The share of trials in which the gate's ship rule holds for the first `tasks` tasks."""
        f = self._gain(delta)
        shipped = sum(_rejects(self._trial(t, tasks, f), self.seeds, alpha=alpha, bar=bar) for t in range(self.trials))
        return shipped / self.trials

    def _gain(self, delta: float) -> float:
        return min(delta / self.rates.max_delta(), 1.0) if self.rates.max_delta() > 0 else 0.0

    def _trial(self, t: int, tasks: int, f: float) -> list[int]:
        """Trial t's per-task (tuned - base) pass counts for its first `tasks` tasks."""
        rng = random.Random(self.seed * 1_000_003 + t)
        draw = rng.random
        a = []
        for _ in range(tasks):
            p = self._draw(rng)
            cut = p + f * (1 - p)
            u = [draw() for _ in range(self.seeds)]
            v = [draw() for _ in range(self.seeds)]
            a.append(sum(x < cut for x in v) - sum(x < p for x in u))
        return a

    def sequential(self, tasks: int, delta: float, *, alpha: float, bar: float, looks: int) -> tuple[float, float]:
        """The sequential design (domain/sequential.py) on the same trials: (the share that
        ship at some look, the mean share of the tasks run before it stopped). Tasks are
        exchangeable, so a trial's first n tasks stand for its first rounds."""
        from dpo_tui.domain.sequential import look_alphas

        sizes = [len(r) for r in _round_sizes(tasks, looks)]
        ends = [sum(sizes[: j + 1]) for j in range(len(sizes))]
        levels = look_alphas([e / tasks for e in ends], alpha)
        shipped, used, f = 0, 0, self._gain(delta)
        for t in range(self.trials):
            a = self._trial(t, tasks, f)
            stop = tasks
            for end, level in zip(ends, levels):
                if _rejects(a[:end], self.seeds, alpha=2 * level, bar=bar):
                    shipped, stop = shipped + 1, end
                    break
            used += stop
        return shipped / self.trials, used / (self.trials * tasks)


def _round_sizes(tasks: int, looks: int) -> list[range]:
    looks = max(1, min(looks, tasks))
    size, extra = divmod(tasks, looks)
    return [range(size + (j < extra)) for j in range(looks)]


def sequential_power(tasks: int, seeds: int, delta: float, *, alpha: float, bar: float = 0.0, looks: int = 3,
                     trials: int = 400, seed: int = 0, rates: RateModel | None = None) -> dict:
    """Both designs at a true gain `delta`: the fixed design's power, the sequential one's,
    and the share of the fixed design's eval cost the sequential one spends on average."""
    sim = _Trials(trials, seeds, seed, rates)
    fixed = sim.ships(tasks, delta, alpha=alpha, bar=bar)
    power, used = sim.sequential(tasks, delta, alpha=alpha, bar=bar, looks=looks)
    return {"looks": looks, "effect": delta, "fixed_power": fixed, "sequential_power": power,
            "expected_cost_share": used}


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
        trials: int = 400, seed: int = 0, rates: RateModel | None = None) -> float | None:
    sim = _Trials(trials, seeds, seed, rates)
    top = sim.rates.max_delta()
    if top <= 0 or sim.ships(tasks, top, alpha=alpha, bar=bar) < power:
        return None
    lo, hi = 0.0, top
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if sim.ships(tasks, mid, alpha=alpha, bar=bar) >= power else (mid, hi)
    return round(hi, 3)


def _var(rates: RateModel | None, delta: float, seeds: int) -> float:
    """The variance of one task's d = (tuned - base passes) / seeds at mean gain delta."""
    runs, between = (rates or RateModel()).moments(delta)
    return runs / seeds + between


def normal_power(tasks: int, seeds: int, delta: float, *, alpha: float, bar: float = 0.0,
                 rates: RateModel | None = None) -> float:
    """The sign-flip test's power in its normal limit: the statistic sum(b) / sqrt(sum(b^2)),
    b = d - bar, against the normal quantile at 1 - alpha/2."""
    z = NormalDist()
    var = _var(rates, delta, seeds)
    mean = delta - bar
    if var <= 0:
        return 1.0 if mean > 0 else 0.0
    return z.cdf((math.sqrt(tasks) * mean - z.inv_cdf(1 - alpha / 2) * math.sqrt(var + mean * mean)) / math.sqrt(var))


def tasks_needed(effect: float, seeds: int, *, alpha: float, power: float = 0.8, bar: float = 0.0,
                 trials: int = 400, seed: int = 0, rates: RateModel | None = None) -> int | None:
    """The fewest tasks that ship a true `effect` with probability >= `power`: from the
    normal limit when that is above EXACT_POWER_TASKS, else by simulation (doubling from
    6 tasks, then bisection, on the same trials)."""
    if effect <= bar or effect > (rates or RateModel()).max_delta():
        return None
    z = NormalDist()
    var = _var(rates, effect, seeds)
    mean = effect - bar
    root = (z.inv_cdf(power) * math.sqrt(var) + z.inv_cdf(1 - alpha / 2) * math.sqrt(var + mean * mean)) / mean
    guess = math.ceil(root * root)
    if guess > EXACT_POWER_TASKS:
        return guess if guess <= MAX_TASKS else None
    sim = _Trials(trials, seeds, seed, rates)
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
             trials: int = 400, seed: int = 0, rates: RateModel | None = None) -> tuple[float, float]:
    """The gate's ship and rollback rates on A/A trials of this design (base and tuned from
    the same per-task pass rates: uniform before a pilot, the pilot's beta after), through
    stats.compare and gate.decide."""
    from dpo_tui.domain.gate import ROLLBACK, SHIP, GateCriteria, decide
    from dpo_tui.domain.stats import compare

    rng = random.Random(seed)
    draw = rates.sampler() if rates is not None and rates.source != "prior" else (lambda r: r.random())
    counts = {SHIP: 0, ROLLBACK: 0}
    criteria = GateCriteria("s", min_improvement=bar, max_drop=max_drop, alpha=alpha)
    for rep in range(trials):
        ps = [draw(rng) for _ in range(tasks)]
        base = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(ps)}
        tuned = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(ps)}
        d = decide(criteria, {"s": compare(base, tuned, seed=rep, level=1 - alpha)}).decision
        counts[d] = counts.get(d, 0) + 1
    return counts[SHIP] / trials, counts[ROLLBACK] / trials


@functools.lru_cache(maxsize=64)
def suite_power(tasks: int, seeds: int, *, alpha: float, bar: float = 0.0, max_drop: float = 0.05,
                power: float = 0.8, trials: int = 400, seed: int = 0, rates: RateModel | None = None,
                looks: int = SEQUENTIAL_LOOKS) -> SuitePower:
    """The power of the gate's ship rule for one suite; `effect` (what tasks_needed sizes
    for) is DEFAULT_EFFECT above the bar: +5 points over min_improvement (0 by default).
    Seeded simulations of its arguments alone (all hashable, RateModel frozen), so a campaign's
    confirmations, its Budget pane and `power` compute each design once per process; the
    result is frozen and `to_json` hands out copies."""
    bar = max(bar, 0.0)
    effect = round(bar + DEFAULT_EFFECT, 6)
    kw = dict(alpha=alpha, bar=bar, trials=trials, seed=seed, rates=rates)
    m = mde(tasks, seeds, power=power, **kw)
    needed = tasks_needed(effect, seeds, power=power, **kw)
    ship, rollback = aa_rates(tasks, seeds, max_drop=max_drop, **kw)
    seq = sequential_power(tasks, seeds, m, looks=looks, **kw) if m is not None else None
    if seq is not None:  # the expected cost with no true effect (it can only stop early on a false ship)
        seq["no_effect_cost_share"] = sequential_power(tasks, seeds, 0.0, looks=looks, **kw)["expected_cost_share"]
    return SuitePower(tasks, seeds, m, m is not None, effect, needed, ship, rollback, seq)
