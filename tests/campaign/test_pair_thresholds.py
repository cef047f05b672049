"""Pair thresholds are a logged decision, not a what-if: `dpo-tui pairs thresholds` (the
console's T on Pairs) logs pairs.thresholds_set and the funnel rebuilt with it in one
transaction; later builds use them; an export from before is stale; a bad value names the
threshold; replay shows them and audit proves every later build used them."""

from __future__ import annotations

import json
from pathlib import Path

from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent
from tests.conftest import run_dpo_tui
from tests.tui.conftest import copy_campaign, demo_template  # noqa: F401 - the session's exported demo campaign


def _events(db: Path, *types: str) -> list:
    with Campaign.open(db, readonly=True) as c:
        return [e for e in c.store.read() if e.type in types]


def test_thresholds_are_a_decision_the_funnel_is_rebuilt_with_and_the_export_goes_stale(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    bad = run_dpo_tui("pairs", "thresholds", "--db", db, "--min-margin", "1.5", "--per-task-cap", "2", "--reason", "x")
    assert bad.returncode == 2 and "min margin: 1.5 is not in 0..1" in bad.stderr, bad.stderr
    bad = run_dpo_tui("pairs", "thresholds", "--db", db, "--min-margin", "0.5", "--per-task-cap", "0", "--reason", "x")
    assert bad.returncode == 2 and "per-task cap: 0 is not at least 1" in bad.stderr, bad.stderr
    assert not _events(db, "pairs.thresholds_set")  # a refused value logs nothing

    res = run_dpo_tui("pairs", "thresholds", "--db", db, "--min-margin", "0.5", "--per-task-cap", "1",
                      "--reason", "only clear wins, one per task", "--actor", "ci-bot")
    assert res.returncode == 0, res.stderr
    assert "the export is now stale" in res.stderr and "pair thresholds set at seq" in res.stderr
    with Campaign.open(db, readonly=True) as c:
        events = list(c.store.read())
    i = next(i for i, e in enumerate(events) if e.type == "pairs.thresholds_set")
    decided, rebuilt = events[i], events[i + 1]
    assert decided.actor == "operator:ci-bot" and decided.payload["reason"] == "only clear wins, one per task"
    assert rebuilt.type == "pairs.built" and rebuilt.actor == decided.actor  # the same transaction
    assert (rebuilt.payload["filters"]["min_margin"], rebuilt.payload["filters"]["per_task_cap"]) == (0.5, 1)
    kept = [p for p in rebuilt.payload["pairs"] if p["dropped_by"] is None]
    assert kept and all(p["chosen_score"] - p["rejected_score"] >= 0.5 for p in kept)
    assert len({p["task_id"] for p in kept}) == len(kept)  # one per task at most
    before = next(e for e in reversed(events[:i]) if e.type == "pairs.built")
    assert len(kept) < sum(1 for p in before.payload["pairs"] if p["dropped_by"] is None)
    assert f"{len(kept)} kept" in res.stdout

    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)["pairs"]
    assert state["thresholds"] == {"min_margin": 0.5, "per_task_cap": 1} and state["export_stale"]
    assert state["kept"] == len(kept)
    assert run_dpo_tui("pairs", "build", "--db", db).returncode == 0  # a later build uses them too
    [*_, last] = _events(db, "pairs.built")
    assert (last.payload["filters"]["min_margin"], last.payload["filters"]["per_task_cap"]) == (0.5, 1)
    audit = run_dpo_tui("audit", "--db", db)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_audit_names_a_build_that_ignored_the_thresholds_in_force(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    assert run_dpo_tui("pairs", "thresholds", "--db", db, "--min-margin", "0.6", "--per-task-cap", "2",
                       "--reason", "stricter").returncode == 0
    [*_, last] = _events(db, "pairs.built")
    forged = {**last.payload, "filters": {**last.payload["filters"], "min_margin": 0.2, "per_task_cap": 4}}
    with Campaign.open(db) as c:
        c.append_batch([NewEvent("pairs.built", forged, "system")])
    audit = run_dpo_tui("audit", "--db", db)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert "pairs-built-thresholds" in audit.stdout + audit.stderr
