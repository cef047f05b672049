"""The screen as plain text, as a terminal would show it (for assertions on what is visible)."""

from __future__ import annotations

from textual.app import App


def screen_text(app: App) -> str:
    strips = app.screen._compositor.render_strips()  # noqa: SLF001 - the rendered frame itself
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)
