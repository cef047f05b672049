"""Headless progress on stderr: a live line on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval_s = 0.2 if self.tty else interval_s
        self._last = 0.0
        self._start: float | None = None
        self._live = False

    def say(self, line: str) -> None:
        self.done()
        self.stream.write(f"dpo-tui: {line}\n")
        self.stream.flush()

    def rollouts(self, label: str, p: Any, campaign: Any) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        finished_all = p.finished >= p.total or p.status in ("done", "cancelled")
        if now - self._last < self.interval_s and not finished_all:
            return
        self._last = now
        state = campaign.state.to_json()
        spend, cap = state["spend"]["total_usd"], state.get("calls", {})
        elapsed = now - self._start
        eta = (elapsed / p.finished * (p.total - p.finished)) if p.finished else float("nan")
        width = 24
        filled = int(width * p.finished / p.total) if p.total else width
        bar = "#" * filled + "-" * (width - filled)
        rate = spend / (elapsed / 60) if elapsed > 1 else 0.0
        line = (f"{label:<8} [{bar}] {p.finished}/{p.total} passed {p.passed} running {p.running} "
                f"spend ${spend:.3f} (${rate:.3f}/min) retries {cap.get('failed_attempts', 0)} "
                f"ETA {eta:.0f}s" if eta == eta else
                f"{label:<8} [{bar}] {p.finished}/{p.total} running {p.running} spend ${spend:.3f}")
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(100))
            self._live = True
        else:
            self.stream.write(f"dpo-tui: {line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self._live:
            self.stream.write("\n")
            self._live = False
        self._start = None
