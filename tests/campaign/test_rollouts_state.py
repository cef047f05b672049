"""The rollouts part of the state counts each task's rollouts per stage as they start and
finish, and a replay of the log gives the same counts."""

from __future__ import annotations

from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.fold import fold


def _start(c: Campaign, rid: str, task: str, stage: str) -> None:
    c.append("rollout.started", {"rollout_id": rid, "task_id": task, "stage": stage, "model": "m", "seed": 1,
                                 "max_iters": 2, "reflections": False, "temperature": 0.7, "max_tokens": 64},
             actor="system")


def _finish(c: Campaign, rid: str, passed: bool, cost: float) -> None:
    c.append("rollout.finished", {"rollout_id": rid, "outcome": "passed" if passed else "max_iters", "passed": passed,
                                  "tests": 4, "tests_passed": 4 if passed else 1, "iterations": 1, "final_program": "",
                                  "calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": cost},
             actor="system")


def test_per_task_progress_counts_and_replays(tmp_path):
    with Campaign.create(tmp_path / "c.db", name="t", actor="operator:t") as c:
        for rid, task, stage in (("a/r0", "a", "rollouts"), ("a/r1", "a", "rollouts"), ("b/r0", "b", "rollouts"),
                                 ("a/p0", "a", "pilot")):
            _start(c, rid, task, stage)
        _finish(c, "a/r0", True, 0.25)
        _finish(c, "a/r1", False, 0.5)
        _finish(c, "a/p0", True, 1.0)
        live = c.state.part(ROLLOUTS).by_task
        got = {k: (v.started, v.finished, v.passed, v.cost_usd) for k, v in live.items()}
        assert got == {("rollouts", "a"): (2, 2, 1, 0.75), ("rollouts", "b"): (1, 0, 0, 0.0),
                       ("pilot", "a"): (1, 1, 1, 1.0)}
        replayed = fold(c.store.read()).part(ROLLOUTS).by_task
        assert {k: (v.started, v.finished, v.passed, v.cost_usd) for k, v in replayed.items()} == got
