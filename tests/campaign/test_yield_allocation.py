"""Yield allocation through the real runner, engine and SDK against the embedded simulator: one
small demo campaign (rollouts.allocation = "yield", floor 1) run to its pairs, then its log read
back. Each round is logged before it runs and re-derives from the outcomes before it (audit);
replay shows it; a forged round is named; a resume from a log cut mid-round reruns nothing
that finished and does not decide a round twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.campaign.plan import load_plan
from dpo_tui.campaign.runner import run_campaign
from dpo_tui.campaign.state.allocation import ALLOCATION
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from tests.conftest import copy_campaign_file, small_demo_plan
from tests.events.test_audit_trust import audit_json, forge, no_key, rules  # noqa: F401 - fixtures

YIELD = {"pilot_rollouts = 4": 'pilot_rollouts = 4\nallocation = "yield"\nfloor = 1',
         'generator = "Qwen/Qwen2.5-72B-Instruct-Turbo"': 'generator = "Qwen/Qwen2.5-7B-Instruct-Turbo"',
         'generator_serving = "dedicated"': 'generator_serving = "serverless"'}  # no endpoint to wait for


@pytest.fixture(scope="module")
def yield_campaign(tmp_path_factory: pytest.TempPathFactory, _session_audit_key: Path) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("yield")
    plan = folder / "plan.toml"
    plan.write_text(small_demo_plan(**YIELD))
    db = folder / "c.db"
    result = run_campaign(plan, db, until="pairs", yes=True)
    assert result.exit_code == 0, result.message
    return plan, db


def _events(db: Path, type_: str) -> list[dict]:
    with open_store(db, readonly=True) as store:
        return [dict(e.payload) | {"seq": e.seq} for e in store.read() if e.type == type_]


def test_the_plan_names_a_bad_allocation_or_floor(tmp_path):
    for old, new, field in (("pilot_rollouts = 4", 'pilot_rollouts = 4\nallocation = "greedy"', "rollouts.allocation"),
                            ("pilot_rollouts = 4", "pilot_rollouts = 4\nfloor = 3", "floor = 3")):
        path = tmp_path / "p.toml"
        path.write_text(small_demo_plan(**{old: new}))
        with pytest.raises(InputError, match=field):
            load_plan(path, check_models=False)


def test_each_round_is_logged_before_its_rollouts_and_the_stage_spends_the_same_total(yield_campaign):
    _, db = yield_campaign
    alloc = _events(db, "rollouts.allocated")
    started = {p["rollout_id"]: p["seq"] for p in _events(db, "rollout.started") if p["stage"] == "rollouts"}
    rounds = sorted({p["round"] for p in alloc})
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) >= 2
    assert {p["reason"] for p in alloc if p["round"] == 1} == {"floor"}
    assert {p["reason"] for p in alloc if p["round"] > 1} <= {"yield", "stopped", "ceiling"}
    given: dict[str, int] = {}
    for p in alloc:
        for k in range(given.get(p["task_id"], 0), p["allocated"]):
            rid = f"{p['task_id']}/r{k}"
            if p["round"] > 1:  # the pilot's rollouts ran before round 1 (the floor counts them)
                assert started[rid] > p["seq"], f"{rid} started before the round that allocated it"
        given[p["task_id"]] = p["allocated"]
    assert sorted(started) == sorted(f"{t}/r{k}" for t, n in given.items() for k in range(n))
    assert all(n >= 1 for n in given.values()) and sum(given.values()) <= 26  # 13 train tasks x 2
    assert max(given.values()) > 2  # some task got more than a uniform share


def test_the_allocation_replays_exactly_and_audit_re_derives_every_round(yield_campaign, cli):
    from dpo_tui.campaign import allocation
    from dpo_tui.campaign.state.split import SPLIT

    plan_path, db = yield_campaign
    code, out, _ = cli("replay", "--db", db, "--json")
    shown = json.loads(out)["allocation"]
    c = Campaign.open(db, readonly=True)
    try:
        a = c.state.part(ALLOCATION)
        assert shown == a.to_json() and shown["rounds"] == a.rounds
        plan = load_plan(plan_path, check_models=False)
        programs = {p["rollout_id"]: p["final_program"] for p in _events(db, "rollout.finished")}
        for r in range(1, a.rounds + 1):
            again = allocation.round_decisions(c.state, plan, c.state.part(SPLIT).split.train, r, a.basis[r],
                                               a.before[r], programs.__getitem__)
            logged = [{k: d[k] for k in again[0].to_json()} for d in a.by_round[r]]
            assert [d.to_json() for d in again] == logged, r
    finally:
        c.close()
    code, report = audit_json(cli, db)
    assert code == 0, report["problems"]


def test_a_forged_allocation_is_named_by_audit(yield_campaign, tmp_path, cli, no_key):
    db = copy_campaign_file(yield_campaign[1], tmp_path / "c.db")

    def edit(rows):
        i = next(i for i, r in enumerate(rows) if r["type"] == "rollouts.allocated" and r["payload"]["round"] == 2
                 and r["payload"]["reason"] == "yield")
        rows[i]["payload"]["rollouts"] += 1
        rows[i]["payload"]["allocated"] += 1
        return rows

    forge(db, edit)
    code, report = audit_json(cli, db)
    assert code == 1 and "allocation-derivation" in rules(report)
    assert any("does not follow from the outcomes before it" in p["message"] for p in report["problems"])


def test_a_resume_from_a_log_cut_mid_round_reruns_nothing_that_finished(yield_campaign, tmp_path, cli):
    plan, db = yield_campaign
    cut = copy_campaign_file(db, tmp_path / "c.db")
    round2 = max(p["seq"] for p in _events(db, "rollouts.allocated") if p["round"] == 2)
    first_done = min(p["seq"] for p in _events(db, "rollout.finished") if p["seq"] > round2)
    forge(cut, lambda rows: rows[:first_done + 1])  # what a kill -9 after one of round 2's rollouts leaves
    finished_before = {p["rollout_id"] for p in _events(cut, "rollout.finished")}
    result = run_campaign(plan, cut, until="pairs", yes=True)
    assert result.exit_code == 0, result.message
    started = [p["rollout_id"] for p in _events(cut, "rollout.started")]
    assert len(started) == len(set(started))  # nothing started twice, so nothing that finished reran
    assert finished_before <= {p["rollout_id"] for p in _events(cut, "rollout.finished")}
    alloc = _events(cut, "rollouts.allocated")
    assert [p["seq"] for p in alloc if p["round"] <= 2] == [p["seq"] for p in _events(db, "rollouts.allocated")
                                                            if p["round"] <= 2]  # rounds 1-2 not decided again
    code, report = audit_json(cli, cut)
    assert code == 0, report["problems"]


@pytest.mark.parametrize("to", ["uniform", "yield"])
def test_an_allocation_changed_once_the_paid_rollouts_started_is_refused_naming_the_field(yield_campaign, tmp_path,
                                                                                           cli, to):
    """The allocation is fixed once the stage started: a plan switched mid-stage (either way,
    from a log cut mid-round) is refused before anything is appended, naming the field."""
    plan, db = yield_campaign
    cut = copy_campaign_file(db, tmp_path / "c.db")
    round2 = max(p["seq"] for p in _events(db, "rollouts.allocated") if p["round"] == 2)
    if to == "yield":  # a uniform stage cut mid-way: no round logged, paid rollouts started
        first_paid = min(p["seq"] for p in _events(db, "rollout.started") if p["stage"] == "rollouts")
        keep = [p["seq"] for p in _events(db, "rollouts.allocated")]
        forge(cut, lambda rows: [r for r in rows[:first_paid + 3] if r["seq"] not in keep])
        text = plan.read_text().replace('allocation = "yield"', 'allocation = "uniform"')
        switched = plan.read_text()
        plan = tmp_path / "uniform.toml"
        plan.write_text(text)
        result = run_campaign(plan, cut, until="rollouts", yes=True)  # the uniform stage's own resume works
        assert result.exit_code == 0, result.message
        cut = copy_campaign_file(db, tmp_path / "c2.db")
        forge(cut, lambda rows: [r for r in rows[:first_paid + 3] if r["seq"] not in keep])
    else:
        forge(cut, lambda rows: rows[:round2 + 3])
        switched = plan.read_text().replace('allocation = "yield"', 'allocation = "uniform"')
    other = tmp_path / "switched.toml"
    other.write_text(switched)
    before = len(_events(cut, "rollout.started"))
    result = run_campaign(other, cut, until="pairs", yes=True)
    assert result.exit_code != 0 and "rollouts.allocation" in result.message, result.message
    assert ("uniform" if to == "yield" else "yield") in result.message
    assert len(_events(cut, "rollout.started")) == before


@pytest.mark.anyio
async def test_budget_and_rollouts_say_which_allocation_runs_and_what_its_rounds_expect(yield_campaign, tmp_path):
    from tests.tui.conftest import make_app, wait_for
    from tests.tui.screen_text import screen_text

    db = copy_campaign_file(yield_campaign[1], tmp_path / "c.db")
    app = make_app(db, readonly=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "allocation: yield (floor 1, at most 6 per task" in screen_text(app))
        assert "kept pairs expected from the rounds so far" in screen_text(app)
        await pilot.press("3")
        await wait_for(pilot, lambda: "allocation: yield" in screen_text(app) and "done" in screen_text(app))
