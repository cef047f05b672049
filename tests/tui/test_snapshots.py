"""Snapshot tests at 80x24 (pytest-textual-snapshot): a campaign built with a fixed clock and
id through the services, so every frame is the same on every run. Update on purpose with
`pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from dpo_tui.campaign.budget import plan_estimate, record_estimate
from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.campaign.runner import record_plan
from dpo_tui.campaign.split import propose_split
from dpo_tui.campaign.suites import load_plan_tasks
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import create_campaign
from dpo_tui.provider.prices import load_prices
from tests.tui.conftest import make_app, power_settled


def _fixed_clock() -> datetime:
    return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def fixed_db(tmp_path: Path) -> Path:
    db = tmp_path / "snap.db"
    prices = load_prices()
    plan = load_plan(demo_plan_path(), prices=prices)
    tasks = load_plan_tasks(plan)
    with Campaign(create_campaign(db, name="snapshot campaign", actor="plan", clock=_fixed_clock,
                                  campaign_id="0" * 32)) as c:
        record_plan(c, plan, demo_plan_path())
        inp, est = plan_estimate(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout))
        record_estimate(c, inp, est, prices=prices, train_tasks=inp.tasks, eval_tasks=inp.eval_tasks, actor="plan")
        propose_split(c, plan, tasks, actor="plan")
    return db


async def _settled(pilot) -> None:
    """The Budget pane's power line is computed in a thread: the frame is taken once it is in."""
    await pilot.app.workers.wait_for_complete()
    await power_settled(pilot)
    await pilot.pause()


def test_budget_snapshot(fixed_db, snap_compare):
    assert snap_compare(make_app(fixed_db), terminal_size=(80, 24), run_before=_settled)


def test_split_snapshot(fixed_db, snap_compare):
    assert snap_compare(make_app(fixed_db), press=["2"], terminal_size=(80, 24), run_before=_settled)


def test_approve_modal_snapshot(fixed_db, snap_compare):
    assert snap_compare(make_app(fixed_db), press=["2", "A"], terminal_size=(80, 24), run_before=_settled)


def test_eval_not_run_yet_snapshot(fixed_db, snap_compare):
    assert snap_compare(make_app(fixed_db), press=["6"], terminal_size=(80, 24), run_before=_settled)
