"""Eval concurrency follows the endpoints' measured latency (domain/concurrency.py; its
probe, growth and settling are shown against a queueing model in tests/domain/): on a
simulated deployment that serves 2 requests at once (sim/capacity.py), an eval running more
than that backs off, logs every change as `engine.concurrency_set`, and a resume starts
where the log left it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from dpo_tui.campaign.eval_stage import _concurrency
from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from tests.conftest import run_dpo_tui
from tests.tui.conftest import copy_with_sim, demo_template, trained_template  # noqa: F401 - the session's trained demo (and the demo it continues)

SMALL_ENDPOINT = {"sim_seed = 7": "sim_seed = 7\nsim_replica_slots = 2\nsim_serving_scale = 0.05"}


def _plan(tmp_path: Path, replacements: dict[str, str]) -> Path:
    text = demo_plan_path().read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_an_eval_above_what_the_endpoint_serves_backs_off_and_logs_each_change(tmp_path, trained_template):  # noqa: F811
    """The eval resumes at 16 in flight (a logged change, with an unqueued latency below any
    this endpoint gives) on a deployment serving 2 at once: requests wait, so it must back off."""
    db = copy_with_sim(trained_template, tmp_path)
    with Campaign.open(db) as c:
        c.append("engine.concurrency_set", {
            "stage": "eval", "run_id": "run-1", "before": 8, "after": 16, "calls": 8, "latency_ms_per_token": 0.3,
            "baseline_ms_per_token": 0.3, "tokens_per_s": 1000.0, "reason": "as if an earlier run grew it"},
            actor="system")
    res = run_dpo_tui("run", "--plan", _plan(tmp_path, SMALL_ENDPOINT), "--db", db, "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    with Campaign.open(db, readonly=True) as c:
        changes = [e.payload for e in c.store.read() if e.type == "engine.concurrency_set"][1:]
        assert audit(c.store).ok
        folded = c.state.part("concurrency").to_json()
    assert changes and all(p["stage"] == "eval" and p["run_id"] == "run-1" for p in changes)
    first = changes[0]
    # at 16 in flight on 2 slots the calls queue: the first window backs off, and says why
    assert first["before"] == 16 and first["after"] < 16 and "requests wait for the endpoint" in first["reason"]
    assert first["latency_ms_per_token"] > 2 * first["baseline_ms_per_token"]
    path = [8, 16, *(p["after"] for p in changes)]
    assert max(path[2:]) < 16 <= load_plan(_plan(tmp_path, SMALL_ENDPOINT)).eval.max_concurrency
    assert folded["eval/run-1"]["path"] == path and folded["eval/run-1"]["concurrency"] == path[-1]
    replay = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    assert replay["concurrency"]["eval/run-1"]["path"] == path


def _ctx(db: Path, plan_text_replacements: dict[str, str], tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(plan=load_plan(_plan(tmp_path, plan_text_replacements)), run_id="run-1",
                           campaign=Campaign.open(db))


def test_a_resume_starts_at_the_logged_concurrency_and_a_fixed_plan_number_turns_it_off(tmp_path,
                                                                                     trained_template):  # noqa: F811
    db = copy_with_sim(trained_template, tmp_path)
    ctx = _ctx(db, {}, tmp_path)
    try:
        fresh = _concurrency(ctx)["controller"]
        assert fresh.limit == 2 and fresh.baseline is None  # a fresh eval probes first
        ctx.campaign.append("engine.concurrency_set", {
            "stage": "eval", "run_id": "run-1", "before": 4, "after": 7, "calls": 8, "latency_ms_per_token": 1.2,
            "baseline_ms_per_token": 0.8, "tokens_per_s": 900.0, "reason": "test"}, actor="system")
        resumed = _concurrency(ctx)["controller"]
        assert resumed.limit == 7 and resumed.baseline == 0.0008
    finally:
        ctx.campaign.close()
    fixed = _ctx(db, {"seeds = [11, 12, 13]": "seeds = [11, 12, 13]\nconcurrency = 3"}, tmp_path)
    try:
        assert _concurrency(fixed) == {"concurrency": 3}
    finally:
        fixed.campaign.close()


def test_the_operator_setting_the_concurrency_takes_over_from_the_measured_control() -> None:
    from dpo_tui.campaign.engine import RolloutEngine
    from dpo_tui.domain.concurrency import ThroughputController

    engine = RolloutEngine(None, None, controller=ThroughputController(4, ceiling=32))  # type: ignore[arg-type]
    try:
        assert engine.concurrency == 2  # the probe
        engine.set_concurrency(5, measured=True)
        assert engine.controller is not None and engine.concurrency == 5
        engine.set_concurrency(9)  # the console's "Concurrency up/down"
        assert engine.controller is None and engine.concurrency == 9
    finally:
        engine.close()
