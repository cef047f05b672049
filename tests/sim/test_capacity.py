"""A dedicated deployment serves `replica_slots` requests per replica at once; the rest wait
their turn, and a queue past `queue_factor` x the slots is answered 503 (sim/capacity.py).
Through the real async SDK, concurrent calls against a deployment of each size."""

from __future__ import annotations

import asyncio
import time

import pytest
import together

from dpo_tui.sim.capacity import Capacity
from dpo_tui.sim.server import SimServer
from tests.sim.test_sdk_flow import BASE7, _wait_state

MSGS = [{"role": "user", "content": "hi"}]


def _deploy(sim: SimServer, name: str) -> tuple[str, str]:
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0, project_id="proj_sim")
    prof = {m.name: m for m in client.models.list_supported()}[BASE7].deployment_profiles[0]
    ep = client.endpoints.create(name=name)
    dep = client.endpoints.deployments.create(ep.id, name="d1", autoscaling={"minReplicas": 1, "maxReplicas": 1},
                                              model=prof.model, config=prof.config)
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_READY")
    return dep.id, f"simproj/{name}/d1"


async def _burst(sim: SimServer, model: str, n: int) -> tuple[float, list]:
    client = together.AsyncTogether(api_key="sim-key", base_url=sim.base_url, max_retries=0)
    t0 = time.monotonic()
    got = await asyncio.gather(*(client.chat.completions.create(model=model, messages=MSGS, seed=i)
                                 for i in range(n)), return_exceptions=True)
    return time.monotonic() - t0, got


@pytest.mark.parametrize("slots", [2, 8])
def test_a_deployment_serves_its_slots_at_once_and_queues_the_rest(slots: int) -> None:
    with SimServer(seed=1, provision_seconds=0.01, replica_slots=slots, serving_scale=0.2) as sim:
        dep_id, model = _deploy(sim, f"cap-{slots}")
        wall, got = asyncio.run(_burst(sim, model, 8))
        assert all(not isinstance(g, BaseException) for g in got), got
        tokens = max(g.usage.completion_tokens for g in got)
        service = sim.state.capacity.service_seconds(min(g.usage.completion_tokens for g in got))
        stats = sim.state.capacity.stats(dep_id)
        assert stats["served"] == 8 and stats["peak"] == min(slots, 8)  # never more at once than its slots
        # 8 calls, `slots` at a time, each held for at least its service time
        assert wall >= (8 // slots) * service * 0.95, (wall, service)
        assert sim.state.capacity.service_seconds(tokens) > 0


def test_a_queue_past_its_bound_is_answered_503_overloaded() -> None:
    with SimServer(seed=1, provision_seconds=0.01) as sim:
        sim.state.capacity = Capacity(replica_slots=1, serving_scale=0.3, queue_factor=1)
        _dep_id, model = _deploy(sim, "cap-q")
        _wall, got = asyncio.run(_burst(sim, model, 5))
        refused = [g for g in got if isinstance(g, together.APIStatusError)]
        assert len(refused) == 3 and all(g.status_code == 503 and "overloaded" in str(g) for g in refused)
        assert sum(not isinstance(g, BaseException) for g in got) == 2  # one served, one waited its turn


def test_a_zero_scale_answers_at_once_and_bounds_are_checked() -> None:
    cap = Capacity(replica_slots=1, serving_scale=0.0)
    assert cap.service_seconds(1000) == 0
    assert asyncio.run(cap.serve("d", 1, 1000)) is None and cap.stats("d")["served"] == 0
    with pytest.raises(ValueError):
        Capacity(replica_slots=0)
