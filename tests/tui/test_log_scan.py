"""Issue 20 (the Log pane at seed scale): a filter scans the log newest first, a window of
seqs per query, so its table is on screen as soon as it holds the newest SHOWN matches while
the count goes on behind "counting…"; the count, the table and a live run's events agree
with a brute-force read of the log; a filter typed over an unfinished one wins. The window
and the table are shrunk here so the demo's ~500 events span many windows."""

from __future__ import annotations

import pytest

from dpo_tui.campaign.decisions import add_note
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from dpo_tui.tui import messages
from dpo_tui.tui.screens import log
from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio

WINDOW, SHOWN = 40, 25


@pytest.fixture
def posts(monkeypatch):
    """Every scan post the pane receives, in order (the pane's own message class, recorded)."""
    seen: list[messages.LogLoaded] = []

    class LogLoaded(messages.LogLoaded):  # same name: the pane's on_log_loaded handles it
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            seen.append(self)

    monkeypatch.setattr(log, "LogLoaded", LogLoaded)
    monkeypatch.setattr(log, "SCAN_WINDOW", WINDOW)
    monkeypatch.setattr(log, "SHOWN", SHOWN)
    return seen


def brute_force(db, raw: str) -> list[int]:
    """The seqs a filter keeps, by the pane's own match over every row read in Python."""
    flt = log.LogFilter.parse(raw)
    with open_store(db, readonly=True) as store:
        return [r[0] for r in store.rows() if flt.match(r[2], r[4], r[6])]


def table_seqs(app) -> list[int]:
    t = app.pane("log").query_one("#log-table")
    return [int(t.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(t.row_count)]


async def type_filter(pilot, app, raw: str) -> None:
    app.pane("log").query_one("#log-filter").value = raw
    await wait_for(pilot, lambda: app.pane("log")._scan is not None and app.pane("log")._scan.done
                   and app.pane("log")._scan.generation == app.pane("log")._generation)


@pytest.mark.parametrize("raw", ["", "type:call", "APPROVE", "stage:rollouts", "actor:operator type:decision",
                                 "text:zzz-matches-nothing"])
async def test_a_filter_counts_what_a_brute_force_read_counts_and_shows_the_newest_in_order(demo_db, posts, raw):
    want = brute_force(demo_db, raw)
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await type_filter(pilot, app, raw)
        await settle(pilot)
        assert table_seqs(app) == want[-SHOWN:]
        assert f"{len(want):,} match, newest {min(len(want), SHOWN)} shown" in screen_text(app)
        generation = app.pane("log")._generation
    last = [p for p in posts if p.generation == generation]
    assert last[-1].matched == len(want) and last[-1].scanned == last[-1].head


async def test_the_table_is_posted_once_full_before_the_count_is_done(demo_db, posts):
    """The demo's ~500 events are ~12 windows: the newest 25 calls are in the first windows, so
    the table goes up final while most of the log is still to count."""
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await type_filter(pilot, app, "type:call")
        generation = app.pane("log")._generation
    mine = [p for p in posts if p.generation == generation]
    first_table = next(p for p in mine if p.rows is not None and p.rows_final)
    assert not first_table.done and first_table.scanned < first_table.head / 2
    assert len(first_table.rows) == SHOWN
    assert all(p.rows is None for p in mine[mine.index(first_table) + 1:])  # the table is sent once
    counts = [p.matched for p in mine]
    assert counts == sorted(counts) and mine[-1].done


async def test_a_filter_typed_over_an_unfinished_one_wins(demo_db, posts):
    want = brute_force(demo_db, "type:decision")
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        field = app.pane("log").query_one("#log-filter")
        field.value = "type:call"
        field.value = "type:rollout"
        await type_filter(pilot, app, "type:decision")
        await settle(pilot)
        assert table_seqs(app) == want[-SHOWN:]
        assert f"{len(want):,} match," in screen_text(app)


async def test_events_a_live_run_appends_during_and_after_a_scan_are_shown_once_and_counted(demo_db, posts):
    """A read-only console follows a run in another process: notes appended while a filter's
    scan runs and after it are each in the table once, and the count is the brute force's."""
    app = make_app(demo_db, readonly=True, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        with Campaign.open(demo_db) as writer:
            app.pane("log").query_one("#log-filter").value = "type:note"
            during = add_note(writer, "added while the scan runs", stage=None, actor="operator:test")
            await type_filter(pilot, app, "type:note")
            after = add_note(writer, "added after the scan", stage=None, actor="operator:test")
        await wait_for(pilot, lambda: after in table_seqs(app))
        await settle(pilot)
        want = brute_force(demo_db, "type:note")
        assert during in want and after in want
        assert table_seqs(app) == want[-SHOWN:]
        assert f"{len(want):,} match," in screen_text(app)
