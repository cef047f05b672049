"""One progress model on screen: the header's `roll:`, the Rollouts pane's line and its bar
show the same finished/planned (the plan's numbers) while the pilot runs and while it is
paused, and the header says paused; the Eval pane shows a running eval's samples and endpoint."""

from __future__ import annotations

import re

import pytest

from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.test_operator_controls import _start_pilot as start_pilot  # freeze the split, start the pilot
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio

PILOT = 12  # the demo's pilot: 8 tasks once and the second rollout of 4 of them
PLANNED = 52  # 13 train tasks x 4 rollouts per task


def _shown(app) -> tuple[tuple[int, int] | None, tuple[int, int] | None, tuple[int, int]]:
    """(header's roll: pilot n/N, the pane's pilot n/N, the bar's progress/total) as drawn."""
    text = screen_text(app)
    head = re.search(r"roll:pilot (\d+)/(\d+)", text)
    body = re.search(r"^ ?pilot (\d+)/(\d+) \(\d+ pass\)  rollouts \d+/52", text, re.M)
    bar = app.pane("rollouts").query_one("#roll-bar")
    return (tuple(map(int, head.groups())) if head else None, tuple(map(int, body.groups())) if body else None,
            (int(bar.progress), int(bar.total)))


async def test_header_body_and_bar_agree_while_the_pilot_runs_and_while_paused(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start_pilot(pilot, app)

        def agree_running() -> bool:
            head, body, bar = _shown(app)
            return head is not None and head == body == bar and head[1] == PILOT and 0 < head[0] < PILOT

        await wait_for(pilot, agree_running, timeout=60, step=0.05)
        assert "pilot running" in screen_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.engine.progress.status == "paused", timeout=60)
        # no settle() here: it waits for the workers, and the paused stage's worker waits for us

        def finished() -> int:
            with app.session.lock:
                return app.session.campaign.state.part("rollouts").finished.get("rollouts", 0)

        def agree_paused() -> bool:  # the header's 1 s refresh and the pane's sample both drew since
            text = screen_text(app)
            return _shown(app) == ((finished(), PILOT),) * 3 and "[pilot paused]" in text and "ETA paused" in text

        await wait_for(pilot, agree_paused, timeout=60, step=0.1)
        text = screen_text(app)
        assert _shown(app) == ((finished(), PILOT),) * 3, text
        await pilot.press("space")
        await wait_for(pilot, lambda: app.working is None, timeout=120)
        await settle(pilot)
        text = screen_text(app)
        # the pilot done and calibrated: the stage's count, against every planned rollout
        assert f"roll:{PILOT}/{PLANNED}" in text and f"rollouts {PILOT}/{PLANNED}" in text, text
        assert "[pilot: waiting for your decision]" in text
        bar = app.pane("rollouts").query_one("#roll-bar")
        assert (bar.progress, bar.total) == (PILOT, PLANNED)
