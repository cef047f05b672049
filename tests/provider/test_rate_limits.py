"""Rate limits as Together defines them: 503 (at or below the dynamic rate: its capacity)
and 429 (above it) handled distinctly, `x-ratelimit-*` headers feeding the limiter, and
every attempt an event; through the real SDK against the simulator."""

from __future__ import annotations

import asyncio
import time

import pytest

from dpo_tui.provider.provider import CallKey
from dpo_tui.provider.retry import AdaptiveLimiter, RateLimitHeaders
from dpo_tui.sim.server import SimServer
from tests.provider.conftest import MODEL, events_of, fast_settings, make_provider, prompt


def test_a_503_lowers_the_window_more_gently_than_a_429():
    clock = [0.0]
    a, b = (AdaptiveLimiter(32, cooldown_s=1.0, clock=lambda: clock[0]) for _ in range(2))

    async def hit(lim, **kw):
        await lim.acquire()
        lim.release(**kw)

    async def scenario():
        await hit(a, rate_limited=True)
        await hit(b, overloaded=True)
        assert (a.limit, b.limit) == (16, pytest.approx(25.6))
        await hit(b, overloaded=True)  # within the cooldown: one cut per window, as for 429
        assert b.limit == pytest.approx(25.6)

    asyncio.run(scenario())
    assert (a.stats().decreases, a.stats().overload_decreases) == (1, 0)
    assert (b.stats().decreases, b.stats().overload_decreases) == (0, 1)


def test_headers_with_nothing_remaining_hold_new_calls_until_the_reset_and_stop_growth():
    lim = AdaptiveLimiter(8)
    lim.limit = 4.0

    async def scenario():
        await lim.acquire()
        lim.observe(RateLimitHeaders.parse({"x-ratelimit-limit": "5", "x-ratelimit-remaining": "0",
                                            "x-ratelimit-reset": "0.2"}))
        lim.release(ok=True)
        assert lim.limit == 4.0  # no growth while the server says nothing remains
        start = time.monotonic()
        await lim.acquire()
        waited = time.monotonic() - start
        lim.release(ok=True)
        return waited

    assert asyncio.run(scenario()) >= 0.15
    assert lim.stats().header_waits == 1 and lim.last_headers.limit == 5
    assert RateLimitHeaders.parse({"content-type": "application/json"}) is None
    assert RateLimitHeaders.parse({"x-ratelimit-remaining": "nan"}) is None


def test_the_simulators_headers_reach_the_limiter_and_a_429_attempt_logs_them(tmp_path):
    with SimServer(seed=3, faults="rate=3") as sim:
        campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, concurrency=8))

        async def burst():
            return await asyncio.gather(*(provider.chat(CallKey(f"t/r{i}"), stage="rollouts", model=MODEL,
                                                        messages=prompt(i), seed=i, max_tokens=16)
                                          for i in range(10)))

        results = asyncio.run(burst())
    assert len(results) == 10 and all(r.text for r in results)  # every call ended, some after waiting
    failed = [e.payload for e in events_of(campaign, "call.attempt_failed")]
    assert failed and all(f["status"] == 429 for f in failed)
    assert all(f["ratelimit"]["limit"] == 3 and f["ratelimit"]["remaining"] == 0 for f in failed)
    assert all("dynamic rate" in f["message"] for f in failed)
    seen = provider.limiter.last_headers
    assert seen is not None and seen.limit == 3  # success replies fed it too (the response hook)
    assert provider.limiter.stats().decreases >= 1
    campaign.close()


def test_a_503_fault_is_retried_logged_and_cuts_gently(tmp_path):
    with SimServer(seed=5, faults="503=0.5") as sim:
        campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, concurrency=16,
                                                                             limiter_cooldown_s=0.0))

        async def calls():
            return await asyncio.gather(*(provider.chat(CallKey(f"t/s{i}"), stage="rollouts", model=MODEL,
                                                        messages=prompt(i), seed=i, max_tokens=16)
                                          for i in range(12)))

        asyncio.run(calls())
    failed = [e.payload for e in events_of(campaign, "call.attempt_failed")]
    assert failed and {f["status"] for f in failed} == {503}
    assert all(f["ratelimit"]["limit"] == 1000 for f in failed)  # the 503 carries the window too
    stats = provider.limiter.stats()
    assert stats.overload_decreases == len(failed) and stats.decreases == 0
    campaign.close()
