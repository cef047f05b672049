"""Replay from the log alone: the tasks as used are logged at split time (`tasks.snapshot`),
the pair prompts are rebuilt from that snapshot, and a suite edited after the split stops a
resumed run (exit 2, naming the task and the suite file, nothing appended)."""

from __future__ import annotations

import json
import shutil

from dpo_tui.campaign.pairs import first_prompt
from dpo_tui.campaign.plan import load_plan
from dpo_tui.campaign.state.tasks import TASKS, logged_task
from dpo_tui.campaign.suites import load_plan_tasks
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.paths import fixtures_dir
from dpo_tui.tasks.sandbox import Limits, TestVerdict, build_report
from tests.conftest import run_dpo_tui, small_demo_plan


def _campaign_on_a_copied_suite(tmp_path):
    suite = tmp_path / "suite.jsonl"
    shutil.copy(fixtures_dir() / "suites" / "fixtures.jsonl", suite)
    plan = tmp_path / "plan.toml"
    plan.write_text(small_demo_plan().replace('train_test = ["fixtures"]', f'train_test = ["jsonl:{suite}"]'))
    assert f"jsonl:{suite}" in plan.read_text()
    return suite, plan


def _events(db) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM event").fetchone()[0]


def _edit_one_task(suite) -> str:
    lines = suite.read_text().splitlines()
    row = json.loads(lines[3])
    row["buggy_program"] = row["buggy_program"] + "\n# edited after the split\n"
    lines[3] = json.dumps(row)
    suite.write_text("\n".join(lines) + "\n")
    return row["id"]


def test_a_suite_edited_after_the_split_stops_the_resumed_run(tmp_path):
    suite, plan = _campaign_on_a_copied_suite(tmp_path)
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "split", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    before = _events(db)
    task_id = _edit_one_task(suite)
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=300)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"dpo-tui: error: {suite}: task ") and task_id in line and "changed since the split" in line
    assert "Traceback" not in res.stderr
    assert _events(db) == before, "nothing was appended"


def test_the_snapshot_holds_the_tasks_as_used_and_prompts_come_from_it(tmp_path):
    suite, plan_path = _campaign_on_a_copied_suite(tmp_path)
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan_path, "--db", db, "--until", "split", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    plan = load_plan(plan_path)
    used = load_plan_tasks(plan)
    c = Campaign.open(db)
    try:
        snap = c.state.part(TASKS).content
        assert set(snap) == set(used.all())
        for tid, task in used.all().items():
            again = logged_task(c.state, tid)
            assert (again.buggy_program, again.tests, again.description, again.content_hash) == \
                   (task.buggy_program, task.tests, task.description, task.content_hash)
            assert snap[tid]["source"] == f"jsonl:{suite}" and snap[tid]["fixed_program_sha256"]
        # the prompt is rebuilt from the log: the suite file as it is now does not matter
        task_id = _edit_one_task(suite)
        edited = load_plan_tasks(plan).all()[task_id]
        assert edited.content_hash != used.all()[task_id].content_hash
        report = build_report([TestVerdict("t", "fail", "AssertionError")], Limits(), sandboxed=True, seconds=0.1)
        c.append("task.baseline", {"task_id": task_id, "content_hash": snap[task_id]["content_hash"],
                                   "report": report.to_dict()}, actor="system")
        prompt = first_prompt(c, edited)
        assert "# edited after the split" not in prompt[1]["content"]
        assert used.all()[task_id].buggy_program.strip() in prompt[1]["content"]
        assert audit(c.store).ok
    finally:
        c.close()


def test_audit_rederives_each_logged_task_hash(tmp_path):
    from dpo_tui.campaign.state.tasks import snapshot_payload

    plan = load_plan(_campaign_on_a_copied_suite(tmp_path)[1])
    tasks = load_plan_tasks(plan)
    payload = snapshot_payload(tasks.all(), tasks.sources)
    payload["tasks"][0]["buggy_program"] += "# not what was hashed\n"
    c = Campaign.create(tmp_path / "c.db", name="t", actor="system")
    c.append("tasks.snapshot", payload, actor="system")
    report = audit(c.store)
    c.close()
    assert not report.ok and any(p.rule == "task-content" for p in report.problems)


SLOW = "def f():\n    n = 0\n    for i in range(3_000_000):\n        n += i\n    return n\n"


def test_calibrated_limits_are_logged_and_a_resume_uses_the_logged_ones(tmp_path):
    from dpo_tui.campaign.state.tasks import calibrated_limits, calibration_payload
    from dpo_tui.tasks.calibrate import clear_calibrations, run_tests_calibrated
    from dpo_tui.tasks.suites import task_from_code

    task = task_from_code("slow", SLOW, "def test_f():\n    assert f() == sum(range(3_000_000))\n",
                          fixed_program=SLOW)
    base = Limits(test_cpu_seconds=0.05)
    clear_calibrations()
    measured: list[Limits] = []
    first = run_tests_calibrated(task, SLOW, base=base, on_calibrated=measured.append)
    assert first.passed and measured and measured[0].per_test_cpu, "the calibration raised the test's limit"
    c = Campaign.create(tmp_path / "c.db", name="t", actor="system")
    try:
        assert calibrated_limits(c.state, task.id, base) is None
        c.append("task.calibrated", calibration_payload(task, base, measured[0]), actor="system")
        logged = calibrated_limits(c.state, task.id, base)
        assert logged == measured[0]
        assert calibrated_limits(c.state, task.id, Limits(test_cpu_seconds=0.2)) is None  # another base limit
        # a resume uses the logged limits, never a new measurement: a logged limit too low stays a timeout
        clear_calibrations()
        again: list[Limits] = []
        low = Limits(test_cpu_seconds=0.05, per_test_cpu=(("test_f", 0.06),))
        report = run_tests_calibrated(task, SLOW, base=base, calibrated=low, on_calibrated=again.append)
        assert not report.passed and not again
        assert run_tests_calibrated(task, SLOW, base=base, calibrated=logged).passed
    finally:
        c.close()


def test_a_campaign_split_before_snapshots_is_checked_against_the_splits_hashes(tmp_path):
    import dataclasses

    import pytest

    from dpo_tui.campaign.suites import check_unchanged
    from dpo_tui.errors import InputError

    suite, plan_path = _campaign_on_a_copied_suite(tmp_path)
    tasks = load_plan_tasks(load_plan(plan_path))
    info = [{"id": t.id, "suite": t.suite, "name": t.name, "tests": len(t.tests.cases), "content_hash": t.content_hash}
            for t in tasks.pool.values()]
    c = Campaign.create(tmp_path / "c.db", name="t", actor="system")
    try:
        c.append("split.proposed", {"seed": 1, "test_fraction": 0.3, "stratify_by_suite": True, "tasks": info,
                                    "train": [i["id"] for i in info[1:]], "test": [info[0]["id"]]}, actor="plan")
        check_unchanged(c.state, tasks.all(), tasks.sources)  # unchanged: no complaint
        first = next(iter(tasks.pool.values()))
        changed = dataclasses.replace(first, buggy_program=first.buggy_program + "# edited\n", content_hash="")
        with pytest.raises(InputError, match=f"{suite}: task {first.id} changed since the split"):
            check_unchanged(c.state, {**tasks.all(), first.id: changed}, tasks.sources)
        gone = {k: v for k, v in tasks.all().items() if k != first.id}
        with pytest.raises(InputError, match=f"task {first.id} of this campaign's split is no longer in the suite"):
            check_unchanged(c.state, gone, tasks.sources)
    finally:
        c.close()


def test_the_leakage_filter_reads_the_test_programs_from_the_log(finished_demo_template, tmp_path):
    """A test task's program edited in the suite after the split into a copy of a kept pair's
    chosen program (what `load_plan_tasks` would return after that edit) would drop the pair as
    leaked if the filter read the suite; it reads the logged `tasks.snapshot`, so nothing moves."""
    import dataclasses

    from dpo_tui.campaign.pairs import compute_pairs
    from dpo_tui.campaign.state.split import SPLIT
    from dpo_tui.campaign.suites import PlanTasks
    from dpo_tui.provider.tokenizer import get_tokenizer
    from tests.conftest import copy_campaign_file

    db = copy_campaign_file(finished_demo_template, tmp_path / "c.db")
    plan = load_plan(finished_demo_template.parent / "plan.toml")
    tasks = load_plan_tasks(plan)
    tok = get_tokenizer()
    c = Campaign.open(db, readonly=True)
    try:
        pairs, before, _, _ = compute_pairs(c, plan, tasks, tok)
        kept = before.kept[0]
        test_id = c.state.part(SPLIT).split.test[0]
        edited = dataclasses.replace(tasks.pool[test_id], buggy_program=kept.chosen.program)
        on_disk = PlanTasks({**tasks.pool, test_id: edited}, tasks.heldout, tasks.sources)
        _, after, _, _ = compute_pairs(c, plan, on_disk, tok)
    finally:
        c.close()
    assert after.dropped.get(kept.pair_id) is None
    assert after.funnel == before.funnel and [p.pair_id for p in after.kept] == [p.pair_id for p in before.kept]
