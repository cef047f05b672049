"""The rollback gate: the plan's criteria, fixed before training, checked on eval results.

Criteria (all differences in pass@1, as fractions: 0.05 = 5 points):
  primary_suite    the suite whose improvement the campaign claims
  min_improvement  ship needs the primary suite's interval lower bound above this (default 0)
  max_drop         no suite may drop more than this: an interval upper bound below -max_drop
                   rolls back, and ship needs every suite's point estimate at or above -max_drop
  alpha            the error rate: each one-sided check is at alpha/2
The evidence per suite is domain.stats.compare: an exact sign-flip permutation test over
tasks (one-sided p-values p_improve, p_worse) and the interval that inverts it at level
1 - alpha (None when no task differs).
Decision, in order:
  rollback      some suite dropped more than max_drop with confidence (p_worse <= alpha/2 and
                interval upper < -max_drop), or the primary suite is confidently short of the
                bar (interval upper < min_improvement, and p_worse <= alpha/2 if the bar is <= 0)
  ship          primary p_improve <= alpha/2 and interval lower > min_improvement, and no
                suite's point estimate dropped beyond max_drop
  inconclusive  anything else (no discordant task, or the interval does not clear the bar)
Guarantee: with no true difference (A/A), the sign-flip test is exact, so the gate ships at
most alpha/2 of the time and rolls back on a suite at most alpha/2 of the time, at any
number of tasks and seeds (tests/domain/test_gate.py measures it by simulation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dpo_tui.domain.stats import PairedComparison, interval_text

SHIP, ROLLBACK, INCONCLUSIVE = "ship", "rollback", "inconclusive"


@dataclass(frozen=True)
class GateCriteria:
    primary_suite: str
    min_improvement: float = 0.0
    max_drop: float = 0.05
    alpha: float = 0.05


@dataclass(frozen=True)
class GateDecision:
    decision: str
    criterion: str
    reason: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _ci(r: PairedComparison) -> str:
    text = interval_text(r.ci_low, r.ci_high)
    return text if r.ci_low is None else f"CI {text}"


def _confidently_below(r: PairedComparison, bar: float, alpha: float) -> bool:
    """The interval's upper bound is below `bar`; for a bar at or below zero the exact test
    must also reject "no drop" at alpha/2 (so an A/A comparison rolls back <= alpha/2)."""
    return r.ci_high is not None and r.ci_high < bar and (bar > 0 or r.p_worse <= alpha / 2)


def _not_cleared(name: str, r: PairedComparison, bar: float, alpha: float) -> str:
    mde = "no effect is detectable with this many tasks" if r.mde is None else f"MDE with this many tasks is {r.mde:.1%}"
    if r.ci_low is None or r.ci_high is None:
        return (f"{name}: no discordant tasks (base and tuned passed the same share of runs on all {r.tasks} "
                f"tasks); {mde}")
    ci = _ci(r)
    if r.mde is None and (r.ci_low, r.ci_high) == (-1.0, 1.0):
        return (f"{name}: with {r.tasks} tasks no sign pattern of the per-task differences is rare enough to reject "
                f"at {alpha / 2:.3f} (2^{r.tasks} patterns), so the interval is the whole range {ci}; {mde}")
    if r.ci_low > bar:
        why = f"{ci} clears {bar:+.1%} but the exact test does not reject (one-sided p={r.p_improve:.3f} > {alpha / 2:.3f})"
    elif r.ci_low == bar:
        why = f"{ci} only reaches down to {bar:+.1%}: its lower bound does not clear it (one-sided p={r.p_improve:.3f})"
    else:
        why = f"{ci} straddles {bar:+.1%} (one-sided p={r.p_improve:.3f})"
    return f"{name}: {why}; {mde}"


def decide(criteria: GateCriteria, results: Mapping[str, PairedComparison]) -> GateDecision:
    if criteria.primary_suite not in results:
        raise ValueError(f"no eval results for the primary suite {criteria.primary_suite!r}")
    alpha, bar, drop = criteria.alpha, criteria.min_improvement, criteria.max_drop
    for suite, r in sorted(results.items()):
        if _confidently_below(r, -drop, alpha):
            return GateDecision(ROLLBACK, "max_drop",
                                f"{suite}: pass@1 dropped {-r.delta:.1%} (CI upper {r.ci_high:+.1%} < -{drop:.1%}, "
                                f"one-sided p={r.p_worse:.3f})")
    name, primary = criteria.primary_suite, results[criteria.primary_suite]
    if _confidently_below(primary, bar, alpha):
        return GateDecision(ROLLBACK, "min_improvement",
                            f"{name}: CI upper {primary.ci_high:+.1%} below the required {bar:+.1%}: "
                            f"the tuned model is not better")
    if primary.ci_low is not None and primary.ci_low > bar and primary.p_improve <= alpha / 2:
        drops = [s for s, r in sorted(results.items()) if r.delta < -drop]
        if not drops:
            return GateDecision(SHIP, "min_improvement",
                                f"{name}: pass@1 {primary.delta:+.1%} with {_ci(primary)} above {bar:+.1%} "
                                f"(one-sided p={primary.p_improve:.3f}); no suite dropped more than {drop:.1%}")
        return GateDecision(INCONCLUSIVE, "max_drop",
                            f"improved on {name} but {', '.join(drops)} dropped more than {drop:.1%} (not with confidence)")
    return GateDecision(INCONCLUSIVE, "min_improvement", _not_cleared(name, primary, bar, alpha))
