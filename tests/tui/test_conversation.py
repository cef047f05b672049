"""Issue 19, point 9: a rollout's conversation shows its programs syntax-highlighted, Home and
End jump to the top and the end, PgUp/PgDn page, Escape closes; the keys are on screen."""

from __future__ import annotations

import pytest

from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def test_conversation_highlights_programs_jumps_to_the_end_and_closes(demo_db):
    from textual.containers import VerticalScroll

    from dpo_tui.tui.screens.modals import CodeBlock, ConversationScreen

    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot, 0.1)
        await pilot.press("enter")  # the highlighted rollout's conversation
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "Esc close" in screen_text(app))
        text = screen_text(app)
        assert "Rollout fixtures/" in text and "Esc close" in text  # the title's keys
        footer = [line for line in text.splitlines() if "esc Close" in line]  # the modal's footer
        assert any("end End" in line and "esc Close" in line and "home Top" in line for line in footer), footer

        code = list(screen.query(CodeBlock))
        assert code and all(c.language == "python" for c in code)
        assert any("def " in c.code or "return" in c.code for c in code)
        # highlighted: the program's first line is drawn in more than one colour
        colours = {seg.style.color for c in code for y in range(min(c.size.height, 6))
                   for seg in c.render_line(y) if seg.text.strip() and seg.style is not None}
        assert len(colours) >= 2, colours

        scroll = screen.query_one("#text-scroll", VerticalScroll)
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == 0
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: scroll.scroll_y > 0)
        await pilot.press("end")
        await wait_for(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y)
        last = screen.query(".conv-title").last()
        assert last.region.y < screen.size.height  # the last block is on screen
        await pilot.press("home")
        await wait_for(pilot, lambda: scroll.scroll_y == 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConversationScreen))
