"""The headless runner on the embedded simulator: exit codes, resume, the lock, and
SIGKILL at random moments during rollouts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dpo_tui.errors import InputError
from dpo_tui.events.audit import audit
from dpo_tui.events.store import open_store
from tests.conftest import count_events, run_dpo_tui, small_demo_plan

SMALL = small_demo_plan()


@pytest.fixture
def plan(tmp_path) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(SMALL)
    return p


def finished_rollouts(db: Path) -> dict[str, tuple]:
    with open_store(db, readonly=True) as store:
        return {e.payload["rollout_id"]: (e.payload["passed"], e.payload["final_program"], e.payload["iterations"])
                for e in store.read() if e.type == "rollout.finished"}


def completed_keys(db: Path) -> Counter:
    with open_store(db, readonly=True) as store:
        return Counter(e.payload["idempotency_key"] for e in store.read() if e.type == "call.completed")


def test_waiting_for_a_decision_exits_4_then_yes_runs_and_a_rerun_resumes_without_new_calls(plan, tmp_path):
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts")
    assert res.returncode == 4, res.stderr
    assert "waiting for an operator decision: approve the split" in res.stderr
    summary = json.loads(res.stdout)
    assert summary["status"] == "waiting" and summary["stages"]["split"] == "waiting"

    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["rollouts"]["finished"] == summary["rollouts"]["total"] == 26
    assert summary["backend"] == "simulated" and "simulator" in res.stderr
    # told before paying: the pilot under the prior, the rest from the pilot's per-task pass rates
    assert "pilot: Power (under the prior, no pilot yet): this eval test (" in res.stderr, res.stderr
    assert "rollouts: Power (from the pilot's per-task pass rates): this eval test (" in res.stderr
    assert "pair yield: ~" in res.stderr and "pilot tasks disagree enough to pair" in res.stderr
    calls_before = sum(completed_keys(db).values())

    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 0 and sum(completed_keys(db).values()) == calls_before
    with open_store(db, readonly=True) as store:
        assert audit(store).ok


def test_a_second_run_on_the_same_campaign_is_refused(plan, tmp_path):
    db = tmp_path / "c.db"
    first = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db),
                              "--until", "rollouts", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if db.exists():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        second = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes")
        assert second.returncode == 2 and "another dpo-tui run is writing this campaign" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_the_uninterrupted_result(plan, tmp_path):
    reference = tmp_path / "reference.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", reference, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    expected = finished_rollouts(reference)

    db = tmp_path / "killed.db"
    rng = random.Random(int(os.environ.get("DPO_TUI_KILL_SEED", "5")))
    cmd = [sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db), "--until", "rollouts",
           "--yes"]
    kills = 0
    for _ in range(4):  # four SIGKILLs, each after a random amount of new progress (not a fixed delay,
        # which an idle machine outruns): 1-6 more rollouts finished, or a rollout mid-call
        before = count_events(db, "rollout.finished")
        target = before + rng.randint(1, 6)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and count_events(db, "rollout.finished") < target:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = run_dpo_tui(*cmd[3:], timeout=300)  # then a restart left to finish
    assert final.returncode == 0, final.stderr
    print(f"\nSIGKILL resume: {kills} kills at random moments, then a clean finish")
    assert kills >= 2
    assert finished_rollouts(db) == expected
    assert max(completed_keys(db).values()) == 1  # no idempotency key completed twice
    with open_store(db, readonly=True) as store:
        report = audit(store)
        orphans = sum(1 for e in store.read() if e.type == "call.orphaned")
    assert report.ok, report.problems
    print(f"orphaned calls recorded (possibly billed, kept in spend): {orphans}")


def test_an_operators_cap_holds_across_reruns_until_the_plan_changes_its_own(plan, tmp_path):
    from dpo_tui.campaign.runner import run_campaign
    from dpo_tui.events.campaign import Campaign
    from dpo_tui.provider.provider import set_cap

    db = tmp_path / "c.db"
    assert run_campaign(plan, db, until="budget").exit_code == 0
    with Campaign.open(db) as c:
        set_cap(c, 1.25, reason="finance asked for less", actor="operator:alice")
    assert run_campaign(plan, db, until="budget").exit_code == 0
    with Campaign.open(db, readonly=True) as c:
        assert (c.state.part("budget").cap_usd, c.state.part("budget").cap_set_by) == (1.25, "operator:alice")
        assert c.state.parts["budget_guard"].cap_usd == 1.25
    plan.write_text(SMALL.replace("cap_usd = 5.00", "cap_usd = 7.00"))
    assert run_campaign(plan, db, until="budget").exit_code == 0
    with Campaign.open(db, readonly=True) as c:
        caps = [(e.payload["cap_usd"], e.actor) for e in c.store.read() if e.type == "budget.cap_set"]
    assert caps == [(5.0, "plan"), (1.25, "operator:alice"), (7.0, "plan")]
    with pytest.raises(InputError, match="positive number"):
        with Campaign.open(db) as c:
            set_cap(c, float("nan"), reason="", actor="operator:alice")


def test_the_pilot_runs_two_rollouts_per_task_so_it_sees_each_tasks_spread():
    """pilot_specs: the first n of the round-robin order (one per task: the cost sample), then
    r1 of the first `repeats` of those tasks, so the per-task pair yield and the eval's power
    have a per-task spread to use; none repeated when tasks get one rollout."""
    from dpo_tui.campaign.pilot import pilot_specs

    specs = [f"t{i}/r{k}" for k in range(4) for i in range(5)]  # rollout_specs' round-robin order
    assert pilot_specs(specs, 4, 4, 2) == ["t0/r0", "t1/r0", "t2/r0", "t3/r0", "t0/r1", "t1/r1"]
    assert pilot_specs(specs, 7, 4, 3) == specs[:7] + ["t2/r1"]  # t0/r1 and t1/r1 are in the first 7 already
    assert pilot_specs(specs, 4, 4, 0) == specs[:4] and len(pilot_specs(specs, 30, 4, 15)) == 20
    assert pilot_specs(specs[:5], 3, 1, 2) == specs[:3]


def test_the_warm_up_logs_every_eval_tasks_baseline_before_the_pilot_and_the_calibration_prices_the_eval_on_it(
        plan, tmp_path):
    """Before the first pilot rollout, each eval task's buggy program runs in the sandbox (no
    call) and is logged as its `task.baseline`; the calibration's logged inputs carry the
    eval tasks' mean test time, the workers and the pilot's call latency it used."""
    from dpo_tui.campaign.runner import run_campaign

    db = tmp_path / "c.db"
    assert run_campaign(plan, db, yes=True, until="rollouts").exit_code == 0
    with open_store(db, readonly=True) as store:
        events = list(store.read())
    test_ids = next(e.payload["test"] for e in events if e.type == "split.approved")
    first_pilot = next(e.seq for e in events if e.type == "rollout.started")
    warmed = {e.payload["task_id"]: e for e in events if e.type == "task.baseline" and e.seq < first_pilot}
    assert set(test_ids) <= set(warmed), (sorted(test_ids), sorted(warmed))
    assert not any(e.type == "call.started" and e.seq < first_pilot for e in events)  # no call in the warm-up
    cal = next(e.payload for e in events if e.type == "budget.pilot_calibrated")
    cpu = [sum(v["cpu_seconds"] for v in warmed[t].payload["report"]["verdicts"]) for t in test_ids]
    wall = [warmed[t].payload["report"]["seconds"] for t in test_ids]
    start = min(w - c for w, c in zip(wall, cpu))  # one sandbox start, the least any run showed
    assert cal["inputs"]["eval_fail_test_seconds"] == pytest.approx(sum(cpu) / len(cpu) + start)
    assert cal["inputs"]["test_workers"] >= 1 and cal["inputs"]["eval_call_seconds"] is not None
    with open_store(db, readonly=True) as store:
        assert audit(store).ok


def test_a_run_closes_its_http_clients_so_none_is_left_to_a_later_event_loop(plan, tmp_path):
    """An AsyncTogether left open sits in a reference cycle until the collector finds it, and
    its __del__ then closes it on whatever loop is running (a later run's, the console's):
    `Event loop is closed` there. With the collector held off, no client the run opened may
    be left open when it returns."""
    import gc

    import httpx

    from dpo_tui.campaign.runner import run_campaign

    def open_clients() -> set[int]:
        return {id(o) for o in gc.get_objects() if isinstance(o, httpx.AsyncClient) and not o.is_closed}

    gc.collect()
    before = open_clients()
    gc.disable()
    try:
        result = run_campaign(plan, tmp_path / "c.db", until="split", yes=True)
        left = open_clients() - before
    finally:
        gc.enable()
    assert result.exit_code == 0, result.message
    assert left == set()
