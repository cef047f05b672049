"""The budget: calls, tokens and dollars per stage, with a range, and the pilot calibration.

Pure functions of their inputs. Calls per rollout = avg_iters + avg_reflections; a call
costs prompt_tokens x input price + completion_tokens x output price (per 1M tokens).

Uncalibrated ranges come from the plan's hard bounds: at best every rollout is solved at
its first call; at worst every rollout uses all `max_iters` iterations and a reflection
after each failed one but the last; tokens per call vary by +-`token_uncertainty`.
Calibrated ranges come from a pilot: a seeded bootstrap over the pilot rollouts' own
costs, scaled to the full number of rollouts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

STAGES = ("rollouts", "training", "eval", "endpoint")


@dataclass(frozen=True)
class Price:
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str = "price table"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6


@dataclass(frozen=True)
class BudgetInputs:
    # rollouts (generator model)
    tasks: int
    rollouts_per_task: int
    max_iters: int
    avg_iters: float
    avg_reflections: float
    reflections: bool
    prompt_tokens_per_call: float
    completion_tokens_per_call: float
    generator_price: Price
    # DPO training
    target_pairs: int
    pair_tokens: float  # prompt + chosen + rejected, per pair
    dpo_epochs: int
    training_usd_per_mtok: float
    training_minimum_usd: float = 0.0
    # eval (base and tuned through the same agent)
    eval_tasks: int = 0
    eval_runs: int = 1
    eval_models: int = 2
    eval_avg_iters: float = 1.0
    eval_avg_reflections: float = 0.0
    eval_prompt_tokens_per_call: float = 0.0
    eval_completion_tokens_per_call: float = 0.0
    eval_price: Price | None = None  # None: served on dedicated endpoints, billed by the minute
    # dedicated endpoints
    endpoint_minutes: float = 0.0
    endpoint_usd_per_hour: float = 0.0
    endpoints: int = 0
    token_uncertainty: float = 0.25

    @property
    def rollouts(self) -> int:
        return self.tasks * self.rollouts_per_task

    @property
    def calls_per_rollout(self) -> float:
        return self.avg_iters + self.avg_reflections


@dataclass(frozen=True)
class StageEstimate:
    calls: float
    tokens: float
    usd: float
    low_usd: float
    high_usd: float


@dataclass(frozen=True)
class Estimate:
    by_stage: dict[str, StageEstimate]
    calibrated: bool = False
    notes: tuple[str, ...] = ()

    @property
    def total_usd(self) -> float:
        return sum(s.usd for s in self.by_stage.values())

    @property
    def low_usd(self) -> float:
        return sum(s.low_usd for s in self.by_stage.values())

    @property
    def high_usd(self) -> float:
        return sum(s.high_usd for s in self.by_stage.values())

    @property
    def calls(self) -> float:
        return sum(s.calls for s in self.by_stage.values())

    def to_json(self) -> dict:
        return {"total_usd": self.total_usd, "low_usd": self.low_usd, "high_usd": self.high_usd,
                "calls": self.calls, "calibrated": self.calibrated, "notes": list(self.notes),
                "by_stage": {k: asdict(v) for k, v in self.by_stage.items()}}


def max_calls_per_rollout(max_iters: int, reflections: bool) -> int:
    return max_iters + (max_iters - 1 if reflections else 0)


def _agent_stage(rollouts: float, calls_per: float, max_calls_per: float, prompt: float, completion: float,
                 price: Price | None, unc: float) -> StageEstimate:
    calls = rollouts * calls_per
    tokens = calls * (prompt + completion)
    if price is None:
        return StageEstimate(calls, tokens, 0.0, 0.0, 0.0)
    per_call = price.cost(prompt, completion)
    return StageEstimate(calls, tokens, calls * per_call,
                         low_usd=rollouts * 1 * per_call * (1 - unc),
                         high_usd=rollouts * max_calls_per * per_call * (1 + unc))


def estimate(inp: BudgetInputs) -> Estimate:
    unc = inp.token_uncertainty
    rollouts = _agent_stage(inp.rollouts, inp.calls_per_rollout, max_calls_per_rollout(inp.max_iters, inp.reflections),
                            inp.prompt_tokens_per_call, inp.completion_tokens_per_call, inp.generator_price, unc)
    train_tokens = inp.target_pairs * inp.pair_tokens * inp.dpo_epochs
    train_usd = max(train_tokens * inp.training_usd_per_mtok / 1e6, inp.training_minimum_usd)
    training = StageEstimate(0, train_tokens, train_usd,
                             low_usd=max(train_usd * (1 - unc), inp.training_minimum_usd), high_usd=train_usd * (1 + unc))
    eval_runs = inp.eval_tasks * inp.eval_runs * inp.eval_models
    evals = _agent_stage(eval_runs, inp.eval_avg_iters + inp.eval_avg_reflections,
                         max_calls_per_rollout(inp.max_iters, inp.reflections),
                         inp.eval_prompt_tokens_per_call, inp.eval_completion_tokens_per_call, inp.eval_price, unc)
    ep_usd = inp.endpoints * inp.endpoint_minutes * inp.endpoint_usd_per_hour / 60
    endpoint = StageEstimate(0, 0, ep_usd, low_usd=ep_usd * 0.5, high_usd=ep_usd * 2.0)
    return Estimate({"rollouts": rollouts, "training": training, "eval": evals, "endpoint": endpoint})


@dataclass(frozen=True)
class PilotRollout:
    """One pilot rollout as measured from the log."""

    calls: int
    iterations: int
    reflections: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    passed: bool


@dataclass(frozen=True)
class PilotSummary:
    rollouts: int
    calls: int
    avg_iters: float
    avg_reflections: float
    prompt_tokens_per_call: float
    completion_tokens_per_call: float
    cost_per_rollout: float
    cost_per_rollout_low: float
    cost_per_rollout_high: float
    pass_rate: float
    confidence: float
    notes: tuple[str, ...] = field(default=())


def summarize_pilot(pilot: Sequence[PilotRollout], *, seed: int, confidence: float = 0.9,
                    resamples: int = 2000) -> PilotSummary:
    if not pilot:
        raise ValueError("a pilot needs at least one finished rollout")
    n = len(pilot)
    calls = sum(r.calls for r in pilot)
    costs = [r.cost_usd for r in pilot]
    mean = sum(costs) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(costs) for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low, high = means[int(tail * (resamples - 1))], means[math.ceil((1 - tail) * (resamples - 1))]
    notes = () if n >= 10 else (f"only {n} pilot rollouts: the interval is wide and itself uncertain",)
    return PilotSummary(
        rollouts=n, calls=calls,
        avg_iters=sum(r.iterations for r in pilot) / n,
        avg_reflections=sum(r.reflections for r in pilot) / n,
        prompt_tokens_per_call=sum(r.prompt_tokens for r in pilot) / max(calls, 1),
        completion_tokens_per_call=sum(r.completion_tokens for r in pilot) / max(calls, 1),
        cost_per_rollout=mean, cost_per_rollout_low=low, cost_per_rollout_high=high,
        pass_rate=sum(r.passed for r in pilot) / n, confidence=confidence, notes=notes)


def calibrated_estimate(inp: BudgetInputs, pilot: PilotSummary) -> Estimate:
    """The estimate redone with the pilot's measured figures; the rollout range is the
    pilot's bootstrap interval of cost per rollout, times the number of rollouts."""
    measured = replace(inp, avg_iters=pilot.avg_iters, avg_reflections=pilot.avg_reflections,
                       prompt_tokens_per_call=pilot.prompt_tokens_per_call,
                       completion_tokens_per_call=pilot.completion_tokens_per_call)
    base = estimate(measured)
    r = base.by_stage["rollouts"]
    rollouts = StageEstimate(r.calls, r.tokens, usd=inp.rollouts * pilot.cost_per_rollout,
                             low_usd=inp.rollouts * pilot.cost_per_rollout_low,
                             high_usd=inp.rollouts * pilot.cost_per_rollout_high)
    return Estimate({**base.by_stage, "rollouts": rollouts}, calibrated=True, notes=pilot.notes)


@dataclass(frozen=True)
class PairYield:
    pass_rate: float
    train_tasks: int
    rollouts_per_task: int
    expected_pairs: float
    target_pairs: int
    needed_rollouts_per_task: int | None  # None: no count up to the limit reaches the target
    warning: str | None


def expected_pairs_per_task(p: float, rollouts: int, cap: int | None = None) -> float:
    """E[pairs] for one task when each rollout passes with probability p independently:
    with K passing rollouts (K >= 1) the best one pairs with each of the R - K failing ones
    (pass-vs-pass pairs fail the margin filter), up to the per-task cap."""
    total = 0.0
    for k in range(1, rollouts + 1):
        prob = math.comb(rollouts, k) * p**k * (1 - p) ** (rollouts - k)
        pairs = rollouts - k if cap is None else min(rollouts - k, cap)
        total += prob * pairs
    return total


def pair_yield(pass_rate: float, *, train_tasks: int, rollouts_per_task: int, target_pairs: int,
               per_task_cap: int | None = None, max_rollouts_per_task: int = 64) -> PairYield:
    expected = train_tasks * expected_pairs_per_task(pass_rate, rollouts_per_task, per_task_cap)
    needed = next((r for r in range(2, max_rollouts_per_task + 1)
                   if train_tasks * expected_pairs_per_task(pass_rate, r, per_task_cap) >= target_pairs), None)
    warning = None
    if needed is None:
        best = max(train_tasks * expected_pairs_per_task(pass_rate, r, per_task_cap)
                   for r in range(2, max_rollouts_per_task + 1))
        warning = (f"{train_tasks} train tasks at pass rate {pass_rate:.0%} cannot reach {target_pairs} pairs "
                   f"(at most ~{best:.0f} with up to {max_rollouts_per_task} rollouts per task): add tasks or lower the target")
    elif needed > rollouts_per_task:
        warning = (f"{rollouts_per_task} rollouts per task give ~{expected:.0f} pairs, short of {target_pairs}; "
                   f"{needed} per task are needed")
    return PairYield(pass_rate, train_tasks, rollouts_per_task, expected, target_pairs, needed, warning)
