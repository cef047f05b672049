"""The one progress model against a real folded log: finished/planned per stage at every
point of a finished small demo campaign (folded up to that event), the plan's numbers as the
denominators; the stable rate that feeds every ETA and $/min; the headless line that reads it."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from dpo_tui.campaign.engine import EngineProgress
from dpo_tui.campaign.progress import Progress
from dpo_tui.campaign.stage_progress import StableRate, campaign_progress, eta_text, run_mode
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store


def _folded(db, upto: int) -> Campaign:
    return Campaign(open_store(db, readonly=True), fold_limit=upto)


def test_finished_against_planned_at_every_point_of_a_folded_log(finished_demo_template):
    with open_store(finished_demo_template, readonly=True) as store:
        events = list(store.read(verify=False))
    plan = next(e for e in events if e.type == "plan.recorded").payload["plan"]
    split = next(e for e in events if e.type == "split.proposed").payload
    train, test = len(split["train"]), len(split["test"])  # (nothing moved in the demo)
    planned = train * plan["rollouts"]["rollouts_per_task"]  # the small demo: 2 per task
    eval_planned = 2 * len(plan["eval"]["seeds"]) * test
    stage = {e.payload["rollout_id"]: e.payload["stage"] for e in events if e.type == "rollout.started"}
    finishes = [i + 1 for i, e in enumerate(events) if e.type == "rollout.finished"]
    marks = [i + 1 for i, e in enumerate(events) if e.type in ("endpoint.started", "endpoint.ready",
                                                                 "budget.pilot_calibrated", "decision.gate")]
    cuts = sorted(set(finishes[::3] + marks + [len(events)]))
    seen_phases, seen_eval = set(), set()
    for cut in cuts:
        head = events[:cut]
        done = [stage[e.payload["rollout_id"]] for e in head if e.type == "rollout.finished"]
        calibrated = any(e.type == "budget.pilot_calibrated" for e in head)
        c = _folded(finished_demo_template, cut)
        try:
            cp = campaign_progress(c.state, now=datetime.now(UTC))
        finally:
            c.close()
        assert (cp.rollouts.finished, cp.rollouts.planned) == (done.count("rollouts"), planned)
        assert cp.rollouts.planned == planned and cp.eval.samples.planned == eval_planned
        assert cp.eval.samples.finished == done.count("eval")
        if cp.phase == "pilot":
            assert not calibrated and cp.rollouts_text() == f"pilot {cp.pilot.finished}/{cp.pilot.planned}"
            assert cp.pilot.finished == cp.rollouts.finished <= cp.pilot.planned
        elif cp.phase == "rollouts":
            assert calibrated and cp.rollouts_text() == f"{done.count('rollouts')}/{planned}"
            ids = next(e for e in head if e.type == "budget.pilot_calibrated").payload["rollout_ids"]
            passed = {e.payload["rollout_id"] for e in head if e.type == "rollout.finished" and e.payload["passed"]}
            assert cp.pilot.passed == len(passed & set(ids))  # the pilot's own passes, not 0 once calibrated
        seen_phases.add(cp.phase)
        if cp.eval.active:
            assert cp.eval_text() == f"{done.count('eval')}/{eval_planned}"
            assert [ep.role for ep in cp.eval.endpoints] == ["base"]  # one shared deployment
            assert cp.eval.endpoints[0].provisioning_s is not None and cp.eval.spend_usd >= 0
            seen_eval.add(cp.eval.endpoints[0].state)
    assert seen_phases >= {"pilot", "rollouts"}
    assert seen_eval == {"provisioning", "ready"}  # the endpoint's state, as the eval goes
    assert cp.eval_text() == cp.eval.decided and cp.eval.decided in ("ship", "rollback", "inconclusive")
    assert (cp.eval.samples.finished, cp.eval.samples.planned) == (eval_planned, eval_planned)


def test_the_stable_rate_moves_only_with_finished_rollouts():
    m = StableRate(min_finished=4, window=10)
    for t in range(60):  # a minute of clock samples with nothing finished: no rate, no ETA
        m.observe("rollouts", 0, 0.0, now=float(t))
    assert m.per_s() is None and m.eta_s(20, now=60.0) is None and eta_text(None) == "ETA …"
    for k in range(1, 4):  # three finished: still not stable
        m.observe("rollouts", k, 0.01 * k, now=60.0 + 2 * k)
        m.observe("rollouts", k, 0.01 * k, now=61.0 + 2 * k)  # samples between finishes change nothing
    assert m.per_s() is None
    etas = []
    for k in range(4, 20):  # then one every 2 s: a steady ETA, counted down from the last finish
        m.observe("rollouts", k, 0.01 * k, now=60.0 + 2 * k)
        etas.append(m.eta_s(20 - k, now=60.0 + 2 * k))
    tail = [e for e in etas[-8:]]
    assert all(abs(e - 2 * (20 - k)) < 1e-6 for e, k in zip(tail, range(12, 20)))
    assert abs(m.usd_per_min() - 0.01 * 30) < 1e-9  # $0.01 a rollout, 30 rollouts a minute
    m.observe("eval", 0, 0.5, now=200.0)  # another count: starts over
    assert m.per_s() is None
    assert eta_text(12.0, "paused") == "ETA paused" and eta_text(12.0, None) == "ETA -"


def test_run_mode_in_one_word():
    assert run_mode("paused", working=True) == "paused"
    assert run_mode("running", working=True, stopping=True) == "stopping"
    assert run_mode("cancelling", working=True) == "stopping"
    assert run_mode(None, working=False, waiting=True) == "waiting"
    assert run_mode(None, working=False) is None


def test_the_headless_line_counts_against_the_plan_and_shows_no_rate_before_it_is_stable(finished_demo_template):
    with open_store(finished_demo_template, readonly=True) as store:
        events = list(store.read(verify=False))
    first_eval = next(i for i, e in enumerate(events) if e.type == "rollout.finished" and "/s" in e.payload["rollout_id"]
                      and e.payload["rollout_id"].startswith("eval/"))
    c = _folded(finished_demo_template, first_eval + 1)
    try:
        out = io.StringIO()
        Progress(out).rollouts("eval", EngineProgress(total=99, finished=1, status="running"), c)
        cp = campaign_progress(c.state)
    finally:
        c.close()
    line = out.getvalue()
    assert f" {cp.eval.samples.finished}/{cp.eval.samples.planned} " in line  # the plan's N, not the engine's total
    assert "($…/min)" in line and "ETA …" in line  # one finished sample: no rate yet (was ~$9/min)
    assert "base endpoint" in line
