"""The budget guard stops a run at the cap; orphans (a process killed mid-call) are
recorded with their reservation kept in spend, re-issued under the same key, and never
completed twice."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from dpo_tui.errors import EXIT_BUDGET_CAP, BudgetCapReached
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.core import SPEND
from dpo_tui.provider.catalog import UnknownPriceError
from dpo_tui.provider.events import CALLS
from dpo_tui.provider.provider import CallKey

from .conftest import MODEL, events_of, fast_settings, make_provider, prompt


def test_budget_guard_stops_the_run_at_the_cap(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, concurrency=8))
    cap = 0.002
    provider.set_cap(cap, reason="test budget", actor="plan")
    refused: list[BudgetCapReached] = []

    async def worker(ids):
        for i in ids:
            try:
                await provider.chat(CallKey(f"b/{i}"), stage="rollouts", model=MODEL, messages=prompt(i),
                                    temperature=0.7, seed=i, max_tokens=200)
            except BudgetCapReached as exc:
                refused.append(exc)
                return  # a run stops at the cap

    async def run():  # 8 concurrent workers, 400 calls offered: far more than the cap allows
        await asyncio.gather(*(worker(range(w, 400, 8)) for w in range(8)))

    asyncio.run(run())
    spend = campaign.state.part(SPEND).total_usd
    calls = campaign.state.part(CALLS)
    assert refused, "the cap was reached"
    assert spend <= cap
    assert calls.completed > 10 and not calls.in_flight
    assert calls.started == calls.completed + calls.failed, "a refused call is never started"
    reached = events_of(campaign, "budget.cap_reached")
    assert len(reached) == len(refused)
    for e in reached:
        p = e.payload
        assert p["cap_usd"] == cap and p["committed_usd"] + p["in_flight_usd"] + p["requested_usd"] > cap
    message = refused[0].message
    assert message.startswith("budget cap $0.0020 reached") and "was not made" in message
    assert refused[0].exit_code == EXIT_BUDGET_CAP == 3
    assert audit(campaign.store).ok
    campaign.close()


def test_unknown_price_is_an_error_before_any_call(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url))
    before = campaign.state.events
    with pytest.raises(UnknownPriceError, match="no chat price known for model 'Qwen/Qwen2.5-7B-Instruct'"):
        asyncio.run(provider.chat(CallKey("p/1"), stage="eval", model="Qwen/Qwen2.5-7B-Instruct",
                                  messages=prompt(0), max_tokens=8))
    assert campaign.state.events == before
    (recorded,) = events_of(campaign, "prices.recorded")
    assert recorded.payload["models"][MODEL]["input_usd_per_mtok"] == 0.30


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from dpo_tui.config import load_settings
    from dpo_tui.events.campaign import Campaign
    from dpo_tui.provider.catalog import build_price_book
    from dpo_tui.provider.provider import CallKey, Provider
    from dpo_tui.provider.tokenizer import get_tokenizer
    db, base_url = Path(sys.argv[1]), sys.argv[2]
    settings = load_settings(None, env={}, base_url=base_url, api_key="sim-dummy-key", timeout_s=60)
    campaign = Campaign.open(db)
    provider = Provider(settings, campaign, build_price_book(None), get_tokenizer())
    asyncio.run(provider.chat(CallKey("o/1", 2, "repair"), stage="rollouts", model="%s",
                              messages=[{"role": "user", "content": "fix me"}], temperature=0.2, seed=5,
                              max_tokens=300))
""" % MODEL)


def _wait_for_started(db, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            if con.execute("SELECT count(*) FROM event WHERE type = 'call.started'").fetchone()[0]:
                return
        except sqlite3.OperationalError:
            pass
        finally:
            con.close()
        time.sleep(0.05)
    raise AssertionError("the child never started its call")


def test_sigkill_mid_call_orphans_then_reissues_under_the_same_key(sim, tmp_path):
    db = tmp_path / "c.db"
    Campaign.create(db, name="orphans", actor="system").close()
    sim.set_faults("latency=20000")  # the call hangs at the server until the child is killed
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), sim.base_url])
    try:
        _wait_for_started(db)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    sim.set_faults("")

    campaign, provider = make_provider(db, fast_settings(sim.base_url))  # restart: recovers orphans
    (started,) = events_of(campaign, "call.started")
    (orphan,) = events_of(campaign, "call.orphaned")
    key = started.payload["idempotency_key"]
    assert orphan.payload["idempotency_key"] == key and orphan.payload["started_seq"] == started.seq
    reserved = started.payload["reserved_usd"]
    assert orphan.payload["reserved_usd"] == reserved > 0
    assert campaign.state.part(SPEND).total_usd == reserved, "possibly billed: kept in spend, shown"
    assert campaign.state.part(CALLS).orphaned_usd == reserved

    (result,) = asyncio.run(provider.reissue_orphans())
    assert not result.from_log and result.idempotency_key == key
    reissued = events_of(campaign, "call.started")[-1]
    assert reissued.payload["reissue"] is True and reissued.payload["idempotency_key"] == key
    assert reissued.payload["messages"] == started.payload["messages"]
    assert reissued.payload["params"] == started.payload["params"] == {"max_tokens": 300, "seed": 5,
                                                                      "temperature": 0.2}
    assert campaign.state.part(SPEND).total_usd == pytest.approx(reserved + result.cost_usd, abs=1e-15)
    campaign.close()

    # Another restart: nothing to recover, and the completed key is answered from the log.
    campaign, provider = make_provider(db, fast_settings(sim.base_url))
    assert len(events_of(campaign, "call.orphaned")) == 1
    again = asyncio.run(provider.chat(CallKey("o/1", 2, "repair"), stage="rollouts", model=MODEL,
                                      messages=[{"role": "user", "content": "fix me"}], temperature=0.2, seed=5,
                                      max_tokens=300))
    assert again.from_log and again.text == result.text
    assert len(events_of(campaign, "call.completed")) == 1
    assert audit(campaign.store).ok
    campaign.close()


def test_cancelled_call_is_orphaned_not_forgotten(sim, tmp_path):
    campaign, provider = make_provider(tmp_path / "c.db", fast_settings(sim.base_url, timeout_s=30))
    sim.set_faults("latency=1500")  # long enough to cancel mid-call

    async def cancel_mid_call():
        task = asyncio.create_task(provider.chat(CallKey("c/1"), stage="rollouts", model=MODEL,
                                                 messages=prompt(1), max_tokens=50))
        while not campaign.state.part(CALLS).in_flight:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_call())
    (orphan,) = events_of(campaign, "call.orphaned")
    assert campaign.state.part(SPEND).total_usd == orphan.payload["reserved_usd"] > 0
    sim.set_faults("")
    result = asyncio.run(provider.chat(CallKey("c/1"), stage="rollouts", model=MODEL, messages=prompt(1),
                                       max_tokens=50))
    assert not result.from_log
    assert math.isclose(campaign.state.part(SPEND).total_usd, orphan.payload["reserved_usd"] + result.cost_usd)
    campaign.close()


def test_a_key_in_flight_elsewhere_is_not_started_twice(sim, tmp_path):
    db = tmp_path / "c.db"
    campaign, provider = make_provider(db, fast_settings(sim.base_url, timeout_s=30))
    sim.set_faults("latency=1000")

    async def first_call_then_a_second_process():
        task = asyncio.create_task(provider.chat(CallKey("x/1"), stage="rollouts", model=MODEL, messages=prompt(1),
                                                 max_tokens=20))
        while not campaign.state.part(CALLS).in_flight:
            await asyncio.sleep(0.01)
        other_campaign, other = make_provider(db, fast_settings(sim.base_url), recover=False)
        with pytest.raises(Exception, match="is in flight elsewhere"):
            await other.chat(CallKey("x/1"), stage="rollouts", model=MODEL, messages=prompt(1), max_tokens=20)
        other_campaign.close()
        return await task

    result = asyncio.run(first_call_then_a_second_process())
    assert not result.from_log
    assert len(events_of(campaign, "call.started")) == 1 and len(events_of(campaign, "call.completed")) == 1
    campaign.close()
