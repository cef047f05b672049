"""The Pairs pane's thresholds are applied, not only previewed: T asks for a reason, logs
pairs.thresholds_set by the operator with the funnel rebuilt, and the funnel shown is the one
the preview promised; the Budget inputs say they are a what-if; read-only offers neither."""

from __future__ import annotations

import re

import pytest

from dpo_tui.tui.screens.modals import ReasonScreen
from tests.tui.conftest import ACTOR, events_of, make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def test_t_applies_the_previewed_thresholds_as_the_operators_decision(demo_db):
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        assert "the inputs below are a what-if" in screen_text(app) and "$ what if" in screen_text(app)
        await pilot.press("4")
        pane = app.pane("pairs")
        await wait_for(pilot, lambda: "(the plan's)" in screen_text(app))
        pane.query_one("#th-margin").value = "0.5"
        pane.query_one("#th-cap").value = "1"
        await wait_for(pilot, lambda: "what if: →" in screen_text(app) and "T applies" in screen_text(app))
        promised = int(re.search(r"what if: → (\d+) kept", screen_text(app)).group(1))
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        assert "min margin 0.5 and per-task cap 1" in " ".join(screen_text(app).split())
        await pilot.press(*"one clear win per task", "enter")
        await wait_for(pilot, lambda: bool(events_of(demo_db, "pairs.thresholds_set")), timeout=30)
        await wait_for(pilot, lambda: f"kept {promised};" in screen_text(app) and "STALE" in screen_text(app))
        assert "(set by the operator)" in screen_text(app)
    [decided] = events_of(demo_db, "pairs.thresholds_set")
    assert decided.actor == ACTOR and decided.payload == {"min_margin": 0.5, "per_task_cap": 1,
                                                          "reason": "one clear win per task"}
    last = events_of(demo_db, "pairs.built")[-1]
    assert last.seq == decided.seq + 1 and last.payload["filters"]["per_task_cap"] == 1
    assert sum(1 for p in last.payload["pairs"] if p["dropped_by"] is None) == promised


async def test_read_only_offers_no_apply(demo_db):
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: "Funnel:" in screen_text(app))
        assert "Apply thresholds" not in screen_text(app).splitlines()[-1]
        await pilot.press("T")
        await pilot.pause()
        assert not isinstance(app.screen, ReasonScreen)
    assert not events_of(demo_db, "pairs.thresholds_set")
