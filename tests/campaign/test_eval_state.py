"""The eval part of the state summarises each suite per task: base and tuned passes of their
runs, a win, loss or tie, and the suite's tally; a replay of the log gives the same."""

from __future__ import annotations

from dpo_tui.campaign.state.eval import EVAL
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


def test_a_suite_where_no_task_differs_has_no_interval_in_state_report_and_console(tmp_path):
    """All ties: no interval (not a zero-width [+0.0%, +0.0%]), "no discordant tasks" in the
    state, the report's eval table and the gate's reason."""
    from dpo_tui.campaign.report import build, to_markdown
    from dpo_tui.domain.gate import GateCriteria, decide

    ties = {f"t{i}": {"base": [True, False], "tuned": [False, True]} for i in range(6)}
    with Campaign.create(tmp_path / "c.db", name="t", actor="operator:t") as c:
        _results(c, "test", ties)
        _results(c, "heldout", PER_TASK)
        suites = c.state.to_json()["eval"]["suites"]
        text = to_markdown(build(c))
    t = suites["test"]
    assert (t["ci"], t["ci_text"], t["discordant"]) == (None, "no discordant tasks", 0)
    assert t["ties"] == 6 and t["p_value"] == 1.0
    h = suites["heldout"]
    assert h["ci"] is not None and h["ci_text"] == f"[{h['ci'][0]:+.1%}, {h['ci'][1]:+.1%}]" and h["discordant"] == 2
    row = next(line for line in text.splitlines() if line.startswith("| test "))
    assert "no discordant tasks" in row and "+0.0%, +0.0%" not in row
    comparison = compare({t: v["base"] for t, v in ties.items()}, {t: v["tuned"] for t, v in ties.items()}, seed=0)
    assert "no discordant tasks" in decide(GateCriteria("test"), {"test": comparison}).reason
