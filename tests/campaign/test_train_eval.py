"""Training and eval on the embedded simulator: crash safety of the job and the
endpoints, the gate's override rules, and replay reproducing what the run printed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_tui.campaign.evaluation import override
from dpo_tui.errors import InputError
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from tests.conftest import count_events, run_dpo_tui, small_demo_plan

SMALL = small_demo_plan(**{"seeds = [11, 12, 13]": "seeds = [11, 12]", "k = 3": "k = 2"})


def _run_until_event(cmd: list[str], db: Path, type_: str, timeout: float = 240, after: int = 0) -> bool:
    """Start a run, SIGKILL it as soon as the log has more than `after` `type_` events; True if it was killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if count_events(db, type_) > after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return False


@pytest.mark.slow
def test_kill_during_training_and_during_eval_reattaches_and_leaves_no_endpoint(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(SMALL)
    db = tmp_path / "c.db"
    cmd = [sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db), "--yes"]
    assert _run_until_event(cmd, db, "train.job_created"), "the run ended before the job was created"
    # the dedicated generator's endpoint was ready in the rollouts: kill at an eval endpoint's
    assert _run_until_event(cmd, db, "endpoint.ready", after=count_events(db, "endpoint.ready")), \
        "the run ended before an endpoint was ready"
    final = run_dpo_tui(*cmd[3:], timeout=300)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["eval"]["decision"] in ("ship", "rollback", "inconclusive")

    with open_store(db, readonly=True) as store:
        events = list(store.read())
        report = audit(store)
    assert report.ok, report.problems
    jobs = {e.payload["job_id"] for e in events if e.type == "train.job_created"}
    assert len(jobs) == 1, jobs  # the restart reattached; no second job
    assert sum(e.type == "train.job_requested" for e in events) == 1
    started = {e.payload["endpoint_id"] for e in events if e.type == "endpoint.started"}
    stopped = {e.payload["endpoint_id"] for e in events if e.type == "endpoint.stopped"}
    assert started and started == stopped  # every endpoint stopped, including the one the kill left
    # the one the kill left running was reused by the resume, not stopped and deployed again
    reused = {e.payload["endpoint_id"] for e in events if e.type == "endpoint.reused"}
    # no (run, role) deployed twice; a kill between Together's endpoint create and its deployment's
    # leaves an empty endpoint, which the resume adopts and stops at $0 before it deploys one
    deployed = [(e.payload["run_id"], e.payload["role"]) for e in events
                if e.type == "endpoint.started" and e.payload["deployment_id"]]
    assert reused and reused <= started and len(deployed) == len(set(deployed)), deployed
    empty = {e.payload["endpoint_id"] for e in events if e.type == "endpoint.started" and not e.payload["deployment_id"]}
    assert all(e.payload["adopted"] for e in events if e.type == "endpoint.started" and e.payload["endpoint_id"] in empty)
    assert all(e.payload["cost_usd"] == 0 for e in events if e.type == "endpoint.stopped" and e.payload["endpoint_id"] in empty)
    assert summary["endpoint"]["running"] == 0


@pytest.mark.slow
def test_replay_reproduces_the_run_and_the_gate_override_needs_an_operator_and_a_reason(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(SMALL)
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    replayed = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    for key in ("spend", "rollouts", "training", "endpoint"):
        assert {k: replayed[key][k] for k in summary[key]} == summary[key], key
    assert {k: replayed["eval"][k] for k in summary["eval"]} == summary["eval"]
    assert set(summary["stages"].values()) == {"done"} and list(summary["stages"]) == [
        "budget", "split", "rollouts", "pairs", "train", "eval"]
    suite = replayed["eval"]["suites"]["test"]
    assert {"pass@1"} <= set(suite["base"]) and (suite["ci"] is None) == (suite["discordant"] == 0)
    assert suite["mde"] is None if suite["tasks"] <= 5 else suite["mde"] > 0  # 2^5 x 0.025 < 1: nothing rejects
    report = run_dpo_tui("report", "--db", db)
    assert report.returncode == 0 and "Gate:" in report.stdout and "SIMULATED" in report.stdout

    with Campaign.open(db) as c:
        decision = c.state.to_json()["eval"]["decision"]
        other = "ship" if decision != "ship" else "rollback"
        with pytest.raises(InputError, match="only an operator"):
            override(c, "run-1", other, reason="the plan says so, really", actor="plan")
        with pytest.raises(InputError, match="written reason"):
            override(c, "run-1", other, reason="ok", actor="operator:alice")
        with pytest.raises(InputError, match=f"already {decision}"):
            override(c, "run-1", decision, reason="a sentence that changes nothing", actor="operator:alice")
        override(c, "run-1", other, reason="Held-out suite is too small; shipping to canary only.",
                 actor="operator:alice")
        ev = c.state.to_json()["eval"]
        assert ev["decision"] == other and ev["decided_by"] == "operator:alice" and ev["gate_decision"] == decision
        assert audit(c.store).ok
