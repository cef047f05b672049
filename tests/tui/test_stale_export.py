"""Pairs bind in the console: a pair rejected after the export makes it stale; Pairs says so,
and t on Train offers the re-export instead of uploading the stale file. The budget cap can be
set before the campaign has a plan, as `dpo-tui cap` can (one service, the same rules)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import ACTOR, events_of, make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def _manifest_ids(payload: dict) -> list[str]:
    return [json.loads(line)["pair_id"] for line in Path(payload["manifest_path"]).read_text().splitlines() if line]


async def test_t_on_a_stale_export_offers_the_re_export_and_trains_without_the_rejected_pair(demo_db):
    stale = events_of(demo_db, "pairs.exported")[-1].payload
    rejected = _manifest_ids(stale)[0]
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("4")
        table = app.query_one("#pairs-table")
        table.move_cursor(row=table.get_row_index(rejected))
        await pilot.pause()
        await pilot.press("x")
        await settle(pilot)
        assert "STALE" in screen_text(app)
        await pilot.press("5")
        await settle(pilot, 0.2)
        app.clear_notifications()
        await pilot.press("t")
        await pilot.pause()
        offer = screen_text(app)
        assert "Re-export the pairs?" in offer and "stale" in offer
        assert events_of(demo_db, "train.file_uploaded") == []  # nothing uploaded while it asks
        app.last_result = None
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None and app.last_result is not None, timeout=180)
        await settle(pilot)
    (upload,) = events_of(demo_db, "train.file_uploaded")
    fresh = events_of(demo_db, "pairs.exported")[-1]
    assert fresh.actor == ACTOR and fresh.payload["supersedes"] == stale["together_sha256"]
    assert upload.payload["export_sha256"] == fresh.payload["together_sha256"] != stale["together_sha256"]
    assert rejected not in _manifest_ids(fresh.payload) and rejected in _manifest_ids(stale)
    assert ("export_pairs:2", ACTOR) in [(e.payload["decision"], e.actor) for e in events_of(demo_db, "decision.recorded")]


async def test_cap_on_a_campaign_without_a_plan_uses_the_same_service(tmp_path):
    db = tmp_path / "bare.db"
    Campaign.create(db, name="bare", actor="operator:tester").close()
    app = make_app(db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("1", "c")
        await pilot.pause()
        assert "Set the budget cap" in screen_text(app) and "no plan yet" in screen_text(app)
        app.screen.query_one("#cap-amount").value = "1.5"
        await pilot.press("enter")  # on to the reason; left empty, the service's rule refuses it
        app.screen.query_one("#cap-reason").value = "   "
        await pilot.press("enter")
        await pilot.pause()
        assert "a reason is required (it is logged with your name)" in screen_text(app)
        app.screen.query_one("#cap-reason").value = "before the plan"
        await pilot.press("enter")
        await settle(pilot)
    caps = [(e.payload["cap_usd"], e.payload["reason"], e.actor) for e in events_of(db, "budget.cap_set")]
    assert caps == [(1.5, "before the plan", ACTOR)]
