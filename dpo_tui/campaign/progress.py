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
        self._rate = None  # a StableRate, keyed by the engine run's label
        self._live = False

    def say(self, line: str) -> None:
        self.done()
        self.stream.write(f"dpo-tui: {line}\n")
        self.stream.flush()

    def rollouts(self, label: str, p: Any, campaign: Any) -> None:
        """One line of `label`'s engine run, its numbers from the one progress model
        (campaign/stage_progress.py): finished/planned, the stable ETA and $/min."""
        from dpo_tui.campaign.stage_progress import StableRate, campaign_progress, live_rates, run_mode

        now = time.monotonic()
        if self._rate is None:
            self._rate = StableRate()
        state = campaign.state
        cp = campaign_progress(state, mode=run_mode(p.status, working=p.status == "running"))
        eta, rate = live_rates(self._rate, cp, state, label, now)
        finished_all = p.finished >= p.total or p.status in ("done", "cancelled")
        if now - self._last < self.interval_s and not finished_all:
            return
        self._last = now
        count = cp.current(label)
        spend, calls = state.parts["spend"].total_usd, state.parts.get("calls")
        width = 24
        filled = min(width, int(width * count.finished / count.planned)) if count.planned else 0
        bar = "#" * filled + "-" * (width - filled)
        line = (f"{label:<8} [{bar}] {count.text()} passed {count.passed} running {count.running} "
                f"spend ${spend:.3f} ({rate}) retries {getattr(calls, 'attempts', 0)} {eta}")
        if label == "eval" and cp.eval.endpoints:
            line += "; " + ", ".join(e.text() for e in cp.eval.endpoints)
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
