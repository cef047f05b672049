"""The budget cap holds in every stage that can spend: before a stage starts (its point
estimate against what the cap leaves) and while endpoints bill by the minute."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dpo_tui.campaign.cap import EndpointMeter, started_minutes
from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import format_ts, open_store
from dpo_tui.provider.provider import set_cap
from tests.conftest import run_dpo_tui, small_demo_plan


def events(db: Path, type_: str) -> list:
    with open_store(db, readonly=True) as store:
        return [e for e in store.read() if e.type == type_]


def spend_and_cap(db: Path) -> tuple[float, float]:
    with Campaign.open(db, readonly=True) as c:
        return c.state.part("spend").total_usd, c.state.part("budget_guard").cap_usd


def test_the_eval_is_held_against_the_cap_before_it_starts_and_stopped_by_it_mid_way(tmp_path):
    # 1.4 endpoint minutes each estimated: the eval is estimated at 2 x 1.4 min x $0.0915 (1x H100 at
    # $5.49/h); the dedicated generator (2x H100, $0.183/min) needs its next minute to fit while it runs
    plan = tmp_path / "plan.toml"
    # (base and tuned on two endpoints: the cap's arithmetic below is of two; the shared deployment's is
    # tests/campaign/test_eval_serving.py's)
    plan.write_text(small_demo_plan(**{"endpoint_tokens_per_s = 20000": "endpoint_tokens_per_s = 20000\nendpoint_minutes = 1.4",
                                       "cap_usd = 5.00": "cap_usd = 0.40", "k = 3": "k = 1",
                                       'policy_base = "Qwen/Qwen2.5-7B-Instruct"':
                                       'policy_base = "Qwen/Qwen2.5-7B-Instruct"\neval_adapters = "off"'}))
    db = tmp_path / "c.db"

    # 1. rollouts and training fit $0.40; the eval's estimate does not: refused before any endpoint
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=400)
    assert res.returncode == 3, res.stderr
    assert "the eval's endpoint minutes is estimated at $0.2562" in res.stderr
    assert json.loads(res.stdout)["status"] == "budget_cap"
    assert [e.payload["role"] for e in events(db, "endpoint.started")] == ["generator"]  # the rollouts' only
    [refused] = events(db, "budget.stage_refused")
    assert refused.payload["stage"] == "eval" and refused.payload["cap_usd"] == 0.40
    spend, cap = spend_and_cap(db)
    assert spend <= cap

    # 2. a cap the estimate fits, but not both endpoints' minutes as they start: stopped mid-way
    with Campaign.open(db) as c:
        set_cap(c, round(spend + 0.265, 4), reason="room for the estimate only", actor="operator:alice")
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=400)
    assert res.returncode == 3, res.stderr
    assert "the next minute of" in res.stderr and ("does not fit" in res.stderr or "do not fit" in res.stderr)
    started, stopped = events(db, "endpoint.started"), events(db, "endpoint.stopped")
    assert started and {e.payload["endpoint_id"] for e in started} == {e.payload["endpoint_id"] for e in stopped}
    assert events(db, "endpoint.billed"), "endpoint minutes are booked as they start, not only at the stop"
    spend, cap = spend_and_cap(db)
    assert spend <= cap + 1e-9
    assert events(db, "decision.gate") == []

    # 3. raised again (and a harmless plan edit after training): the eval resumes and the gate
    # decides, never above the cap, and audit holds (only the criteria and protocol are fixed)
    with Campaign.open(db) as c:
        set_cap(c, 2.0, reason="finance approved the eval", actor="operator:alice")
    plan.write_text(plan.read_text().replace("concurrency = 8", "concurrency = 6"))
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=400)
    assert res.returncode == 0, res.stderr
    assert "resuming at eval" in res.stderr
    assert events(db, "plan.recorded")[-1].payload["changed"] == ["rollouts.concurrency"]
    assert len(events(db, "decision.gate")) == 1
    with Campaign.open(db, readonly=True) as c:
        assert c.state.part("endpoint").running() == []
        assert c.state.part("budget").cap_set_by == "operator:alice"  # the rerun kept the operator's cap
    spend, cap = spend_and_cap(db)
    assert spend <= cap
    with open_store(db, readonly=True) as store:
        report = audit(store)
    assert report.ok, report.problems

    # the report at eval.k = 1 (no pass@k column to show), in both formats; the refusals are in it
    for fmt in ("md", "html"):
        out = tmp_path / f"report.{fmt}"
        res = run_dpo_tui("report", "--db", db, "--format", fmt, "--out", out)
        assert res.returncode == 0, res.stderr
        text = out.read_text()
        assert "Gate: " in text and "(k = 1)" in text and "The cap refused the eval" in text
    # --fail-on-rollback is accepted; this gate did not roll back, so the run exits 0
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", "--fail-on-rollback", timeout=200)
    assert res.returncode == 0 and "every stage is done" in res.stderr, res.stderr


def test_fail_on_rollback_turns_a_rollback_gate_into_exit_6(capsys):
    from dpo_tui.campaign.cli import finish
    from dpo_tui.campaign.runner import RunResult

    def result(decision):
        return RunResult(0, "done", "ok", {"status": "done", "exit_code": 0, "eval": {"decision": decision}})

    assert finish(result("rollback"), True) == 6
    assert json.loads(capsys.readouterr().out)["exit_code"] == 6
    assert finish(result("rollback"), False) == 0
    assert finish(result("ship"), True) == 0 and finish(result("inconclusive"), True) == 0


def _endpoint(c: Campaign, endpoint_id: str, started: datetime, cents: int = 336) -> None:
    c.append("endpoint.started", {"run_id": "run-1", "role": "base", "endpoint_id": endpoint_id,
                                  "deployment_id": f"dep-{endpoint_id}", "name": endpoint_id, "model": "m",
                                  "chat_model": f"p/{endpoint_id}/d1", "instance": "1x_nvidia_h100_80gb_sxm",
                                  "price_cents_per_hour": cents, "started_at": format_ts(started)}, actor="system")


def test_the_meter_books_every_started_minute_and_stops_before_the_next_one_would_cross(tmp_path):
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    now = [t0]
    with Campaign.create(tmp_path / "m.db", name="meter", actor="operator:alice") as c:
        set_cap(c, 0.30, reason="test", actor="operator:alice")
        _endpoint(c, "a", t0)                       # $0.056 a minute
        _endpoint(c, "b", t0 + timedelta(seconds=30))
        meter = EndpointMeter(c, clock=lambda: now[0])
        now[0] = t0 + timedelta(seconds=31)
        assert meter.tick() is None                 # a and b: 1 minute each started
        assert c.state.part("spend").total_usd == pytest.approx(2 * 0.056)
        now[0] = t0 + timedelta(seconds=61)         # a's second minute started: 0.168 spent, 0.132 left
        assert meter.tick() is None                 # the next minute of both (0.112) still fits
        assert c.state.part("spend").total_usd == pytest.approx(3 * 0.056)
        now[0] = t0 + timedelta(seconds=91)         # b's second minute: 0.224 spent, 0.076 left < 0.112
        message = meter.tick()
        assert message is not None and "does not fit" in message
        assert c.state.part("spend").total_usd <= 0.30
        assert meter.tick() is not None and len([e for e in c.store.read() if e.type == "endpoint.billed"]) == 4
        # the stop books only the minutes the meter had not booked yet
        c.append("endpoint.stopped", {"endpoint_id": "a", "stopped_at": format_ts(now[0]), "minutes": 2,
                                      "cost_usd": 2 * 0.056, "reason": "cap"}, actor="system")
        assert c.state.part("spend").total_usd == pytest.approx(4 * 0.056)


def test_started_minutes_counts_every_started_minute():
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    at = format_ts(t0)
    assert [started_minutes(at, t0 + timedelta(seconds=s)) for s in (0, 1, 59, 60, 61, 600)] == [1, 1, 1, 1, 2, 10]


def test_the_gate_criteria_invariant_names_a_changed_criterion_and_ignores_other_fields(tmp_path):
    from dpo_tui.campaign.plan import demo_plan_path, load_plan
    from dpo_tui.campaign.runner import record_plan
    from dpo_tui.campaign.state.eval import _criteria_fixed
    from dpo_tui.campaign.state.train import TRAINING

    base = load_plan(demo_plan_path())
    with Campaign.create(tmp_path / "g.db", name="gate", actor="operator:alice") as c:
        record_plan(c, base, demo_plan_path())
        c.state.part(TRAINING).run("run-1").plan_hash = base.hash()
        first = next(iter(c.store.read()))
        for change, bad in ((("rollouts", "concurrency", 3), False), (("rollback", "alpha", 0.10), True),
                            (("eval", "seeds", [1, 2, 3]), True)):
            section, key, value = change
            edited = base.model_copy(update={section: getattr(base, section).model_copy(update={key: value})})
            record_plan(c, edited, demo_plan_path())
            event = first._replace(type="decision.gate", payload={"run_id": "run-1", "plan_hash": edited.hash()})
            problem = _criteria_fixed(c.state, event)
            assert (problem is not None) == bad, (change, problem)
            if bad:
                assert ("rollback" if section == "rollback" else key) in problem


def test_the_demos_try_next_lines_name_a_program_this_shell_can_run(monkeypatch, tmp_path):
    import sys

    from dpo_tui.campaign.cli import program_name

    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the README's setup does not put .venv/bin on PATH
    monkeypatch.chdir(bin_dir.parent.parent)
    assert program_name() == str(Path(bin_dir.parent.name) / bin_dir.name / "dpo-tui")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # an activated venv
    assert program_name() == "dpo-tui"


def test_a_cap_below_a_running_endpoints_next_minute_is_refused_naming_it(tmp_path):
    """Lowered mid-minute under what the running endpoint's next minute needs, a cap would be
    crossed before the meter could stop it (hypothesis found it: test_cap_property.py): it is
    refused, naming what is spent and what is committed, and the one that fits is taken."""
    from dpo_tui.errors import InputError

    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with Campaign.create(tmp_path / "m.db", name="meter", actor="operator:alice") as c:
        set_cap(c, 0.30, reason="test", actor="operator:alice")
        _endpoint(c, "a", t0)  # $0.056 a minute
        meter = EndpointMeter(c, clock=lambda: t0 + timedelta(seconds=30))
        assert meter.tick() is None  # its first minute booked: 0.056 spent
        with pytest.raises(InputError) as refused:
            set_cap(c, 0.10, reason="lower", actor="operator:alice")  # 0.056 spent + 0.056 next > 0.10
        text = str(refused.value)
        assert "$0.1120 already spent or committed" in text and "$0.0560 spent" in text
        assert "$0.0560 for the running endpoints' next minute" in text and "stop the endpoints first" in text
        set_cap(c, 0.112, reason="lower", actor="operator:alice")  # exactly what is committed: taken
        assert c.state.part("budget_guard").cap_usd == pytest.approx(0.112)
