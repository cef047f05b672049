"""A sequential eval wired end to end (issue 21): rounds, `eval.look` events, the gate taken
from the last look, the fold and replay showing the looks, audit re-deriving each one, and a
SIGKILL between rounds resuming without paying a sample twice. One small campaign trained
once per session (the small demo plan, eval.design = "sequential") on the embedded simulator."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from dpo_tui.errors import EXIT_STAGE_FAILED
from dpo_tui.events.store import open_store
from tests.campaign.test_train_eval import _run_until_event
from tests.conftest import copy_campaign_file, run_dpo_tui, small_demo_plan
from tests.events.test_audit_trust import audit_json, forge, last_index, no_key, rules  # noqa: F401 - fixtures

PLAN = small_demo_plan(**{"seeds = [11, 12, 13]": "seeds = [11, 12]",
                          "k = 3": 'k = 2\ndesign = "sequential"\nlooks = 3'})


def _copy(src: Path, dst_dir: Path) -> tuple[Path, Path]:
    """The campaign, its simulator's state (the trained model lives there) and the plan."""
    db = copy_campaign_file(src, dst_dir / "c.db")
    shutil.copytree(src.with_name(f"{src.name}.sim"), db.with_name(f"{db.name}.sim"))
    plan = dst_dir / "plan.toml"
    plan.write_text(PLAN)
    return db, plan


def _events(db: Path, type_: str) -> list:
    with open_store(db, readonly=True) as store:
        return [e for e in store.read() if e.type == type_]


@pytest.fixture(scope="module")
def trained_sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dpo_tui.campaign.runner import run_campaign

    folder = tmp_path_factory.mktemp("seq-trained")
    (folder / "plan.toml").write_text(PLAN)
    db = folder / "t.db"
    result = run_campaign(folder / "plan.toml", db, until="train", yes=True)
    assert result.exit_code == 0, result.message
    return db


@pytest.fixture(scope="module")
def evaluated_sequential(trained_sequential: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dpo_tui.campaign.runner import run_campaign

    db, plan = _copy(trained_sequential, tmp_path_factory.mktemp("seq-evaluated"))
    result = run_campaign(plan, db, until=None, yes=True)
    assert result.exit_code == 0, result.message
    return db


@pytest.fixture
def finished(evaluated_sequential: Path, tmp_path: Path) -> Path:
    return copy_campaign_file(evaluated_sequential, tmp_path / "f.db")


def test_the_eval_runs_in_rounds_and_the_gate_is_the_last_looks(evaluated_sequential):
    looks = [e.payload for e in _events(evaluated_sequential, "eval.look")]
    assert [lk["look"] for lk in looks] == list(range(1, len(looks) + 1)) and looks
    assert all(lk["decision"] == "continue" for lk in looks[:-1]) and looks[-1]["decision"] != "continue"
    assert looks[-1]["look"] == looks[-1]["looks"] or looks[-1]["decision"] in ("ship", "rollback")
    # every seed of a round's tasks, base and tuned, ran before its look; no later round's sample
    seen: set[str] = set()
    for lk in looks:
        seen |= set(lk["round_tasks"]["test"])
    rollouts = [e.payload for e in _events(evaluated_sequential, "rollout.started") if e.payload["stage"] == "eval"]
    assert {r["task_id"] for r in rollouts} == seen
    assert looks[-1]["samples_seen"] == len(rollouts) == 2 * 2 * len(seen)
    # the spending: a growing level, the last look keeps most of alpha
    alphas = [lk["one_sided_alpha"] for lk in looks]
    assert alphas == sorted(alphas) and sum(alphas) <= 0.025 + 1e-12
    [gate] = [e.payload for e in _events(evaluated_sequential, "decision.gate")]
    assert (gate["decision"], gate["look"]) == (looks[-1]["decision"], looks[-1]["look"])
    assert gate["reason"].startswith(f"sequential look {looks[-1]['look']}/")
    assert not [e for e in _events(evaluated_sequential, "endpoint.started")
                if e.payload["role"] == "base" and e.payload["endpoint_id"] not in
                {s.payload["endpoint_id"] for s in _events(evaluated_sequential, "endpoint.stopped")}]


def test_replay_shows_the_looks_and_audit_re_derives_them(finished, cli):
    code, out, _ = cli("replay", "--db", finished, "--json")
    assert code == 0
    ev = json.loads(out)["eval"]
    looks = ev["looks"]
    assert looks and looks[-1]["decision"] == ev["decision"] and {"statistic", "one_sided_alpha"} <= set(looks[0])
    code, report = audit_json(cli, finished)
    assert code == 0, report["problems"]


def test_a_forged_look_statistic_fails_under_look_derivation(finished, cli, no_key):
    def edit(rows):
        rows[last_index(rows, "eval.look")]["payload"]["statistic"]["delta"] = 0.4
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and rules(report) == {"look-derivation"}, report["problems"]
    assert "statistic differ" in report["problems"][0]["message"]


def test_a_forged_early_stop_fails_and_names_the_samples_after_it(finished, cli, no_key):
    """Look 1 forged to ship (its samples say continue), the later looks dropped, the gate
    made the look's: look-derivation names the look, gate-derivation the samples after it."""
    def edit(rows):
        looks = [i for i, r in enumerate(rows) if r["type"] == "eval.look"]
        assert len(looks) >= 2, "the template's eval should take more than one look"
        first = rows[looks[0]]["payload"]
        first["decision"], first["criterion"] = "ship", "min_improvement"
        gate = rows[last_index(rows, "decision.gate")]["payload"]
        gate["decision"], gate["criterion"], gate["look"] = "ship", "min_improvement", 1
        return [r for i, r in enumerate(rows) if i not in looks[1:]]

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and {"look-derivation", "gate-derivation"} <= rules(report), report["problems"]
    messages = {p["rule"]: p["message"] for p in report["problems"]}
    assert "recomputed continue" in messages["look-derivation"]
    assert "eval samples after the stopping look 1" in messages["gate-derivation"]


def test_a_kill_between_rounds_resumes_at_its_round_paying_no_sample_twice(trained_sequential, evaluated_sequential,
                                                                           tmp_path):
    db, plan = _copy(trained_sequential, tmp_path)
    cmd = [sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db), "--yes"]
    assert _run_until_event(cmd, db, "eval.look"), "the run ended before its first look"
    assert len(_events(db, "eval.look")) >= 1 and not _events(db, "decision.gate")
    res = run_dpo_tui(*cmd[3:], timeout=240)
    assert res.returncode == 0, res.stderr
    fields = ("look", "tasks_seen", "samples_seen", "statistic", "decision", "round_tasks", "one_sided_alpha")
    again = [{k: e.payload[k] for k in fields} for e in _events(db, "eval.look")]
    once = [{k: e.payload[k] for k in fields} for e in _events(evaluated_sequential, "eval.look")]
    assert again == once  # the same looks as the uninterrupted run, none logged twice
    finished = Counter(e.payload["rollout_id"] for e in _events(db, "rollout.finished")
                       if e.payload["rollout_id"].startswith("eval/"))
    assert finished and max(finished.values()) == 1  # no sample paid twice
    keys = Counter(e.payload["idempotency_key"] for e in _events(db, "call.completed"))
    assert max(keys.values()) == 1
    with open_store(db, readonly=True) as store:
        from dpo_tui.events.audit import audit

        report = audit(store)
    assert report.ok, report.problems


def test_a_design_changed_after_training_is_refused_before_any_eval_sample(trained_sequential, tmp_path):
    db, plan = _copy(trained_sequential, tmp_path)
    plan.write_text(PLAN.replace('design = "sequential"', 'design = "fixed"'))
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", timeout=120)
    assert res.returncode == EXIT_STAGE_FAILED, res.stderr
    assert "eval.design / eval.looks changed after training" in res.stderr
    assert not [e for e in _events(db, "rollout.started") if e.payload["stage"] == "eval"]
    assert not _events(db, "decision.gate")


def test_the_report_and_the_eval_pane_label_the_looks(finished, cli):
    code, out, _ = cli("report", "--db", finished)
    assert code == 0
    assert "Sequential eval: the gate's looks" in out and "boundary (one-sided alpha)" in out
    looks = [e.payload for e in _events(finished, "eval.look")]
    assert f"| {len(looks)} | {looks[-1]['tasks_seen']}/{looks[-1]['tasks_planned']} |" in out
    assert f"{looks[-1]['samples_seen']}/{looks[-1]['samples_planned']} samples run" in out

    import asyncio

    from tests.tui.conftest import make_app, settle
    from tests.tui.screen_text import screen_text

    async def pane() -> str:
        app = make_app(finished, readonly=True)
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(pilot)
            await pilot.press("6")
            await pilot.pause()
            return screen_text(app)

    text = asyncio.run(pane())
    assert "sequential eval:" in text and f"look {len(looks)}/{looks[-1]['looks']}" in text


def test_the_summary_counts_what_an_early_stop_skipped_and_saved():
    from dpo_tui.campaign.sequential_eval import summary, summary_text

    looks = [{"look": 1, "looks": 3, "samples_seen": 40, "samples_planned": 120, "decision": "continue"},
             {"look": 2, "looks": 3, "samples_seen": 80, "samples_planned": 120, "decision": "ship"}]
    s = summary(looks, endpoint_usd=3.0, endpoint_minutes=30.0)
    assert (s["stopped_at"], s["early"], s["samples_skipped"]) == (2, True, 40)
    assert s["saved_usd"] == pytest.approx(1.0) and s["saved_minutes"] == pytest.approx(10.0)
    text = summary_text(s, simulated=True)
    assert "stopped at look 2 of 3 (ship)" in text and "40 skipped" in text and "simulated" in text
    running = summary(looks[:1])
    assert running["samples_skipped"] == 0 and "1 of 3 looks so far" in summary_text(running, simulated=False)


def test_power_reports_both_designs_and_their_costs_for_a_sequential_plan(tmp_path):
    from dpo_tui.campaign.plan import load_plan
    from dpo_tui.campaign.power import plan_power, power_lines
    from dpo_tui.provider.prices import load_prices

    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    plan = load_plan(path)
    out = plan_power(plan, load_prices(), n_pool=134, n_heldout=0, trials=100)  # 40 test tasks: detectable
    q = out["suites"]["test"]["sequential"]
    assert (q["design"], q["looks"]) == ("sequential", 3)
    assert q["expected_cost_usd"] <= q["no_effect_cost_usd"] <= out["suites"]["test"]["planned_cost_usd"] + 1e-9
    text = "\n".join(power_lines(out, "p"))
    assert "sequential, 3 looks" in text and "with no effect" in text and "eval.design is sequential" in text
    small = "\n".join(power_lines(plan_power(plan, load_prices(), n_pool=18, n_heldout=0, trials=100), "p"))
    assert "nothing is detectable, so no look stops it early" in small


def test_every_suite_is_cut_into_the_primary_suites_rounds_fixed_by_the_ids_alone(tmp_path):
    from dpo_tui.campaign.plan import load_plan
    from dpo_tui.campaign.sequential_eval import eval_rounds, fractions, suite_ids

    path = tmp_path / "plan.toml"
    path.write_text(PLAN.replace('suites = ["test"]', 'suites = ["test", "heldout"]'))
    plan = load_plan(path)
    suites = suite_ids(plan, [f"t{i}" for i in range(7)], ["h1", "h2"])
    r = eval_rounds(plan, suites)
    assert len(r) == 3 and [len(x["test"]) for x in r] == [3, 2, 2] and [len(x["heldout"]) for x in r] == [1, 1, 0]
    assert sorted(t for x in r for t in x["test"]) == suites["test"]
    assert r == eval_rounds(plan, {k: list(reversed(v)) for k, v in suites.items()})  # the order is the seed's
    assert fractions(plan, r) == [3 / 7, 5 / 7, 1.0]
