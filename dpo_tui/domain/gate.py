"""The rollback gate: the plan's criteria, fixed before training, checked on eval results.

Criteria (all differences in pass@1, as fractions: 0.05 = 5 points):
  primary_suite    the suite whose improvement the campaign claims
  min_improvement  ship needs the primary suite's CI lower bound above this (default 0)
  max_drop         no suite may drop more than this: a CI upper bound below -max_drop rolls
                   back, and ship needs every suite's point estimate at or above -max_drop
Decision, in order:
  rollback      some suite dropped more than max_drop with confidence (CI upper < -max_drop),
                or the primary suite is confidently not better (CI upper < min_improvement)
  ship          primary CI lower > min_improvement and no suite's point drop beyond max_drop
  inconclusive  anything else (the interval straddles the bar: more tasks or runs needed)
With the CI at level 1 - alpha, an A/A comparison (no true difference) rolls back or ships
at most about alpha/2 per one-sided check; tests measure the rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dpo_tui.domain.stats import PairedComparison

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


def decide(criteria: GateCriteria, results: Mapping[str, PairedComparison]) -> GateDecision:
    if criteria.primary_suite not in results:
        raise ValueError(f"no eval results for the primary suite {criteria.primary_suite!r}")
    for suite, r in sorted(results.items()):
        if r.ci_high < -criteria.max_drop:
            return GateDecision(ROLLBACK, "max_drop",
                                f"{suite}: pass@1 dropped {-r.delta:.1%} (CI upper {r.ci_high:+.1%} < -{criteria.max_drop:.1%})")
    primary = results[criteria.primary_suite]
    if primary.ci_high < criteria.min_improvement:
        return GateDecision(ROLLBACK, "min_improvement",
                            f"{criteria.primary_suite}: CI upper {primary.ci_high:+.1%} below the required "
                            f"{criteria.min_improvement:+.1%}: the tuned model is not better")
    if primary.ci_low > criteria.min_improvement:
        drops = [s for s, r in sorted(results.items()) if r.delta < -criteria.max_drop]
        if not drops:
            return GateDecision(SHIP, "min_improvement",
                                f"{criteria.primary_suite}: pass@1 {primary.delta:+.1%} with CI "
                                f"[{primary.ci_low:+.1%}, {primary.ci_high:+.1%}] above {criteria.min_improvement:+.1%}; "
                                f"no suite dropped more than {criteria.max_drop:.1%}")
        return GateDecision(INCONCLUSIVE, "max_drop",
                            f"improved on {criteria.primary_suite} but {', '.join(drops)} dropped more than "
                            f"{criteria.max_drop:.1%} (not with confidence)")
    return GateDecision(INCONCLUSIVE, "min_improvement",
                        f"{criteria.primary_suite}: CI [{primary.ci_low:+.1%}, {primary.ci_high:+.1%}] straddles "
                        f"{criteria.min_improvement:+.1%}; MDE with this many tasks is {primary.mde:.1%}")
