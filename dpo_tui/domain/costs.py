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

import functools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from dpo_tui.domain.yields import Outcome, expected_pairs

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
    endpoint_minutes: float | None = 0.0  # a fixed guess per endpoint; None: from the eval's volume (below)
    endpoint_usd_per_hour: float = 0.0
    endpoints: int = 0
    token_uncertainty: float = 0.25
    # prompt growth: call i of a rollout carries the conversation before it, so its prompt is
    # prompt_tokens_per_call + (i - 1) x growth (the plan: completion + feedback tokens per call)
    prompt_growth_per_call: float = 0.0
    eval_prompt_growth_per_call: float = 0.0
    # endpoint minutes from volume: provisioning + the eval's tokens per endpoint / throughput,
    # or, once a pilot measured it, the eval's calls x wall seconds per call / concurrency
    provisioning_minutes: float = 0.0
    endpoint_tokens_per_s: float = 1500.0
    eval_seconds_per_call: float | None = None
    eval_concurrency: int = 8
    # endpoint minutes from the eval's own work, once the warm-up measured it (campaign/warmup.py):
    # a failing eval iteration's test run takes as long as its task's buggy program's did (the mean
    # over the eval tasks), a passing one `eval_pass_test_seconds`, a call `eval_call_seconds`; the
    # test runs share `test_workers` sandboxes; iterations split into failing and passing ones by
    # the per-iteration solve rate `eval_solve_rate`
    eval_fail_test_seconds: float | None = None
    eval_pass_test_seconds: float = 0.0
    eval_call_seconds: float | None = None
    eval_solve_rate: float = 0.2
    test_workers: int = 2
    # training: pairs expected (the pilot's yield; None before it: target_pairs)
    expected_pairs: float | None = None
    # a dedicated generator (usd_per_hour > 0, every replica): the rollouts cost its minutes, not
    # tokens: provisioning + the rollouts' tokens / its throughput, in started minutes
    generator_endpoint_usd_per_hour: float = 0.0
    generator_provisioning_minutes: float = 0.0
    generator_tokens_per_s: float = 1500.0  # every replica together, at the rollouts' concurrency
    rollout_concurrency: int = 8

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


def expected_iterations(solve_rate: float, max_iters: int) -> float:
    """Mean iterations of a rollout that stops at its first passing program or at max_iters,
    when each iteration passes with probability `solve_rate` given the ones before failed:
    sum over i < max_iters of (1 - solve_rate)^i."""
    return sum((1 - solve_rate) ** i for i in range(max_iters))


def max_calls_per_rollout(max_iters: int, reflections: bool) -> int:
    return max_iters + (max_iters - 1 if reflections else 0)


def grown_prompt(prompt: float, growth: float, calls: float) -> float:
    """Mean prompt tokens per call of a rollout of `calls` calls whose call i carries
    `prompt` + (i - 1) x `growth` tokens (the conversation so far)."""
    return prompt + growth * max(calls - 1, 0) / 2


def _agent_stage(rollouts: float, calls_per: float, max_calls_per: float, prompt: float, completion: float,
                 price: Price | None, unc: float, growth: float = 0.0) -> StageEstimate:
    calls = rollouts * calls_per
    mean_prompt = grown_prompt(prompt, growth, calls_per)
    tokens = calls * (mean_prompt + completion)
    if price is None:
        return StageEstimate(calls, tokens, 0.0, 0.0, 0.0)
    per_call = price.cost(mean_prompt, completion)
    worst = price.cost(grown_prompt(prompt, growth, max_calls_per), completion)
    return StageEstimate(calls, tokens, calls * per_call,
                         low_usd=rollouts * 1 * price.cost(prompt, completion) * (1 - unc),
                         high_usd=rollouts * max_calls_per * worst * (1 + unc))


def endpoint_minutes_each(inp: BudgetInputs, eval_tokens: float, eval_calls: float = 0.0) -> float:
    """Billed minutes per endpoint: the plan's fixed guess, else provisioning plus the eval's
    tokens per endpoint at the endpoint's throughput, counted in started minutes."""
    if inp.endpoint_minutes is not None:
        return inp.endpoint_minutes
    if not inp.endpoints:
        return 0.0
    if inp.eval_fail_test_seconds is not None:
        serving = eval_serving_seconds(inp, eval_tokens, eval_calls) / 60
    elif inp.eval_seconds_per_call is not None:  # every endpoint is up while the eval runs
        serving = eval_calls * inp.eval_seconds_per_call / max(inp.eval_concurrency, 1) / 60
    else:
        serving = eval_tokens / inp.endpoints / inp.endpoint_tokens_per_s / 60
    return float(math.ceil(inp.provisioning_minutes + serving)) if inp.provisioning_minutes + serving > 0 else 0.0


def eval_serving_seconds(inp: BudgetInputs, eval_tokens: float, eval_calls: float) -> float:
    """Wall seconds the eval's endpoints serve: the longest of its test runs on the test
    workers, its calls at the endpoints' pace, and each rollout's calls and tests one after
    the other, `eval_concurrency` rollouts at a time."""
    runs = inp.eval_tasks * inp.eval_runs * inp.eval_models
    passes = 1 - (1 - inp.eval_solve_rate) ** inp.max_iters  # a rollout's chance to end on a pass
    failing = max(inp.eval_avg_iters - passes, 0.0)
    tests = runs * (failing * (inp.eval_fail_test_seconds or 0.0) + passes * inp.eval_pass_test_seconds)
    if inp.eval_call_seconds is not None:
        calls = eval_calls * inp.eval_call_seconds
        model = calls / max(inp.eval_concurrency, 1)
    else:
        model = eval_tokens / max(inp.endpoints, 1) / inp.endpoint_tokens_per_s
        calls = model * max(inp.eval_concurrency, 1)
    return max(tests / max(inp.test_workers, 1), model, (calls + tests) / max(inp.eval_concurrency, 1))


def generator_endpoint_stage(inp: BudgetInputs, stage: StageEstimate) -> StageEstimate:
    """The rollouts on a dedicated generator: billed minutes = provisioning + the stage's tokens
    at the endpoint's throughput, in started minutes (the eval's endpoint model); low: half the
    provisioning and half the serving time; high: twice the serving time and a minute more."""
    per_min = inp.generator_endpoint_usd_per_hour / 60
    serving = stage.tokens / max(inp.generator_tokens_per_s, 1e-9) / 60
    minutes = math.ceil(inp.generator_provisioning_minutes + serving)
    low = per_min * max(1, math.ceil(inp.generator_provisioning_minutes / 2 + serving / 2))
    high = per_min * math.ceil(inp.generator_provisioning_minutes + 2 * serving + 1)
    return StageEstimate(stage.calls, stage.tokens, minutes * per_min, low_usd=low, high_usd=high)


def estimate(inp: BudgetInputs) -> Estimate:
    unc = inp.token_uncertainty
    rollouts = _agent_stage(inp.rollouts, inp.calls_per_rollout, max_calls_per_rollout(inp.max_iters, inp.reflections),
                            inp.prompt_tokens_per_call, inp.completion_tokens_per_call, inp.generator_price, unc,
                            inp.prompt_growth_per_call)
    if inp.generator_endpoint_usd_per_hour > 0:
        rollouts = generator_endpoint_stage(inp, rollouts)
    pairs = inp.target_pairs if inp.expected_pairs is None else min(inp.target_pairs, inp.expected_pairs)
    train_tokens = pairs * inp.pair_tokens * inp.dpo_epochs
    train_usd = max(train_tokens * inp.training_usd_per_mtok / 1e6, inp.training_minimum_usd)
    training = StageEstimate(0, train_tokens, train_usd,
                             low_usd=max(train_usd * (1 - unc), inp.training_minimum_usd), high_usd=train_usd * (1 + unc))
    eval_runs = inp.eval_tasks * inp.eval_runs * inp.eval_models
    evals = _agent_stage(eval_runs, inp.eval_avg_iters + inp.eval_avg_reflections,
                         max_calls_per_rollout(inp.max_iters, inp.reflections),
                         inp.eval_prompt_tokens_per_call, inp.eval_completion_tokens_per_call, inp.eval_price, unc,
                         inp.eval_prompt_growth_per_call)
    minutes = endpoint_minutes_each(inp, evals.tokens, evals.calls)
    ep_usd = inp.endpoints * minutes * inp.endpoint_usd_per_hour / 60
    if inp.endpoint_minutes is None and inp.endpoints:  # low: provisioning at half, high: twice the serving time
        per_min = inp.endpoints * inp.endpoint_usd_per_hour / 60
        serving = minutes - inp.provisioning_minutes
        low, high = per_min * max(1.0, inp.provisioning_minutes / 2 + serving / 2), per_min * (minutes + serving + 1)
    else:
        low, high = ep_usd * 0.5, ep_usd * 2.0
    endpoint = StageEstimate(0, 0, ep_usd, low_usd=low, high_usd=high)
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
    seconds: float | None = None  # wall time from its start to its finish, as logged


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
    first_prompt_tokens: float | None = None  # the fitted first call's prompt (None: not separable)
    prompt_growth_per_call: float | None = None  # the fitted tokens each later call adds
    seconds_per_call: float | None = None  # wall seconds per call at the stage's concurrency (None: not logged)
    tokens_per_rollout_s: float | None = None  # prompt + completion tokens per wall second of one rollout (median)


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
    first, growth = fit_prompt_growth([(r.calls, r.prompt_tokens) for r in pilot])
    timed = sorted(r.seconds / r.calls for r in pilot if r.seconds is not None and r.calls)
    per_call = timed[len(timed) // 2] if timed else None  # the median: robust to one rollout a crash stretched
    rates = sorted((r.prompt_tokens + r.completion_tokens) / r.seconds for r in pilot if r.seconds)
    return PilotSummary(
        first_prompt_tokens=first, prompt_growth_per_call=growth, seconds_per_call=per_call,
        tokens_per_rollout_s=rates[len(rates) // 2] if rates else None,
        rollouts=n, calls=calls,
        avg_iters=sum(r.iterations for r in pilot) / n,
        avg_reflections=sum(r.reflections for r in pilot) / n,
        prompt_tokens_per_call=sum(r.prompt_tokens for r in pilot) / max(calls, 1),
        completion_tokens_per_call=sum(r.completion_tokens for r in pilot) / max(calls, 1),
        cost_per_rollout=mean, cost_per_rollout_low=low, cost_per_rollout_high=high,
        pass_rate=sum(r.passed for r in pilot) / n, confidence=confidence, notes=notes)


def fit_prompt_growth(rollouts: Sequence[tuple[int, int]]) -> tuple[float | None, float | None]:
    """Least squares of total prompt tokens = first x c + growth x c (c - 1) / 2 over rollouts
    of c calls: (first, growth), or (None, None) when the calls do not vary enough to separate them."""
    rows = [(c, c * (c - 1) / 2, p) for c, p in rollouts if c > 0]
    saa = sum(a * a for a, _, _ in rows)
    sab = sum(a * b for a, b, _ in rows)
    sbb = sum(b * b for _, b, _ in rows)
    sap = sum(a * p for a, _, p in rows)
    sbp = sum(b * p for _, b, p in rows)
    det = saa * sbb - sab * sab
    if not rows or det <= 1e-9 * max(saa * sbb, 1.0):
        return None, None
    first, growth = (sap * sbb - sbp * sab) / det, (saa * sbp - sab * sap) / det
    if first <= 0 or growth < 0:
        return None, None
    return first, growth


def calibrated_estimate(inp: BudgetInputs, pilot: PilotSummary) -> Estimate:
    """The estimate redone with the pilot's measured figures; the rollout range is the
    pilot's bootstrap interval of cost per rollout, times the number of rollouts."""
    measured = replace(inp, avg_iters=pilot.avg_iters, avg_reflections=pilot.avg_reflections,
                       prompt_tokens_per_call=pilot.prompt_tokens_per_call, prompt_growth_per_call=0.0,
                       completion_tokens_per_call=pilot.completion_tokens_per_call)
    if pilot.first_prompt_tokens is not None:  # the eval's conversations grow as the pilot's did
        measured = replace(measured, eval_prompt_tokens_per_call=pilot.first_prompt_tokens,
                           eval_prompt_growth_per_call=pilot.prompt_growth_per_call or 0.0,
                           pair_tokens=pilot.first_prompt_tokens + 2 * pilot.completion_tokens_per_call)
    if pilot.seconds_per_call is not None:  # the eval's endpoints stay up as long as its rollouts take
        measured = replace(measured, eval_seconds_per_call=pilot.seconds_per_call)
    notes = pilot.notes
    if inp.generator_endpoint_usd_per_hour > 0 and pilot.tokens_per_rollout_s:
        # the pilot measured the dedicated generator's throughput: the rollouts' tokens per wall second
        measured = replace(measured, generator_tokens_per_s=measured_throughput(inp, pilot))
        notes = (*notes, f"dedicated generator: {measured.generator_tokens_per_s:,.0f} tokens/s measured by the pilot "
                         f"at concurrency {min(inp.rollout_concurrency, inp.rollouts)}")
    base = estimate(measured)
    if inp.generator_endpoint_usd_per_hour > 0:  # billed by the minute: the pilot's token costs are 0
        return Estimate(base.by_stage, calibrated=True, notes=notes)
    r = base.by_stage["rollouts"]
    rollouts = StageEstimate(r.calls, r.tokens, usd=inp.rollouts * pilot.cost_per_rollout,
                             low_usd=inp.rollouts * pilot.cost_per_rollout_low,
                             high_usd=inp.rollouts * pilot.cost_per_rollout_high)
    return Estimate({**base.by_stage, "rollouts": rollouts}, calibrated=True, notes=notes)


def measured_throughput(inp: BudgetInputs, pilot: PilotSummary) -> float:
    """A dedicated generator's tokens per second at the rollouts' concurrency: one rollout's
    median tokens per wall second (model time and test runs alike: the endpoint bills both)
    times the rollouts in flight."""
    return (pilot.tokens_per_rollout_s or 0.0) * max(1, min(inp.rollout_concurrency, inp.rollouts))


@dataclass(frozen=True)
class PairYield:
    pass_rate: float
    train_tasks: int
    rollouts_per_task: int
    expected_pairs: float
    target_pairs: int
    needed_rollouts_per_task: int | None  # None: no count up to the limit reaches the target
    warning: str | None
    model: str = "mean"  # "per-task": from each pilot task's own outcomes (domain/yields.py)
    mean_based_pairs: float | None = None  # what the mean pass rate alone would forecast
    pilot_tasks: int | None = None
    tasks_yielding: int | None = None  # pilot tasks whose outcomes disagree enough to give a pair


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
               per_task_cap: int | None = None, max_rollouts_per_task: int = 64,
               pilot_tasks: Mapping[str, Sequence[Outcome]] | None = None, min_margin: float = 0.2,
               seed: int = 0) -> PairYield:
    """The pairs the campaign can expect. With `pilot_tasks` (each pilot task's outcomes), per
    task through the funnel's rules (domain/yields.py); else from the mean pass rate alone."""
    def mean_based(r: int) -> float:
        return train_tasks * expected_pairs_per_task(pass_rate, r, per_task_cap)

    @functools.cache
    def per_task(r: int) -> tuple[float, int]:  # a seeded Monte Carlo: each r is computed once
        return expected_pairs(pilot_tasks or {}, train_tasks=train_tasks, rollouts=r, min_margin=min_margin,
                              per_task_cap=per_task_cap, seed=seed)

    if pilot_tasks:
        def forecast(r: int) -> float:
            return per_task(r)[0]
    else:
        forecast = mean_based
    expected = forecast(rollouts_per_task)
    needed = _fewest(forecast, target_pairs, 2, max_rollouts_per_task)
    warning = None
    if needed is None:
        best = forecast(max_rollouts_per_task)
        why = (f"{train_tasks} train tasks at pass rate {pass_rate:.0%}" if not pilot_tasks else
               f"{train_tasks} train tasks with these pilot outcomes")
        warning = (f"{why} cannot reach {target_pairs} pairs "
                   f"(at most ~{best:.0f} with up to {max_rollouts_per_task} rollouts per task): add tasks or lower the target")
    elif needed > rollouts_per_task:
        warning = (f"{rollouts_per_task} rollouts per task give ~{expected:.0f} pairs, short of {target_pairs}; "
                   f"{needed} per task are needed")
    if not pilot_tasks:
        return PairYield(pass_rate, train_tasks, rollouts_per_task, expected, target_pairs, needed, warning)
    yielding = per_task(rollouts_per_task)[1]
    return PairYield(pass_rate, train_tasks, rollouts_per_task, expected, target_pairs, needed, warning,
                     model="per-task", mean_based_pairs=mean_based(rollouts_per_task), pilot_tasks=len(pilot_tasks),
                     tasks_yielding=yielding)


def _fewest(forecast: Callable[[int], float], target: float, lo: int, hi: int) -> int | None:
    """The smallest r in [lo, hi] with forecast(r) >= target (forecast nondecreasing in r)."""
    if forecast(hi) < target:
        return None
    if forecast(lo) >= target:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if forecast(mid) >= target else (mid, hi)
    return hi
