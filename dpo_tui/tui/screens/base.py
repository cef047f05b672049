"""What every stage pane shares: the session, and `sync()` to redraw from the folded state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.containers import Vertical

if TYPE_CHECKING:
    from dpo_tui.events.store import StoredEvent
    from dpo_tui.tui.session import Session


class StagePane(Vertical, can_focus=True):
    """Focusable, so its bindings work on panes without a table (Train, Eval)."""

    stage = ""

    @property
    def session(self) -> Session:
        return self.app.session  # type: ignore[attr-defined]

    loaded = True  # panes with costly first loads set False and load on first show

    def first_show(self) -> None:
        """Called when the pane is shown for the first time (the costly loads go here)."""

    def set_text(self, selector: str, text: object, *, layout: bool = True) -> None:
        """Update a Static only when its content changed (every update is a repaint). A Static
        of fixed size passes layout=False: no layout pass over the screen for new text."""
        cache = self.__dict__.setdefault("_texts", {})
        if cache.get(selector) != text:
            cache[selector] = text
            self.query_one(selector).update(text, layout=layout)  # type: ignore[attr-defined]

    def sync(self) -> None:
        """Redraw from the state (the app calls it on the visible pane after new events)."""

    def on_events(self, events: list[StoredEvent]) -> None:
        """New events, oldest first, already folded; panes that keep tables update rows here."""
