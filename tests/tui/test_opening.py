"""The console paints a shell first (issue 19, point 1): the header, the tab names and a
progress line before the Session is open; writes are refused until it is; quit works at once.

The opener here is run_tui's kind of callable, held on an Event the test releases once it has
looked at the shell: no sleeps, nothing patched."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dpo_tui.errors import InputError
from dpo_tui.tui.app import DpoApp
from dpo_tui.tui.cli import close_console
from dpo_tui.tui.opening import STILL_OPENING
from dpo_tui.tui.screens.modals import ConfirmScreen
from dpo_tui.tui.session import Session
from tests.tui.conftest import ACTOR, events_of, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def held_opener(db: Path, gate: threading.Event, *, readonly: bool = False):
    """An opener that opens the real campaign once `gate` is set; `calls` counts its opens."""
    calls: list[Session] = []

    def open_session() -> Session:
        assert gate.wait(60), "the test never released the opener"
        calls.append(Session(db, readonly=readonly, actor=ACTOR))
        return calls[-1]

    return open_session, calls


def footer(app) -> str:  # noqa: ANN001
    return screen_text(app).splitlines()[-1]


async def test_the_shell_shows_the_tabs_and_a_progress_line_then_refuses_writes_until_the_campaign_is_open(split_db):
    gate = threading.Event()
    opener, calls = held_opener(split_db, gate)
    before = len(events_of(split_db))
    app = DpoApp(opener=opener)
    try:
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await pilot.pause()
            shell = screen_text(app)
            assert "1 Budget" in shell and "2 Split" in shell and "7 Log" in shell, shell
            assert "opening the campaign" in shell, shell
            assert not calls and not app.ready  # the frame came before the Session
            await pilot.press("2")  # a stage key works at once: Split, still a shell
            assert app.active_stage == "split"
            assert "Approve" not in footer(app) and "Propose" not in footer(app)
            await pilot.press("A")  # Split's approve: refused, said why
            await wait_for(pilot, lambda: "still opening the campaign" in screen_text(app))  # the toast
            assert [n.text for n in app.notices] == [STILL_OPENING]
            assert not isinstance(app.screen, ConfirmScreen)
            assert app.check_action("approve_split", ()) is False  # and the palette offers none

            gate.set()
            await wait_for(pilot, lambda: app.ready)
            await settle(pilot)
            assert app.active_stage == "split"  # the tab chosen while opening is kept
            text = screen_text(app)
            assert "opening the campaign ..." not in text and not app.query(".opening"), text  # the line is gone
            assert "split:prop" in text.splitlines()[1] and "13 train, 5 test" in text, text  # the header, the pane
            assert "Approve" in footer(app)
            await pilot.press("A")  # now it asks, as before
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")
        assert len(events_of(split_db)) == before  # nothing was logged by the refused key (nor the dialog)
    finally:
        gate.set()
        close_console(app)


async def test_q_quits_while_the_campaign_is_opening_and_the_session_is_closed_after(split_db):
    gate = threading.Event()
    opener, calls = held_opener(split_db, gate)
    app = DpoApp(opener=opener)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "opening the campaign" in screen_text(app)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    gate.set()  # the open finishes behind the closed app: run_tui's close_console waits for it
    close_console(app)
    assert len(calls) == 1 and calls[0].stop.is_set()  # the session was made, then closed


async def test_an_error_opening_the_campaign_ends_the_app_and_is_raised_as_the_cli_reports_it(tmp_path):
    def opener() -> Session:
        raise InputError("not a campaign: nothing here")

    app = DpoApp(opener=opener)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: not app.is_running)
    with pytest.raises(InputError, match="not a campaign"):
        close_console(app)


async def test_readonly_through_the_opener_follows_as_before(demo_db):
    gate = threading.Event()
    gate.set()
    opener, _calls = held_opener(demo_db, gate, readonly=True)
    app = DpoApp(opener=opener)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.ready)
            await settle(pilot)
            head = screen_text(app).splitlines()[0]
            assert "[read-only]" in head and "[simulated]" in head
            await pilot.press("3")
            assert "Start" not in footer(app)  # read-only offers nothing that writes
    finally:
        close_console(app)
