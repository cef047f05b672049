"""Eval serving that pays once: where the catalogue says the base's deployment hosts LoRA
adapters, base and tuned share one deployment (the tuned adapter attached), and within one
command the base endpoint serves every run it evaluates (a run and its label-swap control)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dpo_tui.campaign.budget import budget_inputs, eval_endpoints, shared_eval_deployment
from dpo_tui.campaign.plan import load_plan
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from dpo_tui.provider.offers import snapshot_offers
from dpo_tui.provider.prices import load_prices
from tests.campaign.test_train_eval import _run_until_event
from tests.conftest import run_dpo_tui, small_demo_plan

EVAL_BASE = "Qwen/Qwen2.5-7B-Instruct"


def _events(db: Path, type_: str) -> list:
    with open_store(db, readonly=True) as store:
        return [e for e in store.read() if e.type == type_]


def _plan(tmp_path: Path, **more: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(small_demo_plan(**{"seeds = [11, 12, 13]": "seeds = [11, 12]", "k = 3": "k = 2", **more}))
    return path


def test_the_snapshot_says_which_base_hosts_adapters_and_the_estimate_bills_one_endpoint_or_two(tmp_path):
    offers = snapshot_offers()  # the simulator's catalogue, parsed into the SDK's types
    assert offers.hosts_adapters(EVAL_BASE) and not offers.hosts_adapters("Qwen/Qwen2.5-72B-Instruct-Turbo")
    prices = load_prices()
    assert prices.hosts_adapters(EVAL_BASE)

    shared = load_plan(_plan(tmp_path))
    off = load_plan(_plan(tmp_path, **{f'policy_base = "{EVAL_BASE}"': f'policy_base = "{EVAL_BASE}"\neval_adapters = "off"'}))
    assert shared_eval_deployment(shared, prices) and eval_endpoints(shared, prices) == 1
    assert not shared_eval_deployment(off, prices) and eval_endpoints(off, prices) == 2
    # a catalogue whose base deployment hosts no adapters: two endpoints, whatever the plan says
    from dataclasses import replace

    assert eval_endpoints(shared, replace(prices, adapters=frozenset())) == 2
    one = budget_inputs(shared, prices, train_tasks=8, eval_tasks=4)
    two = budget_inputs(off, prices, train_tasks=8, eval_tasks=4)
    assert (one.endpoints, two.endpoints) == (1, 2)


def test_a_run_and_its_control_are_evaluated_on_one_base_deployment_with_both_adapters_attached(tmp_path):
    db = tmp_path / "c.db"
    res = run_dpo_tui("train", "--plan", _plan(tmp_path), "--db", db, "--run-id", "run-2", "--control", "ctl-2",
                      "--yes", timeout=500)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert set(summary["runs"]) == {"run-2", "ctl-2"} and summary["runs"]["ctl-2"]["label_swap"] is True
    assert all(r["decision"] is not None for r in summary["runs"].values())
    assert "serves run ctl-2 too" in res.stderr

    started = [e.payload for e in _events(db, "endpoint.started")]
    assert [p["role"] for p in started] == ["generator", "base"]  # one eval endpoint for both runs
    base = started[1]
    attached = [e.payload for e in _events(db, "endpoint.adapter_attached")]
    assert [(a["run_id"], a["endpoint_id"]) for a in attached] == [("run-2", base["endpoint_id"]),
                                                                   ("ctl-2", base["endpoint_id"])]
    with Campaign.open(db, readonly=True) as c:
        runs = c.state.part("training").runs
        assert {a["run_id"]: a["adapter_model_id"] for a in attached} == {
            r: runs[r].adapter_object_id for r in ("run-2", "ctl-2")}
        assert c.state.part("endpoint").running() == []  # nothing outlives the command
        spend = c.state.part("spend")
        [ep] = [e for e in c.state.part("endpoint").by_id.values() if e["role"] == "base"]
        assert spend.by_stage["endpoint"] == ep["cost_usd"] > 0  # its minutes billed once, for both runs

    for result in _events(db, "eval.results"):
        run = result.payload["run_id"]
        served = result.payload["serving"]
        assert served["base"] == base["chat_model"]
        assert served["tuned"] == next(a["chat_model"] for a in attached if a["run_id"] == run)
    with open_store(db, readonly=True) as store:
        report = audit(store)
    assert report.ok, report.problems


@pytest.mark.slow
def test_a_kill_during_the_controls_eval_resumes_on_the_same_base_deployment(tmp_path):
    db = tmp_path / "c.db"
    cmd = [sys.executable, "-m", "dpo_tui.cli", "train", "--plan", str(_plan(tmp_path)), "--db", str(db),
           "--run-id", "run-2", "--control", "ctl-2", "--yes"]
    # the second adapter attached is the control's: its eval is under way on run-2's base
    assert _run_until_event(cmd, db, "endpoint.adapter_attached", after=1), "the command ended before the kill"
    res = run_dpo_tui(*cmd[3:], timeout=400)
    assert res.returncode == 0, res.stderr
    started = [e.payload for e in _events(db, "endpoint.started") if e.payload["role"] == "base"]
    assert len(started) == 1, started  # not deployed again by the resume
    assert [e.payload["endpoint_id"] for e in _events(db, "endpoint.reused")] == [started[0]["endpoint_id"]]
    assert len(_events(db, "endpoint.adapter_attached")) == 2  # the control's attachment used, not doubled
    assert {e.payload["run_id"] for e in _events(db, "decision.gate")} == {"run-2", "ctl-2"}
    with Campaign.open(db, readonly=True) as c:
        assert c.state.part("endpoint").running() == []
    with open_store(db, readonly=True) as store:
        report = audit(store)
    assert report.ok, report.problems
