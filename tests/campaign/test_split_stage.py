from __future__ import annotations

import sqlite3

import pytest

from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.campaign.split import approve_split, exclude_task, move_task, propose_split, unfreeze_split
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.campaign.suites import load_plan_tasks
from dpo_tui.errors import InputError
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.chain import canonical_json, event_hash
from dpo_tui.events.fold import fold
from dpo_tui.events.store import format_ts, open_store, utc_now


@pytest.fixture
def setup(tmp_path):
    plan = load_plan(demo_plan_path())
    tasks = load_plan_tasks(plan)
    c = Campaign.create(tmp_path / "c.db", name="s", actor="operator:alice")
    yield c, plan, tasks
    c.close()


def test_propose_edit_approve_freezes_and_logs_the_hash(setup):
    c, plan, tasks = setup
    split = propose_split(c, plan, tasks, actor="plan")
    assert len(split.test) == round(len(tasks.pool) * 0.3) and propose_split(c, plan, tasks, actor="plan") == split
    moved = move_task(c, plan, tasks, split.test[0], "train", actor="operator:alice", reason="too easy")
    excl = exclude_task(c, plan, tasks, moved.train[0], reason="flaky", actor="operator:alice")
    h = approve_split(c, actor="operator:alice")
    s = c.state.part(SPLIT)
    assert s.frozen and s.frozen_hash == h == excl.hash()
    with pytest.raises(InputError, match="frozen"):
        move_task(c, plan, tasks, split.train[1], "test", actor="operator:alice")
    with pytest.raises(InputError, match="written reason"):
        unfreeze_split(c, reason=" ", actor="operator:alice")
    unfreeze_split(c, reason="found a leak", actor="operator:bob")
    move_task(c, plan, tasks, split.train[1], "test", actor="operator:bob")
    h2 = approve_split(c, actor="operator:bob")
    assert h2 != h
    assert fold(c.store.read()).to_json()["split"] == c.state.to_json()["split"]
    assert c.state.to_json()["split"]["frozen_hash"] == h2
    assert audit(c.store).ok


def test_audit_flags_an_edit_of_a_frozen_split_without_unfreezing(setup):
    c, plan, tasks = setup
    split = propose_split(c, plan, tasks, actor="plan")
    approve_split(c, actor="plan")
    path = c.store.path
    c.close()
    # a buggy or hostile writer appends a move straight into the log, chain intact
    conn = sqlite3.connect(path)
    seq, prev = conn.execute("SELECT seq, hash FROM event ORDER BY seq DESC LIMIT 1").fetchone()
    cid = conn.execute("SELECT campaign_id FROM event WHERE seq = 1").fetchone()[0]
    text, ts = canonical_json({"task_id": split.test[0], "to": "train", "reason": "", "findings": []}), format_ts(utc_now())
    digest = event_hash(prev, seq + 1, cid, "split.task_moved", 1, "system", ts, text)
    conn.execute("INSERT INTO event VALUES (?,?,?,?,?,?,?,?,?)",
                 (seq + 1, cid, "split.task_moved", 1, "system", ts, text, prev, digest))
    conn.commit()
    conn.close()
    with open_store(path, readonly=True) as store:
        report = audit(store)
    assert report.first_bad_seq == seq + 1 and report.problems[0].rule == "split-frozen"


def test_after_an_unfreeze_the_runner_waits_for_a_new_approval(tmp_path):
    """The plan's approval under --yes covered the first freeze only: once an operator
    unfreezes, a run without --yes waits, and one with --yes logs a second decision."""
    from dpo_tui.campaign.runner import run_campaign

    db = tmp_path / "c.db"
    assert run_campaign(demo_plan_path(), db, until="split", yes=True).exit_code == 0
    with Campaign.open(db) as c:
        first = c.state.part(SPLIT).frozen_hash
        unfreeze_split(c, reason="a leak found in review", actor="operator:alice")
    waiting = run_campaign(demo_plan_path(), db, until="split")
    assert waiting.status == "waiting" and "approve the split" in waiting.message
    assert run_campaign(demo_plan_path(), db, until="split", yes=True).exit_code == 0
    with Campaign.open(db, readonly=True) as c:
        s = c.state.part(SPLIT)
        decisions = [d["decision"] for d in c.state.part("plan").decisions]
    assert s.frozen and s.frozen_hash == first and s.approvals == 2
    assert decisions == ["approve_split", "approve_split:2"]
