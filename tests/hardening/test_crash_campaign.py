"""The cheap crash campaign of the default run: one tiny campaign SIGKILLed three times at
random points (fixed seed), restarted to completion, compared with an uninterrupted run.

The full campaign (every stage, many kills): `.venv/bin/python tests/hardening/crash_campaign.py`
"""

from __future__ import annotations

import os

import pytest

from tests.hardening.crash_campaign import SIM_JOB_ID_BUG, run_campaign, tiny_plan


@pytest.mark.slow
def test_three_sigkills_at_random_points_leave_nothing_lost_repeated_or_running(tmp_path):
    seed = int(os.environ.get("DPO_TUI_CRASH_SEED", "2"))
    rep = run_campaign(tmp_path, rounds=1, kills=3, seed=seed, plan_text=tiny_plan())
    print("\n" + rep.summary())
    assert rep.kills_made >= 2, f"the kills did not land (made {rep.kills_made}): {rep.problems}"
    others = [p for p in rep.problems if SIM_JOB_ID_BUG not in p]
    assert not others, others
    assert rep.kills_survived == rep.kills_made, rep.problems
