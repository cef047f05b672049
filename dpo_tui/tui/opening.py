"""The console's shell: what it paints before the campaign is open.

`dpo-tui tui` paints the header, the tab names and a progress line first, importing only
Textual and light modules; then, behind that frame, a thread opens the `Session` (the log,
its migration check, the fold, the plan) and imports the panes, and the UI thread mounts
them one by one. Until they are in, every action that writes or needs a pane is refused
(not offered in the footer; a key pressed says the campaign is still opening); the stage
keys and quit work at once.

The opener is any callable returning a Session (run_tui's opens the campaign as the CLI
asked; a test's may wait on an event so it can look at the shell).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import events, work
from textual.widgets import Static, TabPane

if TYPE_CHECKING:
    from dpo_tui.tui.screens.base import StagePane
    from dpo_tui.tui.session import Session

STAGE_TABS = (("budget", "1 Budget"), ("split", "2 Split"), ("rollouts", "3 Rollouts"), ("pairs", "4 Pairs"),
              ("train", "5 Train"), ("eval", "6 Eval"), ("log", "7 Log"))
PANE_CLASSES = {"budget": "budget:BudgetPane", "split": "split:SplitPane", "rollouts": "rollouts:RolloutsPane",
                "pairs": "pairs:PairsPane", "train": "train:TrainPane", "eval": "eval:EvalPane", "log": "log:LogPane"}
# actions that need the panes (or the session) beyond the ones that write
PANE_ACTIONS = {"log_filter", "open_selected_rollout", "rollouts_per_task", "verify_chain", "show_keys"}
STILL_OPENING = "still opening the campaign: the panes' keys work once it is open (q quits now)"
STILL_READING = "still reading the log: actions work once it is read to the end (the header counts)"


def pane_class(key: str) -> type[StagePane]:
    """The pane of stage `key` (its module imported on first use: not on the shell's path)."""
    module, name = PANE_CLASSES[key].split(":")
    return getattr(importlib.import_module(f"dpo_tui.tui.screens.{module}"), name)


def import_console() -> None:
    """Everything the open console needs that the shell does not: the panes, the views."""
    for key, _label in STAGE_TABS:
        pane_class(key)
    importlib.import_module("dpo_tui.tui.views")


class Opening:
    """A mixin of the app: the shell's progress line, the opener's worker, the panes' mount,
    and the refusal of keys until the console is ready."""

    session: Session | None
    ready: bool

    def init_opening(self, session: Session | None, opener: Callable[[], Session] | None) -> None:
        if (session is None) == (opener is None):
            raise ValueError("DpoApp takes a session or an opener, not both")
        self.session, self._opener = session, opener
        self.ready = session is not None  # the session open and every pane mounted
        self.open_error: Exception | None = None  # the opener's error, raised again by run_tui
        self._opened: Session | None = session
        self._opener_done = threading.Event()
        if session is not None:
            self._opener_done.set()

    def shell_line(self, text: str) -> None:
        for line in self.query(".opening"):  # type: ignore[attr-defined]
            line.update(text)

    def opening_placeholder(self) -> Static:
        return Static("opening the campaign ...", classes="opening")

    @work(thread=True, exclusive=True, group="open")
    def open_in_background(self) -> None:
        """The opener (and the heavy imports) off the UI thread; then the panes are mounted."""
        try:
            session = self._opener()  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - any failure to open is the operator's to read
            self.open_error = exc
            self._opener_done.set()
            self._from_thread(self.exit)  # type: ignore[attr-defined]
            return
        self._opened = session
        self._opener_done.set()
        self._from_thread(self.shell_line, "reading the panes ...")
        import_console()
        self._from_thread(self.install_panes, session)

    def _from_thread(self, fn: Callable, *args: object) -> None:
        try:
            self.call_from_thread(fn, *args)  # type: ignore[attr-defined]
        except RuntimeError:
            pass  # the app quit meanwhile: run_tui closes the session

    async def install_panes(self, session: Session) -> None:
        """Mount the panes hidden (keys, quit among them, are handled meanwhile), then show them
        all at once with the console ready: no pane is seen before its keys work."""
        if not self.is_running:  # type: ignore[attr-defined]
            return
        self.session = session
        self.shell_line("building the panes ...")
        try:
            panes = [pane_class(key)(id=f"pane-{key}") for key, _label in STAGE_TABS]
            for pane in panes:
                pane.display = False
            await asyncio.gather(*(self.query_one(f"#{key}", TabPane).mount(pane)  # type: ignore[attr-defined]
                                   for (key, _label), pane in zip(STAGE_TABS, panes, strict=True)))
        except Exception:
            if self.is_running and self.query("#stages"):  # type: ignore[attr-defined]
                raise
            return  # the app quit while the panes went in
        self.ready = True
        for pane in panes:
            pane.display = True
        self.query(".opening").remove()  # type: ignore[attr-defined]  # (in the same repaint)
        active = self.active_stage  # type: ignore[attr-defined]
        self.start_console(active)  # type: ignore[attr-defined]
        self.show_pane(active)  # type: ignore[attr-defined]
        self.refresh_bindings()  # type: ignore[attr-defined]

    def wait_opened(self) -> Session | None:
        """After the app exits: the session the opener made (None if it was never made), once
        the opener has returned; its error, raised again."""
        self._opener_done.wait()
        if self.open_error is not None:
            raise self.open_error
        return self._opened

    def on_key(self, event: events.Key) -> None:
        """While opening (or reading the log before writes), a key that does nothing now says
        why (nothing is logged)."""
        if not self.writes_wait or self.screen is not self.screen_stack[0]:  # type: ignore[attr-defined]
            return
        active = self.screen.active_bindings.get(event.key)  # type: ignore[attr-defined]
        if active is not None and active.enabled:
            return  # a stage key, q, the palette: they work now
        if event.is_printable or "+" in event.key:
            event.prevent_default()
            self.notify(STILL_OPENING if not self.ready else STILL_READING,  # type: ignore[attr-defined]
                        severity="warning", timeout=3)
