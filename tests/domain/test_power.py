"""Power before spend: the MDE of the gate's own ship rule under the stated prior, checked
against the real gate (stats.compare + gate.decide) on fresh simulated evals; and the
`dpo-tui power` command on the demo plan."""

from __future__ import annotations

import json
import random

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.cli import main
from dpo_tui.domain.gate import SHIP, GateCriteria, decide
from dpo_tui.domain.power import RateModel, mde, normal_power, suite_power, tasks_needed
from dpo_tui.domain.stats import compare
from tests.conftest import run_dpo_tui


def _gate_ship_rate(tasks: int, seeds: int, delta: float, trials: int, seed: int) -> float:
    rng, shipped = random.Random(seed), 0
    for rep in range(trials):
        base = {f"t{i}": [rng.random() < 0.5 for _ in range(seeds)] for i in range(tasks)}
        tuned = {f"t{i}": [rng.random() < 0.5 + delta for _ in range(seeds)] for i in range(tasks)}
        shipped += decide(GateCriteria("s"), {"s": compare(base, tuned, seed=rep)}).decision == SHIP
    return shipped / trials


def test_the_mde_is_what_the_real_gate_ships_80_percent_of_the_time():
    m = mde(12, 3, alpha=0.05, trials=1000, seed=1)
    assert m is not None and 0.2 < m < 0.5
    at, below = _gate_ship_rate(12, 3, m, 1000, 7), _gate_ship_rate(12, 3, m - 0.1, 300, 8)
    print(f"\n12 tasks x 3 seeds: MDE {m:.1%}; the real gate ships {at:.1%} at the MDE, {below:.1%} 10 points below")
    assert at >= 0.76 and below < 0.8  # 80% within Monte Carlo error (1,000 fresh trials: sd 1.3 points)
    assert mde(40, 3, alpha=0.05, trials=200) < m  # more tasks, a smaller MDE


def test_designs_that_can_detect_nothing_say_so():
    """5 tasks: 2^5 sign patterns, the most extreme has probability 1/32 > 0.025."""
    p = suite_power(5, 3, alpha=0.05, trials=100)
    assert (p.mde, p.detectable, p.aa_ship_rate) == (None, False, 0.0)
    assert p.to_json()["mde"] is None
    # 12 tasks x 1 seed under the prior: base 0.5, tuned at most 1.0, ~6 discordant tasks:
    assert mde(12, 1, alpha=0.05, trials=300) is None


def _gate_ship_rate_at(rates: RateModel, tasks: int, seeds: int, delta: float, trials: int, seed: int) -> float:
    """The real gate on fresh evals whose task rates follow `rates`; the tuned model closes the
    share f = delta / (1 - mean) of each task's headroom (a mean gain of delta)."""
    rng, shipped, draw, f = random.Random(seed), 0, rates.sampler(), delta / (1 - rates.mean)
    for rep in range(trials):
        ps = [draw(rng) for _ in range(tasks)]
        base = {f"t{i}": [rng.random() < p for _ in range(seeds)] for i, p in enumerate(ps)}
        tuned = {f"t{i}": [rng.random() < p + f * (1 - p) for _ in range(seeds)] for i, p in enumerate(ps)}
        shipped += decide(GateCriteria("s"), {"s": compare(base, tuned, seed=rep)}).decision == SHIP
    return shipped / trials


def test_the_pilots_per_task_variance_replaces_the_prior():
    """A pilot whose tasks all passed or all failed (2 rollouts each): mean 50% like the prior,
    but no run-to-run variance, so 40 tasks x 3 seeds detect less than the prior says (half
    of m(1-m) credited to the tasks' differences at most: a conservative cap); the real gate
    ships that MDE 80% of the time at the pilot's rates."""
    assert RateModel.from_pilot([(1, 1)] * 8) is None  # one rollout per task: no per-task variance
    same = RateModel.from_pilot([(1, 2)] * 6)  # every task split: the prior's own picture
    assert (same.mean, same.spread) == (0.5, 0.0) and mde(12, 3, alpha=0.05, trials=200, rates=same) == \
        mde(12, 3, alpha=0.05, trials=200)
    split = RateModel.from_pilot([(2, 2)] * 3 + [(0, 2)] * 3)
    assert (split.source, split.mean, split.spread, split.within()) == ("pilot", 0.5, 0.125, 0.125)
    assert "per-task pass-rate variance p(1-p) 0.000" in split.label
    prior, m = mde(40, 3, alpha=0.05, trials=400, seed=1), mde(40, 3, alpha=0.05, trials=400, seed=1, rates=split)
    assert m is not None and m < prior - 0.02
    at = _gate_ship_rate_at(split, 40, 3, m, 400, 5)
    print(f"\n40 tasks x 3 seeds: MDE {prior:.1%} under the prior, {m:.1%} at the pilot's rates; the gate ships {at:.1%}")
    assert at >= 0.75
    assert tasks_needed(0.05, 3, alpha=0.05, rates=split) < tasks_needed(0.05, 3, alpha=0.05)


def test_tasks_needed_has_the_power_it_claims():
    n = tasks_needed(0.25, 3, alpha=0.05, trials=300, seed=2)
    assert n is not None and 10 < n < 60
    assert _gate_ship_rate(n, 3, 0.25, 300, 9) >= 0.72
    big = tasks_needed(0.05, 3, alpha=0.05)  # beyond the simulated range: the normal limit
    assert big is not None and 400 < big < 700 and normal_power(big, 3, 0.05, alpha=0.05) >= 0.8
    assert tasks_needed(0.01, 1, alpha=0.05) is None  # more than 2,000 tasks


def test_power_command_on_the_demo_plan(capsys):
    res = run_dpo_tui("power", "--plan", demo_plan_path(), "--json", "--trials", "100")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["alpha"] == 0.05 and "0.5" in out["prior"]
    s = out["suites"]["test"]
    assert {"tasks", "seeds", "mde", "detectable", "tasks_needed", "aa_ship_rate", "aa_rollback_rate",
            "cost_usd"} <= set(s)
    assert (s["tasks"], s["seeds"], s["mde"], s["detectable"]) == (5, 3, None, False)
    assert s["tasks_needed"] > 100 and s["cost_usd"] > s["planned_cost_usd"] > 0
    assert main(["power", "--plan", str(demo_plan_path()), "--trials", "100"]) == 0
    assert ("test: 5 tasks x 3 seeds cannot detect any effect (5 tasks: the exact test cannot reject at alpha 0.05)"
            in capsys.readouterr().out)
    assert main(["power", "--plan", str(demo_plan_path()), "--trials", "3"]) == 2
    assert capsys.readouterr().err == "dpo-tui: error: --trials: 3 is too few to estimate a rate (at least 50)\n"


def _campaign_with_pilot(path, outcomes: dict[str, list[bool]]):
    """A campaign log whose pilot ran `outcomes` (task -> each pilot rollout's pass)."""
    from dpo_tui.events.campaign import Campaign

    ids = []
    with Campaign.create(path, name="t", actor="operator:t") as c:
        for task, runs in outcomes.items():
            for k, passed in enumerate(runs):
                rid = f"{task}/r{k}"
                ids.append(rid)
                c.append("rollout.started", {"rollout_id": rid, "task_id": task, "stage": "rollouts", "model": "m",
                                             "seed": k, "max_iters": 2, "reflections": False, "temperature": 0.7,
                                             "max_tokens": 64}, actor="system")
                c.append("rollout.finished", {
                    "rollout_id": rid, "outcome": "passed" if passed else "max_iters", "passed": passed, "tests": 4,
                    "tests_passed": 4 if passed else 0, "iterations": 1, "final_program": f"x = {k}", "calls": 1,
                    "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01}, actor="system")
        c.append("budget.pilot_calibrated", {"pilot": {}, "rollout_ids": ids, "estimate": {"total_usd": 1.0},
                                             "pair_yield": {}}, actor="system")
    return path


def test_power_and_estimate_use_the_pilot_once_there_is_one(tmp_path, capsys):
    """With --db of a campaign whose pilot ran, power (and estimate --json's power) come from the
    pilot's per-task pass rates and say so; a campaign without a pilot keeps the prior."""
    from dpo_tui.events.campaign import Campaign

    db = _campaign_with_pilot(tmp_path / "c.db", {f"t{i}": [i % 2 == 0] * 2 for i in range(6)})
    res = run_dpo_tui("power", "--plan", demo_plan_path(), "--db", db, "--json", "--trials", "100")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["source"], out["mean_pass_rate"], out["between_task_variance"]) == ("pilot", 0.5, 0.125)
    assert "12 rollouts on 6 tasks" in out["rates"]
    assert main(["power", "--plan", str(demo_plan_path()), "--db", str(db), "--trials", "100"]) == 0
    assert "source: the pilot's per-task pass rates: 12 rollouts on 6 tasks" in capsys.readouterr().out
    est = json.loads(run_dpo_tui("estimate", "--plan", demo_plan_path(), "--db", db, "--json").stdout)
    assert est["power"]["source"] == "pilot" and est["power"]["suites"]["test"]["detectable"] is False
    plain = json.loads(run_dpo_tui("estimate", "--plan", demo_plan_path(), "--json").stdout)["power"]
    assert plain["source"] == "prior" and plain["suites"]["test"]["mde"] is None
    assert main(["estimate", "--plan", str(demo_plan_path())]) == 0
    assert ("Power (under the prior, no pilot yet): this eval test (5 tasks x 3 seeds) cannot detect any effect "
            "(5 tasks: the exact test cannot reject at alpha 0.05)") in capsys.readouterr().out
    with Campaign.create(tmp_path / "empty.db", name="t", actor="operator:t"):
        pass
    none = json.loads(run_dpo_tui("power", "--plan", demo_plan_path(), "--db", tmp_path / "empty.db", "--json",
                                  "--trials", "50").stdout)
    assert none["source"] == "prior"
