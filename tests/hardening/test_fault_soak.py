"""The short fault soak of the default run: the demo campaign (3 rollouts per task: the calibrated generator fixes most tasks in one call, so 3 are needed for ~100 calls) against
the simulator with every fault kind on. The long soak (~2,000 calls):
`.venv/bin/python tests/hardening/fault_soak.py`."""

from __future__ import annotations

import pytest

from tests.hardening.fault_soak import MGMT_BUG, TRACEBACK_BUG, run_soak


@pytest.mark.slow
def test_every_fault_kind_on_the_campaign_finishes_audits_and_reconciles_spend(tmp_path):
    rep = run_soak(tmp_path, rollouts_per_task=3, timeout=600, one_seed=True)
    print("\n" + rep.summary())
    kinds = {k for k, v in rep.faults_injected.items() if v}
    assert {"429", "503", "reset", "malformed"} <= kinds, f"faults not exercised: {rep.faults_injected}"
    assert rep.calls >= 100 and rep.retries >= 10, rep.summary()
    assert rep.audit_ok, rep.problems
    assert abs(rep.logged_cost_usd - rep.recomputed_cost_usd) < 0.005 and rep.worst_call_diff_usd <= 1e-9
    assert rep.completed + rep.given_up == rep.calls, "a call neither completed nor given up"
    assert rep.stages.get("eval") == "done", (rep.exit_code, rep.message, rep.stages, rep.problems)
    assert rep.exit_code == 0, rep.problems
    bugs = [p for p in rep.problems if MGMT_BUG in p or TRACEBACK_BUG in p]
    assert not bugs, bugs  # a transient fault on a management call must be retried, never stop the stage
    assert not rep.problems, rep.problems
