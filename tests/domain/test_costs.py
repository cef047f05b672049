from __future__ import annotations

import math

import pytest

from dpo_tui.domain.costs import (
    BudgetInputs, PilotRollout, Price, calibrated_estimate, estimate, expected_pairs_per_task, pair_yield,
    summarize_pilot,
)

P72 = Price(1.20, 1.20, "fixtures/prices.toml 2026-11-24")


def inputs(**over) -> BudgetInputs:
    base = dict(tasks=3000, rollouts_per_task=4, max_iters=10, avg_iters=10, avg_reflections=3, reflections=True,
                prompt_tokens_per_call=1500, completion_tokens_per_call=400, generator_price=P72,
                target_pairs=5000, pair_tokens=2000, dpo_epochs=2, training_usd_per_mtok=1.2)
    return BudgetInputs(**(base | over))


def test_sanity_case_from_the_original_plan():
    est = estimate(inputs())
    r = est.by_stage["rollouts"]
    assert r.calls == 156_000  # 12,000 rollouts x (10 iterations + 3 reflections)
    assert r.usd == pytest.approx(156_000 * (1500 * 1.20 + 400 * 1.20) / 1e6)  # $355.68 from the logged prices
    assert r.low_usd < r.usd <= r.high_usd
    assert est.by_stage["training"].tokens == 5000 * 2000 * 2
    assert est.by_stage["training"].usd == pytest.approx(20e6 * 1.2 / 1e6)
    assert est.total_usd == pytest.approx(sum(s.usd for s in est.by_stage.values()))
    assert est.to_json()["calls"] == 156_000


def test_uncalibrated_range_spans_first_try_to_every_iteration():
    est = estimate(inputs(tasks=10, rollouts_per_task=1, token_uncertainty=0.0))
    per_call = P72.cost(1500, 400)
    r = est.by_stage["rollouts"]
    assert r.low_usd == pytest.approx(10 * 1 * per_call)
    assert r.high_usd == pytest.approx(10 * 19 * per_call)  # 10 iterations + 9 reflections


def test_eval_and_endpoint_stages():
    est = estimate(inputs(eval_tasks=12, eval_runs=3, eval_avg_iters=2, eval_prompt_tokens_per_call=1000,
                          eval_completion_tokens_per_call=300, eval_price=None, endpoint_minutes=30,
                          endpoint_usd_per_hour=3.36, endpoints=2))
    assert est.by_stage["eval"].calls == 12 * 3 * 2 * 2 and est.by_stage["eval"].usd == 0.0
    assert est.by_stage["endpoint"].usd == pytest.approx(2 * 30 * 3.36 / 60)


def test_pilot_calibration_uses_measured_figures_and_a_bootstrap_interval():
    pilot = [PilotRollout(calls=c, iterations=c, reflections=0, prompt_tokens=c * 800, completion_tokens=c * 200,
                          cost_usd=P72.cost(c * 800, c * 200), passed=c < 4) for c in (1, 2, 3, 5, 1, 2, 2, 5, 3, 1)]
    s = summarize_pilot(pilot, seed=1)
    assert s.avg_iters == 2.5 and s.prompt_tokens_per_call == 800 and s.pass_rate == 0.8
    assert s.cost_per_rollout_low < s.cost_per_rollout < s.cost_per_rollout_high
    assert summarize_pilot(pilot, seed=1) == s  # seeded: the same pilot gives the same interval
    cal = calibrated_estimate(inputs(tasks=100, rollouts_per_task=2, reflections=False), s)
    assert cal.calibrated and cal.by_stage["rollouts"].usd == pytest.approx(200 * s.cost_per_rollout)
    assert cal.by_stage["rollouts"].calls == pytest.approx(200 * 2.5)


def test_expected_pairs_matches_the_closed_form_without_cap():
    for p in (0.1, 0.5, 0.9):
        for r in (2, 4, 8):
            closed = r * (1 - p) - r * (1 - p) ** r
            assert expected_pairs_per_task(p, r) == pytest.approx(closed)
    assert expected_pairs_per_task(0.5, 8, cap=1) == pytest.approx(1 - 0.5**8 - 0.5**8)


def test_pair_yield_finds_rollouts_needed_and_warns_when_unreachable():
    y = pair_yield(0.5, train_tasks=100, rollouts_per_task=2, target_pairs=200)
    assert y.needed_rollouts_per_task is not None and y.needed_rollouts_per_task > 2 and "needed" in y.warning
    assert 100 * expected_pairs_per_task(0.5, y.needed_rollouts_per_task) >= 200
    assert 100 * expected_pairs_per_task(0.5, y.needed_rollouts_per_task - 1) < 200
    bad = pair_yield(0.01, train_tasks=5, rollouts_per_task=4, target_pairs=10_000, per_task_cap=3)
    assert bad.needed_rollouts_per_task is None and "cannot reach" in bad.warning
    ok = pair_yield(0.5, train_tasks=100, rollouts_per_task=8, target_pairs=50)
    assert ok.warning is None and not math.isnan(ok.expected_pairs)


def test_prompts_grow_with_the_conversation_and_the_pilot_fits_the_growth():
    from dpo_tui.domain.costs import fit_prompt_growth, grown_prompt

    flat = estimate(inputs(tasks=10, rollouts_per_task=1, avg_iters=4, avg_reflections=0))
    grown = estimate(inputs(tasks=10, rollouts_per_task=1, avg_iters=4, avg_reflections=0, prompt_growth_per_call=500))
    # 4 calls: prompts 1500, 2000, 2500, 3000 -> a mean of 2250 per call, not 1500
    assert grown_prompt(1500, 500, 4) == 2250
    assert grown.by_stage["rollouts"].usd == pytest.approx(40 * P72.cost(2250, 400))
    assert grown.by_stage["rollouts"].usd > flat.by_stage["rollouts"].usd
    rollouts = [(c, c * 300 + 200 * c * (c - 1) // 2) for c in (1, 2, 4, 5, 3)]
    first, growth = fit_prompt_growth(rollouts)
    assert first == pytest.approx(300) and growth == pytest.approx(200)
    assert fit_prompt_growth([(3, 900), (3, 950)]) == (None, None)  # the same length: not separable


def test_endpoint_minutes_come_from_the_eval_volume_in_started_minutes():
    common = dict(eval_tasks=10, eval_runs=3, eval_avg_iters=2, eval_prompt_tokens_per_call=1000,
                  eval_completion_tokens_per_call=250, eval_price=None, endpoint_usd_per_hour=6.0, endpoints=2,
                  endpoint_minutes=None, provisioning_minutes=10, endpoint_tokens_per_s=100)
    est = estimate(inputs(**common))
    tokens = 10 * 3 * 2 * 2 * 1250  # 150,000 tokens, 75,000 per endpoint at 100/s: 12.5 min serving
    assert est.by_stage["eval"].tokens == tokens
    assert est.by_stage["endpoint"].usd == pytest.approx(2 * 23 * 6.0 / 60)  # ceil(10 + 12.5) started minutes
    more = estimate(inputs(**(common | {"eval_tasks": 40})))
    assert more.by_stage["endpoint"].usd > est.by_stage["endpoint"].usd  # no longer a flat guess


def test_calibrated_training_is_priced_on_the_pairs_the_yield_expects():
    pilot = [PilotRollout(calls=c, iterations=c, reflections=0, prompt_tokens=c * 800, completion_tokens=c * 200,
                          cost_usd=P72.cost(c * 800, c * 200), passed=c < 4) for c in (1, 2, 3, 5, 1, 2, 2, 5, 3, 1)]
    s = summarize_pilot(pilot, seed=1)
    few = calibrated_estimate(inputs(tasks=100, rollouts_per_task=2, reflections=False, expected_pairs=50.0), s)
    many = calibrated_estimate(inputs(tasks=100, rollouts_per_task=2, reflections=False), s)
    assert few.by_stage["training"].tokens == pytest.approx(many.by_stage["training"].tokens * 50 / 5000)


def test_after_a_pilot_endpoint_minutes_follow_its_wall_time_per_call():
    pilot = [PilotRollout(calls=4, iterations=3, reflections=1, prompt_tokens=2000, completion_tokens=400,
                          cost_usd=0.01, passed=False, seconds=s) for s in (8.0, 12.0, 10.0, 900.0)]
    s = summarize_pilot(pilot, seed=1)
    assert s.seconds_per_call == pytest.approx(3.0)  # the median: one stretched rollout does not count
    inp = inputs(tasks=10, rollouts_per_task=1, eval_tasks=20, eval_runs=3, eval_avg_iters=4, eval_avg_reflections=0,
                 eval_price=None, endpoint_minutes=None, endpoint_usd_per_hour=6.0, endpoints=2,
                 provisioning_minutes=2, eval_concurrency=8)
    cal = calibrated_estimate(inp, s)
    # 20 tasks x 3 runs x 2 arms x 4 calls = 480 calls x 3 s / 8 in flight = 180 s: 2 + 3 = 5 minutes each
    assert cal.by_stage["endpoint"].usd == pytest.approx(2 * 5 * 6.0 / 60)


def test_after_the_warm_up_endpoint_minutes_follow_the_eval_tasks_own_test_time():
    """QuixBugs' shape: one eval task's buggy program loops to the CPU limit on every test (9 s
    a run), the others take 0.1 s. A failing eval iteration takes its task's buggy program's
    time, the test runs share the test workers, and the minutes follow: more workers or a
    faster suite, fewer minutes; the pilot's wall time per call would have said 1 minute."""
    from dpo_tui.domain.costs import eval_serving_seconds

    base = dict(tasks=28, rollouts_per_task=2, max_iters=4, eval_tasks=12, eval_runs=3, eval_avg_iters=2.95,
                eval_avg_reflections=1.95, eval_price=None, endpoint_minutes=None, endpoint_usd_per_hour=5.49,
                endpoints=2, provisioning_minutes=0.1, eval_concurrency=8, eval_solve_rate=0.2,
                eval_pass_test_seconds=0.15, eval_call_seconds=0.1, test_workers=2)
    looping = inputs(**base, eval_fail_test_seconds=(9.0 + 11 * 0.1) / 12)
    est = estimate(looping)
    calls = est.by_stage["eval"].calls
    # 72 rollouts x (2.36 failing x 0.84 s + 0.59 passing x 0.15 s) = 149 s of tests on 2 workers
    assert eval_serving_seconds(looping, est.by_stage["eval"].tokens, calls) == pytest.approx(74.6, abs=1.0)
    assert est.by_stage["endpoint"].usd == pytest.approx(2 * 2 * 5.49 / 60)  # ceil(0.1 + 1.24) = 2 minutes each
    fast = estimate(inputs(**base, eval_fail_test_seconds=0.1))
    assert fast.by_stage["endpoint"].usd == pytest.approx(2 * 1 * 5.49 / 60)
    wide = estimate(inputs(**(base | {"test_workers": 8}), eval_fail_test_seconds=(9.0 + 11 * 0.1) / 12))
    assert wide.by_stage["endpoint"].usd < est.by_stage["endpoint"].usd
    # calls-bound: slow calls dominate the test runs
    slow = inputs(**(base | {"eval_call_seconds": 5.0}), eval_fail_test_seconds=0.1)
    assert eval_serving_seconds(slow, 0, calls) == pytest.approx((calls * 5.0 + 72 * (2.36 * 0.1 + 0.59 * 0.15)) / 8,
                                                                 rel=0.01)


def _truth_campaign(rng, kinds, per_task, pilot_tasks, pilot_n=2, repeated=None):
    """Rollout outcomes of a campaign drawn from per-task pass probabilities (a failure passes
    1 of 4 tests), the pilot being the first `pilot_n` of `pilot_tasks` tasks' rollouts (with
    `repeated`: one rollout of each pilot task and a second of the first `repeated` of them,
    the product's pilot)."""
    from dpo_tui.domain.pairs import RolloutOutcome
    from dpo_tui.domain.yields import Outcome

    rollouts, pilot = [], {}
    for i, p in enumerate(kinds):
        for k in range(per_task):
            ok = rng.random() < p
            prog = f"t{i}.{k}.{rng.random()}"
            rollouts.append(RolloutOutcome(f"t{i}/r{k}", f"t{i}", f"x = '{prog}'", 4 if ok else 1, 4, ok, 1))
            n = pilot_n if repeated is None else (2 if i < repeated else 1)
            if i < pilot_tasks and k < n:
                pilot.setdefault(f"t{i}", []).append(Outcome(ok, 1.0 if ok else 0.25, f"x = '{prog}'"))
    return rollouts, pilot


SHAPES = {  # per-task pass probabilities of 28 train tasks
    "issue 21's QuixBugs: 18 always solved, 5 never, 5 half the time": [1.0] * 18 + [0.0] * 5 + [0.5] * 5,
    "mostly solved": [1.0] * 10 + [0.8] * 10 + [0.3] * 8,
    "hard": [0.0] * 14 + [0.2] * 10 + [0.7] * 4,
    "spread": [(i + 0.5) / 28 for i in range(28)],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pair_yield_from_the_products_own_pilot_lands_near_what_the_funnel_builds(shape):
    """The product's pilot (8 train tasks once, 4 of them twice), drawn from each truth 30
    times, 4 rollouts per task, the funnel's own rules: the per-task forecast lands within
    35% of the real funnel's pairs on average, and within 60% on the median campaign. The
    mean pass rate alone over-promises on suites of always- and never-solved tasks. (Before
    rho was integrated over its posterior, a pilot whose 4 repeats happened to agree
    forecast no pair from any task the pilot did not reach: 0 against QuixBugs' 8.)"""
    import random

    from dpo_tui.domain.pairs import PairFilters, build_pairs, filter_pairs
    from dpo_tui.domain.yields import expected_pairs

    kinds = list(SHAPES[shape])
    random.Random(5).shuffle(kinds)
    cap, margin, per_task = 3, 0.2, 4
    got, built, errors = [], [], []
    for rep in range(30):
        rollouts, pilot = _truth_campaign(random.Random(100 + rep), kinds, per_task, pilot_tasks=8, repeated=4)
        built.append(len(filter_pairs(build_pairs(rollouts), PairFilters(min_margin=margin, per_task_cap=cap),
                                      pair_tokens=lambda p: 0, test_tasks=()).kept))
        got.append(expected_pairs(pilot, train_tasks=28, rollouts=per_task, min_margin=margin, per_task_cap=cap,
                                  seed=rep, draws=100)[0])
        errors.append(abs(got[-1] / max(built[-1], 1) - 1))
    actual, forecast = sum(built) / len(built), sum(got) / len(got)
    median = sorted(errors)[len(errors) // 2]
    print(f"\n{shape}: the real funnel {actual:.1f} pairs; forecast {forecast:.1f}; median campaign error {median:.0%}")
    assert abs(forecast - actual) <= 0.35 * actual and median <= 0.6


def test_pair_yield_follows_each_tasks_own_outcomes_not_the_mean():
    """The mean pass rate alone promises ~2x what the funnel builds on issue 21's QuixBugs
    shape; a pilot whose tasks each repeat themselves (all passed, or all failed alike) leans
    rho high and forecasts them far less than the mean would, without claiming certainty."""
    import random

    from dpo_tui.domain.yields import Outcome, rho_posterior, task_expected_pairs

    kinds = list(SHAPES["issue 21's QuixBugs: 18 always solved, 5 never, 5 half the time"])
    random.Random(5).shuffle(kinds)
    cap, margin, per_task = 3, 0.2, 4
    from dpo_tui.domain.pairs import PairFilters, build_pairs, filter_pairs

    built, naive = [], []
    for rep in range(30):
        rollouts, pilot = _truth_campaign(random.Random(100 + rep), kinds, per_task, pilot_tasks=10)
        built.append(len(filter_pairs(build_pairs(rollouts), PairFilters(min_margin=margin, per_task_cap=cap),
                                      pair_tokens=lambda p: 0, test_tasks=()).kept))
        rate = sum(o.passed for outs in pilot.values() for o in outs) / 20
        naive.append(28 * expected_pairs_per_task(rate, per_task, cap))
    assert sum(naive) > 1.8 * sum(built)

    alike = {"a": [Outcome(True, 1.0, "a1"), Outcome(True, 1.0, "a2")],
             "b": [Outcome(False, 0.25, "b1"), Outcome(False, 0.25, "b2")],
             "c": [Outcome(True, 1.0, "c1"), Outcome(True, 1.0, "c2")]}
    post = rho_posterior(alike)
    mean_rho = sum(r * w for r, w in post)
    assert 0.5 < mean_rho < 0.9, mean_rho
    pool = [o for outs in alike.values() for o in outs]
    assert all(task_expected_pairs(o, per_task, pool=pool, c=0.0, min_margin=margin, per_task_cap=cap) == 0.0
               for o in alike.values())  # with c = 0 (rho = 1) a task only repeats itself
    y = pair_yield(0.67, train_tasks=28, rollouts_per_task=per_task, target_pairs=40, per_task_cap=cap,
                   pilot_tasks=alike, min_margin=margin, seed=3)
    assert y.model == "per-task" and (y.pilot_tasks, y.tasks_yielding) == (3, 0)
    assert y.expected_pairs < y.mean_based_pairs / 2, (y.expected_pairs, y.mean_based_pairs)
    assert y.mean_based_pairs > 25 and ("short of 40" in y.warning or "cannot reach 40 pairs" in y.warning)
    assert y.needed_rollouts_per_task is None or y.needed_rollouts_per_task > 4 * per_task


def test_the_pilots_interval_holds_a_bimodal_stages_true_cost_about_as_often_as_it_says():
    """A repair rollout either passes on its first call or fails every iteration (the demo's
    72B: ~70% pass, the failures cost ~16x): a 12-rollout pilot's mean misses the stage's true
    cost per rollout by ~30% at the median, so the point cannot promise 15% there; its 90%
    interval is the claim, and over 300 pilots it holds the truth near 90% of the time."""
    import random

    def draw(rng: random.Random) -> PilotRollout:
        if rng.random() < 0.7:
            return PilotRollout(calls=1, iterations=1, reflections=0, prompt_tokens=350, completion_tokens=110,
                                cost_usd=0.0005, passed=True)
        return PilotRollout(calls=6, iterations=4, reflections=2, prompt_tokens=3000, completion_tokens=700,
                            cost_usd=0.008, passed=False)

    truth = 0.7 * 0.0005 + 0.3 * 0.008
    rng, trials, covered, errors = random.Random(7), 300, 0, []
    for t in range(trials):
        s = summarize_pilot([draw(rng) for _ in range(12)], seed=t, resamples=400)
        covered += s.cost_per_rollout_low <= truth <= s.cost_per_rollout_high
        errors.append(abs(s.cost_per_rollout / truth - 1))
    coverage = covered / trials
    # 300 trials: a 90% interval's observed coverage has a standard error of ~1.7 points
    assert 0.84 <= coverage <= 0.96, coverage
    print(f"\ncoverage {coverage:.1%}; median |point error| {sorted(errors)[trials // 2]:.0%}")
