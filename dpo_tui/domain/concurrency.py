"""Concurrency that follows what the serving is measured to do.

A dedicated endpoint serves so many requests at once; past that, more requests in flight
buy no throughput, only queueing (and minutes billed while the queue drains). The eval's
rollouts in flight are set from the calls' measured latency with the gradient rule of
TCP Vegas and Netflix's concurrency-limits (Gradient2): per window of calls,

    gradient = clamp(baseline / now, 0.5, 1)    new = round(limit x gradient + sqrt(limit))

where `now` is the window's median seconds per completion token (so long and short replies
compare) and `baseline` the lowest window median seen (the serving without a queue). While
nothing queues the gradient is 1 and the limit grows by about sqrt(limit) per window; once
requests queue, latency rises in proportion and the limit falls back to what the endpoint
serves plus a small queue (sqrt(limit)) that keeps every slot busy. A window is at least
`min_window` calls and at least one per rollout in flight, so a change is measured at the
concurrency it was made at. Pure: the caller passes the clock (campaign/eval_stage.py and
the engine log each change as `engine.concurrency_set`; a resume passes the logged limit and
baseline back).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Change:
    before: int
    after: int
    calls: int  # calls in the window that decided it
    latency_ms_per_token: float  # the window's median
    baseline_ms_per_token: float
    tokens_per_s: float  # completion tokens the window's calls got per wall second
    reason: str


@dataclass
class ThroughputController:
    """`limit` is where it starts; without a `baseline` (a fresh start, not a resume) the
    first window measures the unqueued latency at `probe` in flight and the limit then
    doubles per window while nothing queues (slow start), so a start above the endpoint's
    capacity cannot mistake a queued latency for the endpoint's own."""

    limit: int
    floor: int = 1
    ceiling: int = 64
    min_window: int = 8
    baseline: float | None = None  # seconds per completion token without a queue
    probe: int = 2
    _window: list[tuple[float, int]] = field(default_factory=list)
    _since: float | None = None
    _slow_start: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"need 1 <= floor ({self.floor}) <= ceiling ({self.ceiling})")
        self.limit = min(max(self.limit, self.floor), self.ceiling)
        if self.baseline is None:
            self.limit = min(self.limit, max(self.floor, self.probe))
        else:
            self._slow_start = False

    def observe(self, latency_s: float, completion_tokens: int, now: float) -> Change | None:
        """One answered call (its latency, its completion tokens, the clock when it ended);
        a Change when this call closes a window that moves the limit."""
        if self._since is None:
            self._since = now - latency_s
        self._window.append((max(latency_s, 0.0) / max(completion_tokens, 1), max(completion_tokens, 0)))
        if len(self._window) < max(self.min_window, self.limit):
            return None
        window, self._window = self._window, []
        elapsed, self._since = max(now - self._since, 1e-9), now
        median = statistics.median(w[0] for w in window)
        self.baseline = median if self.baseline is None else min(self.baseline, median)
        gradient = min(1.0, max(0.5, self.baseline / median)) if median > 0 else 1.0
        self._slow_start = self._slow_start and gradient >= 0.95
        target = self.limit * 2 if self._slow_start else round(self.limit * gradient + math.sqrt(self.limit))
        after = min(max(target, self.floor), self.ceiling)
        if after == self.limit:
            return None
        change = Change(self.limit, after, len(window), median * 1000, self.baseline * 1000,
                        sum(w[1] for w in window) / elapsed,
                        f"latency {median / self.baseline:.2f}x the unqueued: "
                        + ("room to grow" if after > self.limit else "requests wait for the endpoint"))
        self.limit = after
        return change
