"""Dedicated endpoints across a crash: a run killed after Together created its endpoint (and
perhaps its deployment) but before the log said so must not be refused with 409 next time,
nor leave a second, unlogged endpoint billing: the next start adopts what exists."""

from __future__ import annotations

import pytest

from dpo_tui.campaign import serving
from dpo_tui.campaign.mgmt import mgmt_client
from dpo_tui.campaign.state.train import ENDPOINTS
from dpo_tui.config import load_settings
from dpo_tui.events.campaign import Campaign
from dpo_tui.sim.server import SimServer

MODEL = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture
def setup(tmp_path):
    with SimServer(seed=3) as sim, Campaign.create(tmp_path / "c.db", name="s", actor="plan") as c:
        settings = load_settings(None, env={}, api_key="sim-key", base_url=sim.base_url, retry_initial_s=0.05,
                                 retry_max_s=0.2, retry_jitter_s=0.0)
        m = mgmt_client(settings, c)
        ref, config = serving.base_profile(m, MODEL)
        yield c, m, ref, config


def _start(c, m, ref, config):
    return serving.start(c, m, run_id="run-1", role="base", model_ref=ref, config=config, price_cents_per_hour=300,
                         instance="1x_nvidia_h100_80gb_sxm", actor="system", poll_s=0.05)


@pytest.mark.parametrize("with_deployment", [False, True])
def test_start_adopts_an_endpoint_a_crashed_run_created_but_never_logged(setup, with_deployment):
    c, m, ref, config = setup
    name = f"dpo-{c.store.campaign_id[:6]}-run-1-base"
    orphan = m.client.endpoints.create(name=name)  # what the killed run got done before the crash
    dep = None
    if with_deployment:
        kw = {"config": config} if config else {}
        dep = m.client.endpoints.deployments.create(orphan.id, name="d1", model=ref,
                                                    autoscaling={"minReplicas": 1, "maxReplicas": 1}, **kw)
    ep = _start(c, m, ref, config)
    assert ep["endpoint_id"] == orphan.id and ep["state"] == "ready"
    assert [e.name.split("/")[-1] for e in m.client.endpoints.list().data] == [name]  # no second one
    started = [e for e in c.store.read() if e.type == "endpoint.started"][-1].payload
    assert started["adopted"] is True
    if dep is not None:  # billed from when the replica started, not from when we noticed it
        assert started["deployment_id"] == dep.id
        assert started["started_at"] == dep.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    serving.stop(c, m, ep["endpoint_id"], reason="test over")
    assert not c.state.part(ENDPOINTS).running() and m.client.endpoints.list().data == []


def test_eval_start_logs_and_stops_endpoints_a_crash_left_unlogged(setup):
    c, m, ref, config = setup
    prefix = f"dpo-{c.store.campaign_id[:6]}-"
    with_dep = m.client.endpoints.create(name=f"{prefix}run-2-tuned")
    kw = {"config": config} if config else {}
    dep = m.client.endpoints.deployments.create(with_dep.id, name="d1", model=ref,
                                                autoscaling={"minReplicas": 1, "maxReplicas": 1}, **kw)
    bare = m.client.endpoints.create(name=f"{prefix}run-2-base")  # the crash came before its deployment
    other = m.client.endpoints.create(name="someone-elses-endpoint")  # not this campaign's: left alone
    adopted = serving.adopt_unlogged(c, m, instance="1x_nvidia_h100_80gb_sxm", price_cents_per_hour=300)
    assert sorted(adopted) == sorted([with_dep.id, bare.id])
    assert serving.adopt_unlogged(c, m, instance="x", price_cents_per_hour=300) == []  # once
    logged = {e.payload["endpoint_id"]: e.payload for e in c.store.read() if e.type == "endpoint.started"}
    assert (logged[with_dep.id]["run_id"], logged[with_dep.id]["role"], logged[with_dep.id]["adopted"]) == (
        "run-2", "tuned", True)
    assert logged[with_dep.id]["deployment_id"] == dep.id and logged[bare.id]["deployment_id"] == ""
    assert sorted(serving.stop_all(c, m, reason="left running by an earlier run")) == sorted(adopted)
    stopped = {e.payload["endpoint_id"]: e.payload for e in c.store.read() if e.type == "endpoint.stopped"}
    assert stopped[bare.id]["minutes"] == 0 and stopped[with_dep.id]["minutes"] >= 1  # only a deployment bills
    assert [e.id for e in m.client.endpoints.list().data] == [other.id]
