"""A few hundred calls through the provider against the simulator with faults injected.

Every call ends `call.completed` or `call.failed`, every failed attempt is an event that
the simulator's own fault counts confirm, no call is counted twice, and the sum of
`cost_usd` equals the recomputation from logged usage x logged price to the cent.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from dpo_tui.events.audit import audit
from dpo_tui.events.core import SPEND
from dpo_tui.provider.events import CALLS
from dpo_tui.provider.provider import CallGaveUp, CallKey

from .conftest import FAULTS, MODEL, SIM_TIMEOUT, events_of, fast_settings, make_provider, prompt

N_CALLS = 300


async def _run_all(provider, n: int) -> list:
    async def one(i: int):
        try:
            return await provider.chat(CallKey(f"task{i % 7}/r{i}", iteration=i % 3, step="repair"), stage="rollouts",
                                       model=MODEL, messages=prompt(i), temperature=0.7, seed=i, max_tokens=96)
        except CallGaveUp as exc:
            return exc

    return await asyncio.gather(*(one(i) for i in range(n)))


def test_faulty_api_every_call_ends_once_and_costs_recompute(sim, tmp_path):
    sim.set_faults(f"{FAULTS},{SIM_TIMEOUT}")
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, timeout_s=1.0))
    results = asyncio.run(_run_all(provider, N_CALLS))

    started = events_of(campaign, "call.started")
    completed = events_of(campaign, "call.completed")
    failed = events_of(campaign, "call.failed")
    attempts = events_of(campaign, "call.attempt_failed")
    assert len(started) == N_CALLS
    keys = {e.payload["idempotency_key"] for e in started}
    assert len(keys) == N_CALLS
    done = Counter(e.payload["idempotency_key"] for e in completed + failed)
    assert set(done) == keys and set(done.values()) == {1}, "every call ends exactly once"
    assert len(completed) == sum(1 for r in results if not isinstance(r, CallGaveUp))
    assert len(completed) > 0.9 * N_CALLS

    # Every attempt is an event: completed calls logged attempts-1 failures, failed calls all of theirs.
    per_key = Counter(e.payload["idempotency_key"] for e in attempts)
    for e in completed:
        assert per_key[e.payload["idempotency_key"]] == e.payload["attempts"] - 1
    for e in failed:
        assert per_key[e.payload["idempotency_key"]] == e.payload["attempts"]
    # ... and the server agrees on what it injected.
    faults = sim.state.faults.counts
    by_status = Counter(e.payload["status"] for e in attempts)
    assert by_status[429] == faults["429"] > 0
    assert by_status[503] == faults["503"] > 0
    transport = sum(1 for e in attempts if e.payload["status"] is None)
    assert transport >= faults["timeout"] + faults["reset"] > 0
    assert {e.payload["error"] for e in attempts if e.payload["status"] is None} <= {"APITimeoutError", "APIConnectionError"}
    # Timeouts and dropped connections may have been billed: flagged and shown, never hidden.
    flagged = [e for e in attempts if e.payload["possibly_billed"]]
    assert len(flagged) == transport and all(e.payload["status"] is None for e in flagged)
    shown = campaign.state.to_json()["calls"]
    assert shown["possibly_billed_attempts"] == transport and shown["possibly_billed_max_usd"] > 0
    # 429s honour the server's retry-after-ms (the simulator sends 50 ms).
    for e in attempts:
        if e.payload["status"] == 429 and e.payload["retry_delay_s"] is not None:
            assert e.payload["delay_source"] == "retry-after-ms" and e.payload["retry_delay_s"] == pytest.approx(0.05)

    # No call counted twice; spend is the exact sum; costs recompute from usage x price.
    state = campaign.state
    calls = state.part(CALLS)
    assert calls.completed == len(completed) and calls.failed == len(failed) and not calls.in_flight
    logged = math.fsum(e.payload["cost_usd"] for e in completed)
    recomputed = math.fsum((e.payload["usage"]["prompt_tokens"] * e.payload["price"]["input_usd_per_mtok"]
                            + e.payload["usage"]["completion_tokens"] * e.payload["price"]["output_usd_per_mtok"]) / 1e6
                           for e in completed)
    assert round(logged, 2) == round(recomputed, 2) and logged == pytest.approx(recomputed, abs=1e-12)
    assert state.part(SPEND).total_usd == pytest.approx(logged, abs=1e-12)
    assert all(e.payload["price"]["source"] for e in completed)
    # The tokenizer estimate matches what the server counted (same Qwen BPE ranks).
    assert all(e.payload["usage"]["prompt_tokens"] == e.payload["est_prompt_tokens"] for e in completed)
    assert audit(campaign.store).ok, audit(campaign.store).problems[:3]
    campaign.close()


def test_completed_key_is_never_reissued(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))

    async def twice():
        first = await provider.chat(CallKey("t/r1"), stage="rollouts", model=MODEL, messages=prompt(1),
                                    temperature=0.5, seed=3, max_tokens=64)
        n = campaign.state.events
        again = await provider.chat(CallKey("t/r1"), stage="rollouts", model=MODEL, messages=prompt(1),
                                    temperature=0.5, seed=3, max_tokens=64)
        return first, again, n

    first, again, n = asyncio.run(twice())
    assert not first.from_log and again.from_log
    assert (again.text, again.usage, again.cost_usd) == (first.text, first.usage, first.cost_usd)
    assert campaign.state.events == n, "a logged result costs no event and no request"
    assert len(events_of(campaign, "call.started")) == 1
    campaign.close()


def test_concurrent_duplicates_share_one_call(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))

    async def dupes():
        return await asyncio.gather(*(provider.chat(CallKey("t/r9"), stage="rollouts", model=MODEL,
                                                    messages=prompt(9), seed=1, max_tokens=32) for _ in range(5)))

    results = asyncio.run(dupes())
    assert len({r.text for r in results}) == 1
    assert len(events_of(campaign, "call.started")) == 1 and len(events_of(campaign, "call.completed")) == 1
    campaign.close()


def test_non_retryable_error_fails_at_once(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))
    with pytest.raises(CallGaveUp) as info:
        asyncio.run(provider.chat(CallKey("t/bad"), stage="rollouts", model=MODEL, messages=prompt(0),
                                  temperature=7.0, max_tokens=16))  # the API allows 0..2
    assert info.value.status == 400
    (failed,) = events_of(campaign, "call.failed")
    (attempt,) = events_of(campaign, "call.attempt_failed")
    assert failed.payload["attempts"] == 1 and failed.payload["status"] == 400 and "not retryable" in failed.payload["reason"]
    assert attempt.payload["retryable"] is False and attempt.payload["retry_delay_s"] is None
    assert campaign.state.part(SPEND).total_usd == 0.0 and not campaign.state.part(CALLS).in_flight
    campaign.close()


def test_retries_are_bounded(sim, tmp_path):
    sim.set_faults("503=1.0")
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, max_attempts=3))
    with pytest.raises(CallGaveUp) as info:
        asyncio.run(provider.chat(CallKey("t/down"), stage="rollouts", model=MODEL, messages=prompt(0), max_tokens=16))
    assert info.value.status == 503
    attempts = events_of(campaign, "call.attempt_failed")
    assert [e.payload["attempt"] for e in attempts] == [1, 2, 3]
    assert [e.payload["delay_source"] for e in attempts] == ["backoff", "backoff", None]
    assert "retries exhausted after 3" in events_of(campaign, "call.failed")[0].payload["reason"]
    campaign.close()


def test_unreadable_success_bodies_are_retried(sim, tmp_path):
    sim.set_faults("malformed=0.3")
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))
    results = asyncio.run(_run_all(provider, 40))
    assert all(not isinstance(r, CallGaveUp) for r in results)
    attempts = events_of(campaign, "call.attempt_failed")
    assert len(attempts) == sim.state.faults.counts["malformed"] > 0
    assert {(e.payload["error"], e.payload["status"], e.payload["retryable"], e.payload["possibly_billed"])
            for e in attempts} == {("JSONDecodeError", None, True, True)}
    campaign.close()


def test_audit_recomputes_costs_and_refuses_a_second_completion(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))
    asyncio.run(provider.chat(CallKey("t/a"), stage="rollouts", model=MODEL, messages=prompt(1), max_tokens=32))
    assert audit(campaign.store).ok
    (done,) = events_of(campaign, "call.completed")
    spend = campaign.state.part(SPEND).total_usd
    # A second completion of the same key, with a cost that is not usage x price, written by hand:
    forged = {**done.payload, "cost_usd": done.payload["cost_usd"] * 2}
    campaign.append("call.completed", forged, actor="system")
    assert campaign.state.part(SPEND).total_usd == spend, "the fold never counts a key twice"
    rules = {p.rule for p in audit(campaign.store).problems}
    assert rules == {"call-completed-once", "call-cost"}
    campaign.close()
