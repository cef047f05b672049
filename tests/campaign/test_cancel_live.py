"""`dpo-tui cancel` against a training job that is still running: the simulated job is slowed
with DPO_TUI_SIM_JOB_STAGE_SECONDS (the supported knob of the embedded simulator), launched by
a real `dpo-tui run`, refused while that run holds the campaign's writer lock, cancelled once
it stopped, and the next run follows the job to `cancelled`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.events.campaign import Campaign
from tests.conftest import count_events, run_dpo_tui
from tests.tui.conftest import copy_campaign, demo_template  # noqa: F401 - the session's exported demo campaign

SLOW = {"DPO_TUI_SIM_JOB_STAGE_SECONDS": "120"}  # every status lasts 2 minutes: the job is live for the test


def _payloads(db: Path, type_: str) -> list[dict]:
    with Campaign.open(db, readonly=True) as c:
        return [e.payload for e in c.store.read() if e.type == type_]


def test_cancel_stops_a_running_job_once_the_run_that_follows_it_has_stopped(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    run = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(demo_plan_path()), "--db",
                            str(db), "--until", "train", "--yes"], env={**os.environ, **SLOW},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while count_events(db, "train.job_created") == 0 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_events(db, "train.job_created") == 1, run.stderr.read() if run.poll() is not None else ""
        busy = run_dpo_tui("cancel", "--db", db, "--reason", "wrong beta", env=SLOW)
        assert busy.returncode == 2 and "another dpo-tui run is writing this campaign" in busy.stderr
        assert "Cancel the job from the process that holds it" in busy.stderr
        run.terminate()  # the operator stops the run (SIGTERM): the job goes on at Together
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    (created,) = _payloads(db, "train.job_created")
    assert _payloads(db, "train.job_finished") == []  # still running when the run stopped

    res = run_dpo_tui("cancel", "--db", db, "--reason", "wrong beta", "--actor", "ci-bot", "--json", env=SLOW)
    assert res.returncode == 0, res.stderr
    events = json.loads(res.stdout)["events"]
    asked = [e for e in events if e["type"] == "train.cancel_requested"]
    assert [(e["actor"], e["payload"]) for e in asked] == [
        ("operator:ci-bot", {"run_id": created["run_id"], "job_id": created["job_id"], "reason": "wrong beta"})]
    assert any(e["type"] == "api.completed" and e["payload"]["what"] == "fine_tuning.cancel" for e in events), \
        [e["type"] for e in events]

    again = run_dpo_tui("run", "--plan", demo_plan_path(), "--db", db, "--until", "train", "--yes", env=SLOW,
                        timeout=180)
    finished = _payloads(db, "train.job_finished")
    assert [f["status"] for f in finished] == ["cancelled"], (again.returncode, again.stderr[-2000:])
    refused = run_dpo_tui("cancel", "--db", db, "--reason", "again", env=SLOW)
    assert refused.returncode == 2 and f"job {created['job_id']} already cancelled" in refused.stderr


def test_a_bad_job_stage_setting_is_refused_naming_the_variable(tmp_path):
    res = run_dpo_tui("run", "--plan", demo_plan_path(), "--db", tmp_path / "c.db", "--until", "budget",
                      env={"DPO_TUI_SIM_JOB_STAGE_SECONDS": "fast"})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "dpo-tui: error: DPO_TUI_SIM_JOB_STAGE_SECONDS: 'fast' is not a number of seconds >= 0" in res.stderr
