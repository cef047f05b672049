"""A read-only console on a log bigger than its first fold: the first frame shows a prefix and
a worker folds the rest behind a progress line, to exactly the state a whole fold gives."""

from __future__ import annotations

import pytest

from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from dpo_tui.tui import session as session_mod
from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def test_partial_fold_then_refresh_in_chunks_equals_the_whole_fold(demo_db) -> None:
    with Campaign.open(demo_db, readonly=True) as whole:
        want = whole.state.to_json()
    with Campaign(open_store(demo_db, readonly=True), fold_limit=7) as part:
        assert part.state.events == 7
        chunks = []
        while new := part.refresh(limit=50):
            chunks.append(len(new))
        assert max(chunks) == 50 and sum(chunks) == want["events"] - 7
        assert part.state.to_json() == want


def test_a_writable_store_opened_partly_folded_refuses_appends_until_folded_to_its_head(demo_db) -> None:
    from dpo_tui.errors import StoreError

    with Campaign.open(demo_db, readonly=True) as whole:
        want = whole.state.to_json()
    with Campaign(open_store(demo_db), fold_limit=7) as part:
        assert part.folding
        with pytest.raises(StoreError, match="still being read"):
            part.append("note.added", {"text": "too early", "stage": None}, actor="operator:tester")
        while part.refresh(limit=500):
            pass
        assert not part.folding and part.state.to_json() == want  # nothing was appended meanwhile
        part.append("note.added", {"text": "now", "stage": None}, actor="operator:tester")  # and now it may write
        assert part.state.events == want["events"] + 1


async def test_readonly_console_first_frame_before_the_whole_fold(demo_db, monkeypatch) -> None:
    monkeypatch.setattr(session_mod, "FIRST_FOLD", 40)
    monkeypatch.setattr(session_mod, "CATCH_UP_CHUNK", 25)
    with Campaign.open(demo_db, readonly=True) as whole:
        want = whole.state.to_json()
        ids = list(whole.state.part("rollouts").by_id)
    app = make_app(demo_db, readonly=True)
    assert app.session.catching_up and app.session.campaign.state.events == 40
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")  # the Rollouts pane, loaded from whatever is folded by now
        await wait_for(pilot, lambda: not app.session.catching_up)
        await settle(pilot)
        with app.session.lock:
            assert app.session.campaign.state.to_json() == want
        assert "reading the log" not in screen_text(app)
        table = app.pane("rollouts").query_one("#roll-table")
        assert {table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)} == set(ids)


async def test_writable_console_reads_a_big_log_behind_the_first_frame_with_writes_refused_until_it_has(split_db):
    from dpo_tui.errors import StoreError
    from dpo_tui.tui.app import DpoApp
    from dpo_tui.tui.session import Session
    from tests.tui.conftest import ACTOR, events_of

    with Campaign.open(split_db, readonly=True) as whole:
        want = whole.state.to_json()
    before = len(events_of(split_db))
    session = Session(split_db, actor=ACTOR, first_fold=3)
    app = DpoApp(session)
    assert session.catching_up and session.campaign.state.events == 3
    assert app.check_action("approve_split", ()) is False  # not offered while the log is read
    with pytest.raises(StoreError, match="still being read"):  # and the campaign itself refuses any write
        session.campaign.append("note.added", {"text": "too early", "stage": None}, actor=ACTOR)
    assert len(events_of(split_db)) == before
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            await wait_for(pilot, lambda: not session.catching_up)
            await settle(pilot)
            with session.lock:
                assert session.campaign.state.to_json() == want
            text = screen_text(app)
            assert "reading the log" not in text and "A Approve" in text.splitlines()[-1], text
    finally:
        session.close()
