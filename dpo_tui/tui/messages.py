"""Messages workers post to the app, named as past-tense facts. Handlers own the state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.message import Message


class EventsAppended(Message):
    """New events were folded (by a worker's append or a read-only refresh); the handler
    drains the app's coalesced queue, so one message may stand for many events."""


class RolloutsProgressed(Message):
    def __init__(self, label: str, progress: dict[str, Any]) -> None:
        super().__init__()
        self.label, self.progress = label, progress


class StageReported(Message):
    """A stage said something worth a line (the runner's progress.say)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class ActionDone(Message):
    """An operator action went through its service."""

    def __init__(self, text: str, then: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.text = text
        self.then = then  # what runs next on the UI thread (e.g. training after a re-export)


class StagesFinished(Message):
    """A worker's run of stages ended: (exit code, status, message) as the runner returns."""

    def __init__(self, what: str, code: int, status: str, message: str) -> None:
        super().__init__()
        self.what, self.code, self.status, self.message = what, code, status, message


class ActionFailed(Message):
    def __init__(self, what: str, error: str) -> None:
        super().__init__()
        self.what, self.error = what, error


class ChainVerified(Message):
    def __init__(self, ok: bool, summary: str) -> None:
        super().__init__()
        self.ok, self.summary = ok, summary


class LogLoaded(Message):
    """A Log filter's scan, newest first, so far: `rows` (oldest first; None when unchanged
    since the last post) is final once `rows_final`; `matched` counts the `scanned` newest of
    the `head` events, and is the whole count once `done`."""

    def __init__(self, rows: list[tuple] | None, matched: int, scanned: int, generation: int, *,
                 head: int, rows_final: bool, done: bool) -> None:
        super().__init__()
        self.rows, self.matched, self.scanned, self.generation = rows, matched, scanned, generation
        self.head, self.rows_final, self.done = head, rows_final, done
