"""Fault injection on demand: `429=0.2,503=0.1,timeout=0.05,latency=30`.

Draws come from one seeded generator, so a given seed and request order give the same
faults. `slow` adds a random delay and then answers normally; `latency` adds a fixed delay
to every API request.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from dpo_tui.errors import InputError

KINDS = ("429", "503", "500", "timeout", "reset", "malformed", "slow")


@dataclass(frozen=True)
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    retry_after_ms: float = 50.0     # what a 429 tells the client to wait
    rate_rps: float = 1000.0         # the dynamic rate per model (requests per second): above it, 429
    timeout_s: float = 75.0          # how long a `timeout` fault hangs (longer than the SDK's 60 s)
    slow_s: tuple[float, float] = (0.2, 1.0)

    @classmethod
    def parse(cls, spec: "str | dict[str, float] | FaultSpec | None") -> "FaultSpec":
        if spec is None or spec == "":
            return cls()
        if isinstance(spec, FaultSpec):
            return spec
        items = spec.items() if isinstance(spec, dict) else (_split(p) for p in spec.split(",") if p.strip())
        rates: dict[str, float] = {}
        extra: dict[str, float] = {}
        for key, value in items:
            key = str(key).strip()
            try:
                num = float(value)
            except (TypeError, ValueError):
                raise InputError(f"fault {key!r}: {value!r} is not a number") from None
            if key == "latency":
                if num < 0:
                    raise InputError("latency must be >= 0 milliseconds")
                extra["latency_ms"] = num
            elif key in ("retry_after_ms", "timeout_s"):
                extra[key] = num
            elif key == "rate":
                if num <= 0:
                    raise InputError("rate must be > 0 requests per second")
                extra["rate_rps"] = num
            elif key in KINDS:
                if not 0.0 <= num <= 1.0:
                    raise InputError(f"fault rate {key}={value} is not between 0 and 1")
                rates[key] = num
            else:
                raise InputError(f"unknown fault kind {key!r} (known: {', '.join(KINDS)}, latency, rate)")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise InputError("fault rates add up to more than 1")
        return cls(rates=rates, **extra)


def _split(part: str) -> tuple[str, str]:
    if "=" not in part:
        raise InputError(f"fault {part.strip()!r} is not KIND=RATE")
    k, v = part.split("=", 1)
    return k.strip(), v.strip()


class FaultInjector:
    """Thread-safe: settable from a test thread while the server thread draws."""

    def __init__(self, spec: "str | dict[str, float] | FaultSpec | None" = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"faults:{seed}")
        self.spec = FaultSpec.parse(spec)
        self.counts: dict[str, int] = {k: 0 for k in KINDS}

    def set(self, spec: "str | dict[str, float] | FaultSpec | None") -> None:
        parsed = FaultSpec.parse(spec)
        with self._lock:
            self.spec = parsed

    def draw(self) -> tuple[str | None, float]:
        """(fault kind or None, extra delay in seconds) for one request."""
        with self._lock:
            spec = self.spec
            delay = spec.latency_ms / 1000.0
            if not spec.rates:
                return None, delay
            u = self._rng.random()
            acc = 0.0
            for kind in KINDS:
                acc += spec.rates.get(kind, 0.0)
                if u < acc:
                    self.counts[kind] += 1
                    if kind == "slow":
                        lo, hi = spec.slow_s
                        return None, delay + self._rng.uniform(lo, hi)
                    return kind, delay
            return None, delay


class RateWindow:
    """Together's dynamic rate, simulated: requests per model in one-second windows. A
    request within the rate is served (a 503 fault then is Together's capacity); one above
    it gets 429 `dynamic_request_limited`. Every chat reply says where the window stands in
    `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counts: dict[tuple[str, int], int] = {}

    def take(self, model: str, rate: float) -> tuple[bool, dict[str, str]]:
        now = self._clock()
        window = int(now)
        with self._lock:
            if len(self._counts) > 4096:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            n = self._counts.get((model, window), 0) + 1
            self._counts[(model, window)] = n
        allowed = n <= rate
        headers = {"x-ratelimit-limit": f"{rate:g}", "x-ratelimit-remaining": f"{max(0.0, rate - n):g}",
                   "x-ratelimit-reset": f"{max(0.001, window + 1 - now):.3f}"}
        return allowed, headers
