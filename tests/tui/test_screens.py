"""Each stage pane at 80x24 on a real demo campaign: what an operator must see without
scrolling (issue 8, item 10), driven through the real App with Pilot."""

from __future__ import annotations

import re

import pytest

from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import make_app, settle
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def _state(db):
    with Campaign.open(db, readonly=True) as c:
        return c.state.to_json(), {k: v for k, v in c.state.parts.items()}


async def test_every_stage_shows_its_content_at_80x24(demo_db):
    state, _parts = _state(demo_db)
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        seen = {}
        for key in "1234567":
            await pilot.press(key)
            await settle(pilot, 0.2)
            seen[key] = screen_text(app)
            assert "Traceback" not in seen[key]
            assert len(seen[key].splitlines()) == 24

    head = seen["1"].splitlines()[:2]
    assert "[simulated]" in head[0] and "[read-only]" in head[0]
    assert f"${state['spend']['total_usd']:.3f}/$5.00 cap" in head[0]
    assert "split:frozen" in head[1] and head[1].rstrip().endswith("eval:-")  # every stage fits 80 columns

    budget = seen["1"]
    assert "calls" in budget and "$ est" in budget and "$ calib" in budget
    est = state["budget"]["estimate"]
    for stage, s in est["by_stage"].items():
        row = next(line for line in budget.splitlines() if line.strip().startswith(stage))
        assert f"{s['calls']:,.0f}" in row and f"${s['usd']:,.2f}" in row, row
    assert "pair yield" in budget
    flat = " ".join(budget.split())  # the pane's power line, wrapped at 80 columns
    assert "power (pilot's per-task pass rates): test 5 tasks x 3 seeds cannot detect any effect" in flat, budget

    split = seen["2"]
    assert "frozen" in split
    for task in state["split"]["train"] + state["split"]["test"]:
        side = "train" if task in state["split"]["train"] else "test"
        suite, name = task.split("/", 1)  # the name whole, its suite in a column of its own
        row = next(line for line in split.splitlines() if line.split()[:2] == [name, suite])
        assert re.search(rf"\b{side}\b", row), row

    rollouts = seen["3"]
    rows = [line for line in rollouts.splitlines() if re.search(r"/r\d+\s", line)]
    assert len(rows) >= 10
    assert all(re.search(r"\b(pass|fail)\b", r) for r in rows)
    r = state["rollouts"]
    assert f"rollouts {r['finished']}/{r['total']} ({r['passed']} pass)" in rollouts

    assert "Funnel: built" in seen["4"]
    assert f"built {state['pairs']['funnel']['built']}" in seen["4"]

    train = state.get("training") or {}
    if train.get("job_id"):
        assert train["job_id"] in seen["5"] and str(train["status"]) in seen["5"]
    else:
        assert "not run yet" in seen["5"]
    ev = state.get("eval") or {}
    if ev.get("suites"):
        assert "pass@1" in seen["6"] and f"decision: {ev['decision']}" in seen["6"]
    else:
        assert "not run yet" in seen["6"]

    log = seen["7"]
    assert "call.completed" in log or "rollout.finished" in log
    assert "chain: ok" in log


async def test_rollout_conversation_and_event_payload(demo_db):
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot, 0.1)
        await pilot.press("enter")  # the highlighted rollout
        await settle(pilot, 0.1)
        text = screen_text(app)
        assert "Rollout fixtures/" in text and "outcome" in text
        titles = [str(w.render()) for w in app.screen.query(".conv-title")]
        assert any(t.startswith("── assistant (repair, iteration 1") for t in titles), titles
        assert any(t.startswith("── iteration 1: tests") for t in titles), titles
        await pilot.press("escape")
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"type:split.approved")
        await pilot.press("escape")  # leaves the input: keys are commands again
        await pilot.press("7")  # focuses the table
        await settle(pilot, 0.3)
        text = screen_text(app)
        assert "split.approved" in text and "call.completed" not in text
        await pilot.press("enter")
        await settle(pilot, 0.1)
        body = str(app.screen.query_one("#text-body").render())
        assert "split.approved v1" in body and '"hash":' in body and "actor plan" in body


async def test_focus_goes_back_to_the_visible_pane_after_an_input_or_a_dialog(demo_db):
    """Issue 19 (keys): Escape out of the filter, or a dialog closing, leaves the focus in the
    visible pane, so its keys work at once and its footer shows them (not `q Quit` alone)."""
    from textual.widgets import DataTable, Input

    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        await pilot.pause()
        log_table = app.pane("log").query_one(DataTable)
        assert app.focused is log_table
        assert "Verify chain" in screen_text(app)  # the Log pane's keys are in the footer again
        await pilot.press("3")
        await settle(pilot, 0.1)
        await pilot.press("enter")  # a rollout's conversation: a dialog
        await settle(pilot, 0.1)
        assert "Rollout fixtures/" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot, 0.1)
        rollouts = app.pane("rollouts")
        assert app.focused is not None and rollouts in app.focused.ancestors_with_self
