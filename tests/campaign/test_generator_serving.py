"""Issue 16, bullets 1-3: the generator served as the catalogue offers it.

The plan is checked against the catalogue (the simulator's, or a live one read over HTTP
through the real SDK); a dedicated generator's endpoint is started before the pilot, billed
by the minute into the rollouts' spend, held against the cap, and always stopped, also when a
crashed run left one that it never logged.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import together

from dpo_tui.campaign.plan import load_checked_plan
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.prices import load_prices
from dpo_tui.sim.server import SimServer
from tests.conftest import copy_campaign_file, run_dpo_tui, small_demo_plan

TURBO72 = "Qwen/Qwen2.5-72B-Instruct-Turbo"
TINY = {"rollouts_per_task = 2": "rollouts_per_task = 1", "pilot_rollouts = 4": "pilot_rollouts = 2"}


def _plan(tmp_path, **more: str):
    path = tmp_path / "plan.toml"
    path.write_text(small_demo_plan(**more))
    return path


def test_a_serving_the_catalogue_does_not_offer_fails_in_one_line_naming_the_field_and_the_offers(tmp_path):
    path = _plan(tmp_path, **{'generator_serving = "dedicated"': 'generator_serving = "serverless"'})
    with pytest.raises(InputError) as exc:
        load_checked_plan(path)
    assert exc.value.message == (
        f"{path}: models.generator_serving: {TURBO72} has no serverless offer (catalogue of 2026-07-16); set "
        'models.generator_serving = "dedicated" (2x H100, $10.98/h) or pick a serverless model: '
        "Qwen/Qwen2.5-7B-Instruct-Turbo")
    res = run_dpo_tui("estimate", "--plan", path)
    assert res.returncode == 2 and "models.generator_serving:" in res.stderr and len(res.stderr.splitlines()) == 1
    # the serverless 7B-Turbo has no dedicated offer in the snapshot; unknown hardware names the field
    path = _plan(tmp_path, **{f'generator = "{TURBO72}"': 'generator = "Qwen/Qwen2.5-7B-Instruct-Turbo"'})
    with pytest.raises(InputError, match="models.generator_serving: Qwen/Qwen2.5-7B-Instruct-Turbo has no dedicated "
                                         "offer .catalogue of 2026-07-16.; set models.generator_serving = .serverless."):
        load_checked_plan(path)
    path = _plan(tmp_path, **{'generator_serving = "dedicated"':
                              'generator_serving = "dedicated"\ngenerator_hardware = "8xnvidia-a100"'})
    with pytest.raises(InputError, match=r"models.generator_hardware: hardware '8xnvidia-a100' is not in the "
                                         r"hardware list .* offered: 1xnvidia-b200-180gb, 1xnvidia-h100-80gb"):
        load_checked_plan(path)


def test_the_estimate_prices_a_dedicated_generator_by_the_minute_and_says_where_prices_come_from(tmp_path):
    path = _plan(tmp_path, **{"generator_serving = \"dedicated\"":
                              'generator_serving = "dedicated"\ngenerator_replicas = 2'})
    res = run_dpo_tui("estimate", "--plan", path, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["prices"]["origin"] == "table" and out["prices"]["as_of"] == "2026-07-16"
    assert out["generator"] == {"model": TURBO72, "serving": "dedicated", "instance": "2xnvidia-h100-80gb",
                                "replicas": 2, "usd_per_hour": 21.96}
    rollouts = out["by_stage"]["rollouts"]
    # minutes = ceil(provisioning 0.1 + tokens / (10000 tok/s x 2 replicas) / 60), at $21.96/h
    minutes = -(-(0.1 + rollouts["tokens"] / 20000 / 60) // 1)
    assert rollouts["usd"] == pytest.approx(minutes * 21.96 / 60) and rollouts["low_usd"] <= rollouts["usd"]


def test_the_live_catalogue_decides_and_prices_for_the_real_api_and_doctor_shows_the_disagreements(tmp_path):
    """backend.kind = "together" against a running simulator as the API: the catalogue and
    hardware list are read live through the SDK (origin catalogue, as of today); without a key,
    the shipped snapshot with a warning."""
    table = load_prices()
    h100 = dataclasses.replace(table.instances["1xnvidia-h100-80gb"], price_cents_per_hour=600)
    with SimServer(seed=0, prices=dataclasses.replace(table, instances={**table.instances, h100.name: h100})) as sim:
        path = _plan(tmp_path, **{'kind = "simulator"': f'kind = "together"\nbase_url = "{sim.base_url}"'})
        env = {"TOGETHER_API_KEY": "sim-key", "XDG_CONFIG_HOME": str(tmp_path)}
        res = run_dpo_tui("estimate", "--plan", path, "--json", env=env)
        assert res.returncode == 0, res.stderr
        prices = json.loads(res.stdout)["prices"]
        assert prices["origin"] == "catalogue" and prices["as_of"] != "2026-07-16" and sim.base_url in prices["source"]
        res = run_dpo_tui("estimate", "--plan", path, "--json", env={"TOGETHER_API_KEY": "", "XDG_CONFIG_HOME": str(tmp_path)})
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["prices"]["origin"] == "table"
        assert "the live catalogue could not be read" in res.stderr
        res = run_dpo_tui("doctor", "--base-url", sim.base_url, env=env)
        assert "prices vs table: 1 disagreement(s) with the shipped table of 2026-07-16" in res.stdout, res.stdout
        assert "1xnvidia-h100-80gb: table $5.49/h, catalogue $6.00/h" in res.stdout
        res = run_dpo_tui("estimate", "--plan", path, "--json", env=env)  # the live hourly price is the one used
        eval_endpoint = json.loads(res.stdout)["by_stage"]["endpoint"]
        # one endpoint: the live catalogue's profile of the base hosts adapters, so base and tuned share it
        assert eval_endpoint["usd"] == pytest.approx(1 * 1 * 6.00 / 60)


def test_the_generator_endpoint_is_logged_billed_into_the_rollouts_and_stopped(finished_demo_template, tmp_path):
    db = copy_campaign_file(finished_demo_template, tmp_path / "c.db")
    with Campaign.open(db, readonly=True) as c:
        events = list(c.store.read(verify=False))
        state = c.state.to_json()
    started = [e for e in events if e.type == "endpoint.started" and e.payload["role"] == "generator"]
    assert len(started) == 1 and started[0].payload["price_cents_per_hour"] == 1098
    first_call = next(e.seq for e in events if e.type == "call.started" and e.payload.get("stage") == "rollouts")
    assert started[0].seq < first_call, "the generator's endpoint is logged before any call it serves"
    gen = [e for e in state["endpoint"]["all"] if e["role"] == "generator"]
    assert [e["state"] for e in state["endpoint"]["all"]] == ["stopped"] * len(state["endpoint"]["all"])
    assert gen[0]["minutes"] >= 1 and gen[0]["cost_usd"] == pytest.approx(gen[0]["minutes"] * 10.98 / 60)
    calls = [e for e in events if e.type == "call.completed" and e.payload["stage"] == "rollouts"]
    assert calls and {e.payload["model"] for e in calls} == {started[0].payload["chat_model"]}
    assert all(e.payload["price"]["input_usd_per_mtok"] == e.payload["price"]["output_usd_per_mtok"] == 0 for e in calls)
    assert state["spend"]["by_stage"]["rollouts"] == pytest.approx(gen[0]["cost_usd"])
    assert any(e.type == "endpoint.billed" and e.payload["endpoint_id"] == gen[0]["endpoint_id"] for e in events)
    cal = state["budget"]["calibrated"]
    assert any("measured by the pilot" in n for n in cal["notes"])
    assert run_dpo_tui("audit", "--db", db).returncode == 0
    report = run_dpo_tui("report", "--db", db)
    assert (f"The generator ran on a dedicated endpoint: the rollouts row is its {gen[0]['minutes']} billed minute(s), "
            f"${gen[0]['cost_usd']:.4f} (1 start(s)); its calls cost $0 per token.") in report.stdout


def test_a_generator_endpoint_a_crashed_run_never_logged_is_adopted_reused_and_stopped(tmp_path):
    path = _plan(tmp_path, **TINY)
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", path, "--db", db, "--yes", "--until", "split")
    assert res.returncode == 0, res.stderr
    with Campaign.open(db, readonly=True) as c:
        name = f"dpo-{c.store.campaign_id[:6]}-rollouts-generator"
    # what a run killed between creating the endpoint and logging it left behind, billing
    with SimServer(seed=7, state_dir=db.with_name(f"{db.name}.sim")) as sim:
        client = together.Together(api_key="sim-key", base_url=sim.base_url, project_id="proj_sim", max_retries=0)
        prof = next(m for m in client.models.list_supported() if m.name == TURBO72).deployment_profiles[0]
        ep = client.endpoints.create(name=name)
        client.endpoints.deployments.create(ep.id, name="d1", model=prof.model, config=prof.config,
                                            autoscaling={"minReplicas": 1, "maxReplicas": 1})
    res = run_dpo_tui("run", "--plan", path, "--db", db, "--yes", "--until", "rollouts")
    assert res.returncode == 0, res.stderr
    assert "reusing the generator endpoint" in res.stderr  # no second provisioning
    with Campaign.open(db, readonly=True) as c:
        eps = c.state.part("endpoint").by_id
        events = list(c.store.read(verify=False))
    assert list(eps) == [ep.id]  # adopted (logged, billed from its creation), then used: no endpoint deployed again
    assert eps[ep.id]["adopted"] and eps[ep.id]["role"] == "generator" and eps[ep.id]["state"] == "stopped"
    assert eps[ep.id]["price_cents_per_hour"] == 1098 and eps[ep.id]["reused"] == 1
    assert [e.payload["reason"] for e in events if e.type == "endpoint.stopped"] == ["rollouts ended"]
    calls = [e for e in events if e.type == "call.completed" and e.payload["stage"] == "rollouts"]
    assert calls and {e.payload["model"] for e in calls} == {eps[ep.id]["chat_model"]}
    assert run_dpo_tui("audit", "--db", db).returncode == 0


def test_the_cap_stops_the_rollouts_when_the_generators_next_minute_does_not_fit(tmp_path):
    path = _plan(tmp_path, **TINY, **{"cap_usd = 5.00": "cap_usd = 0.30"})
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", path, "--db", db, "--yes", "--until", "rollouts")
    assert res.returncode == 3, res.stderr
    assert "the next minute of 1 running endpoint(s) ($0.1830) does not fit" in res.stderr
    assert "the rollouts stopped" in res.stderr
    with Campaign.open(db, readonly=True) as c:
        eps = list(c.state.part("endpoint").by_id.values())
        spend = c.state.part("spend")
    assert [e["state"] for e in eps] == ["stopped"] and spend.total_usd <= 0.30
    assert spend.by_stage["rollouts"] == pytest.approx(eps[0]["cost_usd"])
