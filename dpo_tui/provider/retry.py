"""The retry policy (tenacity owns it; the SDK's own retries are off) and the adaptive limiter.

Retried: HTTP 408, 409, 429 and 5xx, timeouts, connection errors, and a success status
with an unreadable body. Not retried: 400, 401, 403, 404, 422 and any other 4xx. The
delay is the server's `retry-after-ms` / `retry-after` when given (0 < value <= cap),
otherwise exponential backoff with jitter (tenacity's `wait_exponential_jitter`).

`backend_problem` says, in words a user can act on, when a failure means the backend itself
is out of reach (cannot connect, or the key is refused): the preflight before a stage and the
provider's circuit breaker stop on it instead of retrying every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import pydantic
import together
from tenacity import RetryCallState, wait_exponential_jitter

from dpo_tui.config import Settings

RETRY_STATUSES = frozenset({408, 409, 429})


def status_of(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, together.APIStatusError) else None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, together.APIStatusError):
        headers = exc.response.headers if exc.response is not None else {}
        forced = headers.get("x-should-retry")
        if forced in ("true", "false"):
            return forced == "true"
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    if isinstance(exc, together.APIConnectionError):  # includes APITimeoutError
        return True
    # A 2xx whose body is not the JSON promised: the server misbehaved; try again.
    return isinstance(exc, (json.JSONDecodeError, together.APIResponseValidationError, pydantic.ValidationError))


def possibly_billed(exc: BaseException | None) -> bool:
    """Did the request reach the server, so that it may have been billed without an answer?"""
    if exc is None or isinstance(exc, together.APIStatusError):
        return False  # an error status: the server refused the work
    if isinstance(exc, together.APIConnectionError):
        return not isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return is_retryable(exc)  # an unreadable 2xx: the work was done


def retry_after(exc: BaseException | None, cap_s: float) -> tuple[float, str] | None:
    """The server's requested delay in seconds and which header said so, if usable."""
    if not isinstance(exc, together.APIStatusError) or exc.response is None:
        return None
    headers = exc.response.headers
    candidates: list[tuple[float | None, str]] = []
    if "retry-after-ms" in headers:
        candidates.append((_float(headers["retry-after-ms"], 1000.0), "retry-after-ms"))
    if "retry-after" in headers:
        candidates.append((_float(headers["retry-after"], 1.0) or _http_date(headers["retry-after"]), "retry-after"))
    for value, source in candidates:
        if value is not None and 0 < value <= cap_s:
            return value, source
    return None


def _float(text: str, per_second: float) -> float | None:
    try:
        return float(text) / per_second
    except ValueError:
        return None


def _http_date(text: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time() if when else None


class RetryWait:
    """tenacity wait: the server's retry-after if usable, else exponential backoff + jitter."""

    def __init__(self, settings: Settings) -> None:
        self.cap_s = settings.retry_after_max_s
        self.backoff = wait_exponential_jitter(multiplier=settings.retry_initial_s, max=settings.retry_max_s,
                                               jitter=settings.retry_jitter_s)

    def delay(self, retry_state: RetryCallState) -> tuple[float, str]:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_after(exc, self.cap_s)
        if hinted is not None:
            return hinted
        return float(self.backoff(retry_state)), "backoff"

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.delay(retry_state)[0]


@dataclass
class LimiterStats:
    ceiling: int
    limit: float
    in_use: int
    decreases: int
    peak_in_use: int
    overload_decreases: int = 0  # the gentler cuts after a 503
    header_waits: int = 0  # pauses because x-ratelimit-remaining said 0


OVERLOAD_FACTOR = 0.8  # a 503: Together's capacity, not our rate; cut gently
RATE_LIMIT_FACTOR = 0.5  # a 429: above our dynamic rate; halve
MAX_HEADER_WAIT_S = 5.0


@dataclass(frozen=True)
class RateLimitHeaders:
    """Together's `x-ratelimit-*` (requests per second) and `x-tokenlimit-*` headers."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None
    limit_dynamic: float | None = None
    tokens_limit: float | None = None
    tokens_remaining: float | None = None

    @classmethod
    def parse(cls, headers: Any) -> RateLimitHeaders | None:
        def num(name: str) -> float | None:
            raw = headers.get(name) if headers is not None else None
            try:
                v = float(raw) if raw is not None else None
            except ValueError:
                return None
            return v if v is not None and math.isfinite(v) and v >= 0 else None

        got = cls(num("x-ratelimit-limit"), num("x-ratelimit-remaining"), num("x-ratelimit-reset"),
                  num("x-ratelimit-limit-dynamic"), num("x-tokenlimit-limit"), num("x-tokenlimit-remaining"))
        return got if any(v is not None for v in vars(got).values()) else None

    def exhausted(self) -> bool:
        return (self.remaining is not None and self.remaining < 1) or \
            (self.tokens_remaining is not None and self.tokens_remaining < 1)

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if v is not None}


class AdaptiveLimiter:
    """An AIMD concurrency window for asyncio: halve on 429 (above our dynamic rate), cut by
    a fifth on 503 (at or below it: Together's capacity), each at most once per cooldown;
    grow by 1/limit per success (about +1 per window of successes), never above the ceiling.
    Together's `x-ratelimit-*` headers feed it: with nothing remaining (requests or tokens)
    new calls wait for `x-ratelimit-reset` (at most 5 s) and the window does not grow.

    Waiters are served first come, first served, and a release wakes only as many as there
    are free slots (no thundering herd when thousands of calls queue). One loop only."""

    def __init__(self, ceiling: int, *, floor: int = 1, cooldown_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling, self.floor = ceiling, max(1, min(floor, ceiling))
        self.limit = float(ceiling)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._in_use = 0
        self._peak = 0
        self._decreases = 0
        self._overload_decreases = 0
        self._header_waits = 0
        self._last_decrease = -float("inf")
        self._paused_until = -float("inf")
        self.last_headers: RateLimitHeaders | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()

    def observe(self, headers: RateLimitHeaders | None) -> None:
        """What the server's last reply said about our rate."""
        if headers is None:
            return
        self.last_headers = headers
        if headers.exhausted():
            wait = min(MAX_HEADER_WAIT_S, headers.reset_s if headers.reset_s is not None else 1.0)
            self._paused_until = max(self._paused_until, self._clock() + wait)

    async def _respect_headers(self) -> None:
        left = self._paused_until - self._clock()
        if left > 0:
            self._header_waits += 1
            await asyncio.sleep(left)

    def _take(self) -> None:
        self._in_use += 1
        if self._in_use > self._peak:
            self._peak = self._in_use

    async def acquire(self) -> None:
        await self._respect_headers()
        if not self._waiters and self._in_use < int(self.limit):
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot as we were cancelled: pass it on
                self._in_use -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self, *, rate_limited: bool = False, overloaded: bool = False, ok: bool = False) -> None:
        self._in_use -= 1
        if rate_limited or overloaded:
            now = self._clock()
            if now - self._last_decrease >= self.cooldown_s:
                self.limit = max(float(self.floor), self.limit * (RATE_LIMIT_FACTOR if rate_limited else OVERLOAD_FACTOR))
                self._last_decrease = now
                if rate_limited:
                    self._decreases += 1
                else:
                    self._overload_decreases += 1
        elif ok and self.limit < self.ceiling and not (self.last_headers and self.last_headers.exhausted()):
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    def stats(self) -> LimiterStats:
        return LimiterStats(self.ceiling, self.limit, self._in_use, self._decreases, self._peak,
                            self._overload_decreases, self._header_waits)


def describe(exc: BaseException) -> dict[str, Any]:
    """Status and class of a failed attempt (the message is redacted by the caller)."""
    return {"status": status_of(exc), "error": type(exc).__name__, "message": str(exc)[:500]}


AUTH_STATUSES = frozenset({401, 403})
_RESOLUTION_WORDS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
                     "no address associated", "getaddrinfo failed", "name resolution")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def connection_cause(exc: BaseException, base_url: str) -> str:
    """Why a connection failed: name resolution, refused, timed out, or the transport's words."""
    host = urlparse(base_url).hostname or base_url
    port = urlparse(base_url).port
    chain = _chain(exc)
    texts = " | ".join(str(e) for e in chain).lower()
    for e in chain:
        if isinstance(e, socket.gaierror) or any(w in str(e).lower() for w in _RESOLUTION_WORDS):
            detail = getattr(e, "strerror", None) or str(e).split("] ")[-1]
            return f"name resolution failed for {host} ({detail}): check the host name and DNS"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in texts:
        return f"connection refused by {host}{f':{port}' if port else ''}: is the server running on that port?"
    if any(isinstance(e, (httpx.TimeoutException, TimeoutError, socket.timeout)) for e in chain) \
            or isinstance(exc, together.APITimeoutError) or "timed out" in texts:
        return "timed out: no answer from the server (check the network, a proxy or a firewall)"
    words = next((str(e) for e in reversed(chain) if str(e)), type(exc).__name__)
    return words.splitlines()[0][:300]


def backend_problem(exc: BaseException, base_url: str) -> str | None:
    """The one line for a failure that means the backend is out of reach, else None."""
    if isinstance(exc, together.APIConnectionError):
        return f"cannot connect to backend {base_url}: {connection_cause(exc, base_url)}"
    if isinstance(exc, together.APIStatusError) and exc.status_code in AUTH_STATUSES:
        return f"backend {base_url} refused the API key ({exc.status_code})"
    return None
