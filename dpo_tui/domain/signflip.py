"""The gate's paired test: a sign-flip permutation test over tasks, and the interval that
inverts it. Pure, seeded, stdlib only.

Per task i the difference d_i = tuned pass rate - base pass rate. When base and tuned are
the same model (A/A), each task's two arms are exchangeable, so every d_i is as likely to
have its sign flipped: the 2^n sign patterns are equally likely given |d_1|..|d_n|. The
one-sided p-values count the patterns whose sum is at least (at most) the observed one.
That distribution is computed exactly: the d_i of pass rates lie on a lattice (multiples
of 1/runs), so the count is a subset-sum polynomial, kept as one Python integer whose
W-bit fields are the coefficients (a shift and an add per task).

The interval is the set of shifts mu that the same test does not reject at alpha/2 on
either side (Hartigan 1969, "Using subsample values as typical values", JASA 64: the means
of the 2^n - 1 non-empty subsets of tasks cut the line into 2^n pieces, each equally likely
to hold the centre of symmetry). Its lower bound is the K-th smallest subset mean, K =
floor(alpha/2 * 2^n), and it is above a bar exactly when the test of "mean <= bar" rejects:
the interval and the test never disagree. With 2^n * alpha/2 < 1 (5 tasks at alpha 0.05)
nothing can be rejected and the interval is the whole range [-1, +1]. Up to EXACT_MAX_TASKS
tasks the subset means are counted exactly (a table by subset size and sum); above that the
interval is inverted from MC_DRAWS random subsets drawn with a fixed seed (the Monte Carlo
permutation test, valid at its level with the observed pattern counted among the draws).
"""

from __future__ import annotations

import bisect
import math
import random
import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate
from dataclasses import dataclass
from fractions import Fraction

EXACT_MAX_TASKS = 60
MC_DRAWS = 3999
MAX_LATTICE = 4000  # the largest n * max|a_i| counted exactly; beyond it, Monte Carlo


@dataclass(frozen=True)
class SignFlip:
    """One-sided p-values of "tuned better" and "tuned worse", the inverted interval (None
    when no task differs) and how they were computed ("exact" or "monte-carlo")."""
    p_improve: float
    p_worse: float
    ci_low: float | None
    ci_high: float | None
    discordant: int
    method: str


def lattice(diffs: Sequence[Fraction]) -> tuple[list[int], int]:
    """The differences as integers a_i over one common denominator D (d_i = a_i / D)."""
    den = 1
    for d in diffs:
        den = den * d.denominator // math.gcd(den, d.denominator)
    return [int(d * den) for d in diffs], den


def _tails(a: Sequence[int]) -> tuple[Fraction, Fraction]:
    """Exact P(S* >= S) and P(S* <= S) for S = sum a_i under independent sign flips."""
    mags = [abs(x) for x in a if x]
    m = len(mags)
    if m == 0:
        return Fraction(1), Fraction(1)
    w = m + 1  # a field holds any count up to 2^m without a carry into the next
    poly = 1  # coefficient t: how many sign patterns put a total of t on the positive side
    for v in mags:
        poly += poly << (v * w)
    mod = (1 << w) - 1  # 2^w = 1 (mod 2^w - 1): an integer's fields sum to it modulo this

    def at_most(t: int) -> int:
        return 0 if t < 0 else (poly & ((1 << ((t + 1) * w)) - 1)) % mod

    t_obs = sum(x for x in a if x > 0)
    total = 1 << m
    return Fraction(total - at_most(t_obs - 1), total), Fraction(at_most(t_obs), total)


def _rank(alpha: float, patterns: int) -> int:
    """K: the test rejects on one side when the observed pattern is among the K most extreme."""
    return math.floor(Fraction(repr(round(alpha, 12))) / 2 * patterns)  # 1 - 0.95 is 0.05


class _ExactMeans:
    """Counts of non-empty subsets by size k and sum s (of the a_i), built as one packed
    integer per size, then unpacked into running totals for counting the subsets whose mean
    is at most (at least) a value."""

    def __init__(self, a: Sequence[int]):
        self.n, self.m = len(a), max(1, max(abs(x) for x in a))
        w = 64  # a field is one machine word (n <= 63), unpacked by memoryview.cast
        rows = [1]  # row k, field j: subsets of size k with sum j - k*m
        for x in sorted(a, key=abs, reverse=True):
            shift = (x + self.m) * w
            rows.append(0)
            for k in range(len(rows) - 2, -1, -1):
                rows[k + 1] += rows[k] << shift
        self.cum = [[0]] + [list(accumulate(_words(rows[k], 2 * k * self.m + 1, 64))) for k in range(1, self.n + 1)]

    def at_most(self, t: float) -> int:
        """Non-empty subsets with sum <= t * size."""
        total = 0
        for k in range(1, self.n + 1):
            f = math.floor(t * k) + k * self.m
            if f >= 0:
                row = self.cum[k]
                total += row[f] if f < len(row) else row[-1]
        return total

    def at_least(self, t: float) -> int:
        """Non-empty subsets with sum >= t * size."""
        total = 0
        for k in range(1, self.n + 1):
            f, row = math.ceil(t * k) + k * self.m - 1, self.cum[k]
            total += row[-1] - (0 if f < 0 else row[f] if f < len(row) else row[-1])
        return total

    def kth_smallest(self, rank: int) -> Fraction:
        lo, hi = -self.m - 1.0, float(self.m)  # at_most(lo) < rank <= at_most(hi)
        while hi - lo > 1.0 / (self.n * self.n + 1):  # distinct means s/k differ by >= 1/n^2
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.at_most(mid) >= rank else (mid, hi)
        return min(c for c in (Fraction(math.floor(hi * k), k) for k in range(1, self.n + 1)) if c > lo)

    def kth_largest(self, rank: int) -> Fraction:
        lo, hi = -float(self.m), self.m + 1.0  # at_least(lo) >= rank > at_least(hi)
        while hi - lo > 1.0 / (self.n * self.n + 1):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.at_least(mid) >= rank else (lo, mid)
        return max(c for c in (Fraction(math.ceil(lo * k), k) for k in range(1, self.n + 1)) if c < hi)


def _words(packed: int, count: int, bits: int) -> array:
    """The `count` unsigned fields of `bits` (16, 32 or 64) bits packed in an integer."""
    words = array({16: "H", 32: "I", 64: "Q"}[bits], packed.to_bytes(count * bits // 8, "little"))
    if sys.byteorder == "big":
        words.byteswap()
    return words


def _mc_means(a: Sequence[int], seed: int) -> tuple[int, list[float]]:
    """Means (in lattice units) of MC_DRAWS random subsets, each task in with probability
    1/2, and how many draws were empty. The draws run side by side: one integer holds a
    field per draw, a task adds a random 0/1 to every field of the size and (a_i + m) times
    it to every field of the offset sum."""
    rng, m = random.Random(seed), max(1, max(abs(x) for x in a))
    bits = next((b for b in (16, 32, 64) if 2 * m * len(a) < 2**b), None)
    if bits is None:
        raise ValueError(f"per-task differences too fine-grained to count ({len(a)} tasks, lattice 1/{m})")
    ones = int.from_bytes((b"\x01" + b"\x00" * (bits // 8 - 1)) * MC_DRAWS, "little")  # bit 0 of every field
    sizes = offsets = 0
    for x in a:
        flips = rng.getrandbits(MC_DRAWS * bits) & ones
        sizes += flips
        offsets += (x + m) * flips
    means, empties = [], 0
    for size, offset in zip(_words(sizes, MC_DRAWS, bits), _words(offsets, MC_DRAWS, bits)):
        if size:
            means.append(offset / size - m)
        else:
            empties += 1
    return empties, sorted(means)


def _mc_interval(a: Sequence[int], alpha: float, seed: int) -> tuple[float, float, Fraction, Fraction] | None:
    """Lower and upper bound (lattice units) and the p-values of the Monte Carlo test; the
    observed pattern and any empty draw count on both tails. None when nothing is rejected."""
    empties, means = _mc_means(a, seed)
    patterns = MC_DRAWS + 1
    up = Fraction(1 + empties + bisect.bisect_right(means, 0.0), patterns)
    down = Fraction(1 + empties + len(means) - bisect.bisect_left(means, 0.0), patterns)
    rank = _rank(alpha, patterns) - empties  # the observed pattern is the "+1" of the count
    if rank <= 0:
        return None
    return means[rank - 1], means[len(means) - rank], up, down


def signflip(diffs: Sequence[Fraction], *, alpha: float, seed: int = 0) -> SignFlip:
    """The test and interval for the mean of per-task differences (fractions of pass@1)."""
    a, den = lattice(diffs)
    n, discordant = len(a), sum(x != 0 for x in a)
    if discordant == 0:
        return SignFlip(1.0, 1.0, None, None, 0, "exact")
    spread = n * max(abs(x) for x in a)
    if n <= EXACT_MAX_TASKS and spread <= MAX_LATTICE:
        up, down = _tails(a)
        rank = _rank(alpha, 2**n)
        if rank == 0:
            return SignFlip(float(up), float(down), -1.0, 1.0, discordant, "exact")
        table = _ExactMeans(a)
        low, high = table.kth_smallest(rank), table.kth_largest(rank)
        return SignFlip(float(up), float(down), float(low / den), float(high / den), discordant, "exact")
    mc = _mc_interval(a, alpha, seed)
    if spread <= MAX_LATTICE:
        up, down = _tails(a)  # the p-values stay exact; only the interval is drawn
    elif mc is not None:
        up, down = mc[2], mc[3]
    else:
        up = down = Fraction(1)
    if mc is None:
        return SignFlip(float(up), float(down), -1.0, 1.0, discordant, "monte-carlo")
    return SignFlip(float(up), float(down), mc[0] / den, mc[1] / den, discordant, "monte-carlo")
