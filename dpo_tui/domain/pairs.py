"""Preference pairs from finished rollouts, and the filter funnel.

Per train task, the best rollout (all tests pass, then the higher fraction of tests
passed, then fewer iterations, then the lower rollout id) is paired against each of the
task's other rollouts. The DPO input is the task's first prompt; preferred and
non-preferred are the two final programs as assistant messages.

Filters run in this order, and the funnel records how many pairs are left after each:
  dedupe        chosen and rejected are the same program after normalisation, or the
                pair repeats another pair of the same task (same normalised rejected)
  low_margin    both pass, or the score gap is below `min_margin`
  token_budget  prompt + chosen + rejected tokens must fit `max_seq_length`: Together
                trains DPO with preferred and non-preferred sharing the context length
                (DESIGN.md, stage 4), counted with the provider's tokenizer
  leakage       the task is in the test split, or either program is a near-duplicate of
                a test task's program
  per_task_cap  at most `per_task_cap` pairs per task (largest margins first), for balance
  manual        pairs the operator rejected (an operator's accept overrides low_margin
                and per_task_cap, never dedupe, token_budget or leakage)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from dpo_tui.domain.code import normalized, similarity

FILTERS = ("dedupe", "low_margin", "token_budget", "leakage", "per_task_cap", "manual")
HARD_FILTERS = frozenset({"dedupe", "token_budget", "leakage"})


@dataclass(frozen=True)
class RolloutOutcome:
    rollout_id: str
    task_id: str
    program: str  # the final program ("" when the model never produced one)
    tests_passed: int
    tests_total: int
    passed: bool
    iterations: int

    @property
    def score(self) -> float:
        return self.tests_passed / self.tests_total if self.tests_total else 0.0


def best_key(r: RolloutOutcome) -> tuple:
    return (not r.passed, -r.score, r.iterations, r.rollout_id)


@dataclass(frozen=True)
class Pair:
    pair_id: str
    task_id: str
    chosen: RolloutOutcome
    rejected: RolloutOutcome

    @property
    def margin(self) -> float:
        return self.chosen.score - self.rejected.score


def build_pairs(rollouts: Sequence[RolloutOutcome]) -> list[Pair]:
    by_task: dict[str, list[RolloutOutcome]] = defaultdict(list)
    for r in rollouts:
        by_task[r.task_id].append(r)
    pairs = []
    for task_id in sorted(by_task):
        ranked = sorted(by_task[task_id], key=best_key)
        best = ranked[0]
        for other in ranked[1:]:
            pairs.append(Pair(f"{task_id}#{best.rollout_id}>{other.rollout_id}", task_id, best, other))
    return pairs


@dataclass(frozen=True)
class PairFilters:
    min_margin: float = 0.2
    max_seq_length: int = 8192
    per_task_cap: int = 4
    near_duplicate_threshold: float = 0.9


@dataclass
class FilterResult:
    kept: list[Pair]
    funnel: dict[str, int]  # "built" then each filter: pairs left after it
    dropped: dict[str, str] = field(default_factory=dict)  # pair id -> filter that dropped it


def filter_pairs(pairs: Sequence[Pair], filters: PairFilters, *, pair_tokens: Callable[[Pair], int],
                 test_tasks: Collection[str], test_programs: Sequence[str] = (),
                 decisions: Mapping[str, str] | None = None) -> FilterResult:
    """Apply the funnel. `pair_tokens(pair)` counts prompt + chosen + rejected tokens;
    `decisions` maps pair id -> "accept" or "reject" (operator decisions)."""
    decisions = decisions or {}
    dropped: dict[str, str] = {}
    funnel = {"built": len(pairs)}
    test_tasks = set(test_tasks)

    def stage(name: str, current: list[Pair], drop: Callable[[Pair], bool]) -> list[Pair]:
        kept = []
        for p in current:
            overridden = name not in HARD_FILTERS and decisions.get(p.pair_id) == "accept"
            if drop(p) and not overridden:
                dropped[p.pair_id] = name
            else:
                kept.append(p)
        funnel[name] = len(kept)
        return kept

    seen: set[tuple[str, str]] = set()

    def duplicate(p: Pair) -> bool:
        c, r = normalized(p.chosen.program), normalized(p.rejected.program)
        if c == r or not p.chosen.program.strip() or (p.task_id, r) in seen:
            return True
        seen.add((p.task_id, r))
        return False

    def leaks(p: Pair) -> bool:
        if p.task_id in test_tasks:
            return True
        return any(similarity(prog, tp) >= filters.near_duplicate_threshold
                   for prog in (p.chosen.program, p.rejected.program) for tp in test_programs)

    current = stage("dedupe", list(pairs), duplicate)
    current = stage("low_margin", current,
                    lambda p: (p.chosen.passed and p.rejected.passed) or p.margin < filters.min_margin)
    current = stage("token_budget", current, lambda p: pair_tokens(p) > filters.max_seq_length)
    current = stage("leakage", current, leaks)
    per_task: dict[str, int] = defaultdict(int)
    ranked = sorted(current, key=lambda p: (p.task_id, -p.margin, p.pair_id))
    allowed = set()
    for p in ranked:
        if per_task[p.task_id] < filters.per_task_cap:
            per_task[p.task_id] += 1
            allowed.add(p.pair_id)
    current = stage("per_task_cap", current, lambda p: p.pair_id not in allowed)
    current = stage("manual", current, lambda p: decisions.get(p.pair_id) == "reject")
    return FilterResult(current, funnel, dropped)
