"""The eval part of the state summarises each suite per task: base and tuned passes of their
runs, a win, loss or tie, and the suite's tally; a replay of the log gives the same."""

from __future__ import annotations

from dpo_tui.campaign.state_eval import EVAL
from dpo_tui.domain.stats import compare
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.fold import fold

PER_TASK = {
    "t-win": {"base": [False, False, True], "tuned": [True, True, False]},
    "t-loss": {"base": [True, True, True], "tuned": [True, False, True]},
    "t-tie-pass": {"base": [True, True, True], "tuned": [True, True, True]},
    "t-tie-mixed": {"base": [True, False, False], "tuned": [False, False, True]},
}


def _results(c: Campaign, suite: str, per_task: dict) -> None:
    comparison = compare({t: v["base"] for t, v in per_task.items()}, {t: v["tuned"] for t, v in per_task.items()},
                         seed=7, k=2)
    c.append("eval.results", {"run_id": "run-1", "suite": suite, "comparison": comparison.to_json(),
                              "per_task": per_task, "metrics": {}, "serving": {"base": "b", "tuned": "t"}},
             actor="system")


def test_per_task_wins_losses_and_ties_per_suite(tmp_path):
    with Campaign.create(tmp_path / "c.db", name="t", actor="operator:t") as c:
        _results(c, "quixbugs", PER_TASK)
        _results(c, "humanevalfix", {"h1": {"base": [False, False], "tuned": [False, True]}})
        live = c.state.to_json()["eval"]
        replayed = fold(c.store.read()).part(EVAL).to_json()
    q = live["suites"]["quixbugs"]
    assert {t: v["result"] for t, v in q["per_task"].items()} == {
        "t-win": "win", "t-loss": "loss", "t-tie-pass": "tie", "t-tie-mixed": "tie"}
    assert q["per_task"]["t-win"] == {"base_passed": 1, "base_runs": 3, "tuned_passed": 2, "tuned_runs": 3,
                                      "result": "win"}
    assert (q["wins"], q["losses"], q["ties"]) == (1, 1, 2)
    h = live["suites"]["humanevalfix"]
    assert (h["wins"], h["losses"], h["ties"]) == (1, 0, 0)
    assert h["per_task"]["h1"]["tuned_passed"] == 1 and h["per_task"]["h1"]["base_runs"] == 2
    # the existing keys are still there, as report.py and the runner's summary read them
    assert set(q) >= {"base", "tuned", "delta", "ci", "p_value", "mde", "tasks", "runs", "serving"}
    assert q["tasks"] == 4 and q["base"]["pass@1"] == compare(
        {t: v["base"] for t, v in PER_TASK.items()}, {t: v["tuned"] for t, v in PER_TASK.items()}, seed=7).base_pass1
    assert replayed["suites"] == live["suites"]


def test_unequal_runs_compare_shares_not_counts(tmp_path):
    with Campaign.create(tmp_path / "c.db", name="t", actor="operator:t") as c:
        _results(c, "s", {"a": {"base": [True, False], "tuned": [True, True, False, False]},
                          "b": {"base": [True, False, False, False], "tuned": [True, False]}})
        per_task = c.state.to_json()["eval"]["suites"]["s"]["per_task"]
    # a: 1/2 against 2/4 is a tie though tuned passed more runs; b: 1/4 against 1/2 is a win
    assert per_task["a"]["result"] == "tie" and per_task["b"]["result"] == "win"
