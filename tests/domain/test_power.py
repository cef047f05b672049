"""Power before spend: the MDE of the gate's own ship rule under the stated prior, checked
against the real gate (stats.compare + gate.decide) on fresh simulated evals; and the
`dpo-tui power` command on the demo plan."""

from __future__ import annotations

import json
import random

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.cli import main
from dpo_tui.domain.gate import SHIP, GateCriteria, decide
from dpo_tui.domain.power import mde, normal_power, suite_power, tasks_needed
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
    assert "test: 5 tasks x 3 seeds can detect nothing" in capsys.readouterr().out
    assert main(["power", "--plan", str(demo_plan_path()), "--trials", "3"]) == 2
    assert capsys.readouterr().err == "dpo-tui: error: --trials: 3 is too few to estimate a rate (at least 50)\n"
