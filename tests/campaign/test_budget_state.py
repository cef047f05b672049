"""`replay --json`'s budget: `calibrated` is the estimate logged when the pilot finished, and
stays so; later re-estimates (an operator's ctrl+r, a rerun's) go to `latest`; `estimate` is
the first. The pilot's rollout ids are kept for the per-task power and yield."""

from __future__ import annotations

import json

from dpo_tui.events.campaign import Campaign
from tests.conftest import run_dpo_tui


def _estimated(c: Campaign, total: float, actor: str = "system") -> None:
    c.append("budget.estimated", {"inputs": {}, "estimate": {"total_usd": total}, "prices_source": "t",
                                  "train_tasks": 1, "eval_tasks": 1}, actor=actor)


def test_calibrated_is_the_pilots_estimate_and_re_estimates_go_to_latest(tmp_path):
    db = tmp_path / "c.db"
    with Campaign.create(db, name="t", actor="operator:t") as c:
        _estimated(c, 1.0)
        c.append("budget.pilot_calibrated", {"pilot": {"rollouts": 2}, "rollout_ids": ["a/r0", "a/r1"],
                                             "estimate": {"total_usd": 2.0}, "pair_yield": {}}, actor="system")
        _estimated(c, 3.0, actor="operator:t")
        _estimated(c, 4.0)
    res = run_dpo_tui("replay", "--db", db, "--json")
    assert res.returncode == 0, res.stderr
    b = json.loads(res.stdout)["budget"]
    assert (b["estimate"]["total_usd"], b["calibrated"]["total_usd"], b["latest"]["total_usd"]) == (1.0, 2.0, 4.0)
    with Campaign.open(db, readonly=True) as c:
        assert c.state.parts["budget"].pilot_rollout_ids == ["a/r0", "a/r1"]
