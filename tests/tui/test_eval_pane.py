"""The Eval pane through the real App on the embedded simulator: the eval asks with the
endpoints' estimated cost, runs base against tuned and shows pass@1 per suite, the gate's
verdict and the per-task wins and losses; the gate's override needs a written reason, is
logged as the operator, and --readonly offers none of it. `dpo-tui override` and `dpo-tui
cancel` log (and refuse) what the console does on the same evaluated campaign."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.events.campaign import Campaign
from dpo_tui.tui.widgets.header import SHORT
from tests.tui.conftest import (
    ACTOR,
    copy_campaign,
    copy_with_sim,
    evaluated_template,  # noqa: F401 - the session's evaluated campaign
    events_of,
    make_app,
    settle,
    wait_for,
)
from tests.campaign.test_console_twins import twins  # noqa: F401 - a console copy and a CLI copy of a campaign
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def _count(db: Path) -> int:
    """Events in the log, not counting the chain's checkpoints (a decision is sealed by one)."""
    with Campaign.open(db, readonly=True) as c:
        return sum(1 for e in c.store.read(verify=False) if e.type != "chain.checkpoint")


def _eval_state(db: Path) -> dict:
    with Campaign.open(db, readonly=True) as c:
        return c.state.to_json()["eval"]


async def test_eval_asks_with_the_endpoint_cost_runs_and_shows_the_verdict_and_per_task_results(
        trained_template, tmp_path):
    db = copy_with_sim(trained_template, tmp_path)
    with Campaign.open(db, readonly=True) as c:
        b = c.state.part(BUDGET)
        endpoint_usd = (b.calibrated or b.latest)["by_stage"]["endpoint"]["usd"]
        plan, sp = load_plan(demo_plan_path()), c.state.part("split")
        planned = 2 * len(plan.eval.seeds) * (len(sp.split.test) * ("test" in plan.eval.suites)
                                              + len(sp.heldout) * ("heldout" in plan.eval.suites))
    app = make_app(db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6")
        assert "not run yet" in screen_text(app)
        await pilot.press("o")  # no gate decision yet
        await pilot.pause()
        assert app.screen is app.screen_stack[0] and "nothing to override" in screen_text(app)
        await pilot.press("e")
        await pilot.pause()
        modal = screen_text(app)
        assert "Run the eval?" in modal and f"estimated ${endpoint_usd:.3f}" in modal
        assert "Start 1 dedicated endpoint for base and tuned" in " ".join(modal.split())  # one shared deployment
        await pilot.press("y")

        def running_shown() -> bool:  # the Eval pane while it runs: n of the plan's N, the endpoint
            shown = re.search(r"running: samples (\d+)/(\d+)", screen_text(app))
            return bool(shown) and int(shown.group(2)) == planned and "base endpoint" in screen_text(app)

        await wait_for(pilot, lambda: running_shown() or app.session.gate() is not None, timeout=180, step=0.05)
        assert running_shown(), screen_text(app)
        await wait_for(pilot, lambda: app.working is None and app.session.gate() is not None, timeout=180)
        await settle(pilot)
        text = screen_text(app)
    run_eval = [e for e in events_of(db, "decision.recorded") if e.payload["decision"] == "run_eval"]
    assert [(e.actor, e.payload["estimate_usd"]) for e in run_eval] == [(ACTOR, endpoint_usd)]
    assert events_of(db, "eval.results") and len(events_of(db, "decision.gate")) == 1
    started, stopped = events_of(db, "endpoint.started"), events_of(db, "endpoint.stopped")
    # base, the tuned adapter attached to it (the rollouts' dedicated generator ran before training)
    assert [e.payload["role"] for e in started] == ["generator", "base"] and len(stopped) == len(started)
    [attached] = events_of(db, "endpoint.adapter_attached")
    assert attached.payload["endpoint_id"] == started[1].payload["endpoint_id"]

    ev = _eval_state(db)
    assert "pass@1" in text and f"decision: {ev['decision']} (by system)" in text
    lines = text.splitlines()
    for suite, r in ev["suites"].items():
        row = next(line for line in lines if line.lstrip().startswith(suite) and "[" in line)
        assert f"{r['base']['pass@1']:.1%}" in row and f"{r['tuned']['pass@1']:.1%}" in row, row
        assert f"{suite}: wins {r['wins']}, losses {r['losses']}, ties {r['ties']}" in text
        assert r["wins"] + r["losses"] + r["ties"] == r["tasks"]
    task_rows = [(suite, task, o) for suite, r in ev["suites"].items() for task, o in r["per_task"].items()]
    shown = []
    for suite, task, o in task_rows:
        row = next(line for line in lines if f" {task} " in line)
        assert row.split() == [suite, task, f"{o['base_passed']}/{o['base_runs']}",
                               f"{o['tuned_passed']}/{o['tuned_runs']}", o["result"]], row
        shown.append((lines.index(row), o["result"]))
    order = [result for _i, result in sorted(shown)]
    assert order == sorted(order, key=["loss", "win", "tie"].index)  # losses, then wins, then ties


async def test_gate_override_needs_a_written_reason_and_is_logged_as_the_operator(evaluated_template, tmp_path):
    from textual.widgets import RadioButton

    from dpo_tui.tui.screens.modals import OverrideScreen

    db = copy_campaign(evaluated_template, tmp_path)
    gate = events_of(db, "decision.gate")[-1].payload
    choices = [d for d in ("ship", "rollback", "inconclusive") if d != gate["decision"]]
    reason = "the CI is too wide to act on"
    before = _count(db)
    app = make_app(db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6", "o")
        await pilot.pause()
        assert isinstance(app.screen, OverrideScreen)
        modal = screen_text(app)
        assert f"the decision now is {gate['decision']}" in modal and f"criterion: {gate['criterion']}" in modal
        assert [str(b.label) for b in app.screen.query(RadioButton)] == choices  # all but the current one
        await pilot.press("right", "enter", "tab", *"too short", "enter")  # the second choice; 9 characters
        await pilot.pause()
        assert isinstance(app.screen, OverrideScreen)  # refused inside the modal
        assert "an override needs a written reason (a sentence, at least 10" in screen_text(app)  # the service's words
        assert _count(db) == before
        app.screen.query_one("#override-reason").value = ""
        await pilot.press(*reason, "enter")
        await settle(pilot)
        assert app.screen is app.screen_stack[0]
        text = screen_text(app)
    ev = events_of(db, "decision.gate_overridden")
    assert [(e.actor, e.payload["decision"], e.payload["previous"], e.payload["reason"]) for e in ev] == [
        (ACTOR, choices[1], gate["decision"], reason)]
    assert _count(db) == before + 1
    assert f"decision: {choices[1]}, overridden by {ACTOR} (the gate said {gate['decision']})" in text
    assert f"criterion: operator override; reason: {reason}" in text
    header = text.splitlines()[:2]
    assert "[gate overridden]" in header[0] and f"eval:{SHORT.get(choices[1], choices[1])}" in header[1], header

    ro = make_app(db, readonly=True)
    async with ro.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6", "o")
        await settle(pilot)
        assert ro.screen is ro.screen_stack[0]  # no modal
        text = screen_text(ro)
        assert "Override gate" not in text and f"overridden by {ACTOR}" in text
    assert _count(db) == before + 1


async def test_the_eval_pane_says_no_discordant_tasks_instead_of_a_zero_width_interval(tmp_path):
    from dpo_tui.domain.stats import compare

    ties = {f"t{i}": {"base": [True], "tuned": [True]} for i in range(4)}
    comparison = compare({t: v["base"] for t, v in ties.items()}, {t: v["tuned"] for t, v in ties.items()}, seed=0)
    db = tmp_path / "ties.db"
    with Campaign.create(db, name="ties", actor=ACTOR) as c:
        c.append("eval.results", {"run_id": "run-1", "suite": "test", "comparison": comparison.to_json(),
                                  "per_task": ties, "metrics": {}, "serving": {"base": "b", "tuned": "t"}},
                 actor="system")
    app = make_app(db, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot, 0.2)
        text = screen_text(app)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("test "))
    assert "no discordant" in row and "[0.0%, 0.0%]" not in row
    assert "test: wins 0, losses 0, ties 4; no discordant tasks: no interval" in text


# -- the gate's override and the job's cancel headless: the same events as the console ------------


def test_override_logs_the_same_events_headless(evaluated_template, twins):
    t = twins(evaluated_template)
    with Campaign.open(evaluated_template, readonly=True) as c:
        e = c.state.part("eval")
        run_id, decision = e.latest, e.runs[e.latest].decision
    new = next(d for d in ("ship", "rollback", "inconclusive") if d != decision)
    assert t.step(lambda s: s.override_gate(new, "too short"), "override", "--decision", new,
                  "--reason", "too short")[0].startswith("an override needs a written reason")
    assert t.step(lambda s: s.override_gate(decision, "the same decision again"), "override", "--decision", decision,
                  "--reason", "the same decision again")[0] == f"the decision is already {decision}: an override changes it"
    _, out = t.step(lambda s: s.override_gate(new, "the held-out suite is too small to trust"), "override",
                    "--decision", new, "--reason", "the held-out suite is too small to trust", "--json")
    (ev,) = [e for e in json.loads(out)["events"] if e["type"] != "chain.checkpoint"]
    assert (ev["type"], ev["actor"]) == ("decision.gate_overridden", "operator:alice")
    assert ev["payload"] == {"run_id": run_id, "decision": new, "previous": decision,
                             "reason": "the held-out suite is too small to trust"}


def test_cancel_of_a_finished_job_is_refused_alike(evaluated_template, twins):
    t = twins(evaluated_template)
    refused, _ = t.step(lambda s: s.cancel_training("wrong beta"), "cancel", "--reason", "wrong beta")
    assert re.fullmatch(r"job \S+ already completed", refused), refused
    refused, _ = t.step(lambda s: setattr(s, "run_id", "run-9") or s.cancel_training("wrong beta"), "cancel",
                        "--run-id", "run-9", "--reason", "wrong beta")
    assert refused == "no DPO job has been launched in this campaign for run 'run-9'"
