"""Every operator action through the real App: the events it appends (actor
operator:<name>) and what the screen shows afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import ACTOR, events_of, make_app, open_launch, prepare_training, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def _count(db: Path) -> int:
    with Campaign.open(db, readonly=True) as c:
        return c.state.events


async def _goto_task(pilot, task_id: str) -> None:
    table = pilot.app.query_one("#split-table")
    row = table.get_row_index(task_id)
    table.move_cursor(row=row)
    await pilot.pause()


async def test_approve_split_asks_showing_what_freezes_then_freezes(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        assert "frozen" not in screen_text(app).split("\n", 3)[3]
        await pilot.press("A")
        await pilot.pause()
        modal = screen_text(app)
        assert "Approve the split?" in modal and "train tasks" in modal and "hash" in modal
        await pilot.press("y")
        await settle(pilot)
        text = screen_text(app)
    ev = events_of(split_db, "split.approved")
    assert len(ev) == 1 and ev[0].actor == ACTOR
    assert f"frozen {ev[0].payload['hash'][:12]}" in text
    assert "split:frozen" in text


async def test_declining_approval_appends_nothing(split_db):
    before = _count(split_db)
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "A")
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        assert "proposed, editable" in screen_text(app)
    assert _count(split_db) == before


async def test_move_a_task_to_the_other_side(split_db):
    with Campaign.open(split_db, readonly=True) as c:
        task = sorted(c.state.part("split").split.train)[0]
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await _goto_task(pilot, task)
        await pilot.press("m")
        await settle(pilot)
        row = next(line for line in screen_text(app).splitlines() if line.split()[:2] == task.split("/", 1)[::-1])
    ev = events_of(split_db, "split.task_moved")
    assert [(e.payload["task_id"], e.payload["to"], e.actor) for e in ev] == [(task, "test", ACTOR)]
    assert " test " in row


async def test_exclude_asks_for_a_reason_and_logs_it(split_db):
    with Campaign.open(split_db, readonly=True) as c:
        task = sorted(c.state.part("split").split.test)[0]
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await _goto_task(pilot, task)
        await pilot.press("x")
        await pilot.pause()
        assert f"Exclude {task}" in screen_text(app)
        await pilot.press("enter")  # empty: refused in the modal
        await pilot.pause()
        assert "a reason is required" in screen_text(app)
        await pilot.press(*"shares inputs with a train task")
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
    ev = events_of(split_db, "split.task_excluded")
    assert [(e.payload["task_id"], e.payload["reason"], e.actor) for e in ev] == [
        (task, "shares inputs with a train task", ACTOR)]
    row = next(line for line in text.splitlines() if line.split()[:2] == task.split("/", 1)[::-1])
    assert "excluded" in row and "1 excluded" in text


async def test_readonly_disables_every_action(split_db):
    before = _count(split_db)
    app = make_app(split_db, readonly=True)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "m", "x", "A")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]  # no modal opened
        await pilot.press("3", "r", "4", "a", "e", "1", "ctrl+r")
        await settle(pilot)
        assert "[read-only]" in screen_text(app)
        await pilot.click("#--content-tab-log")  # stages by mouse too
        await settle(pilot)
        assert app.active_stage == "log" and "chain:" in screen_text(app)
    assert _count(split_db) == before


async def test_pair_accept_and_reject_rebuild_the_funnel(demo_db):
    with Campaign.open(demo_db, readonly=True) as c:
        built = c.state.part("pairs").built
    dropped = next(p for p in built["pairs"] if p["dropped_by"] == "low_margin")
    kept = next(p for p in built["pairs"] if p["dropped_by"] is None)
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("4")
        table = app.query_one("#pairs-table")
        for pair, key in ((dropped, "a"), (kept, "x")):
            table.move_cursor(row=table.get_row_index(pair["pair_id"]))
            await pilot.pause()
            await pilot.press(key)
            await settle(pilot)
        text = screen_text(app)
        # the operator column of both rows (one of them may be scrolled out of the 80x24 view)
        operator = {pid: str(table.get_cell(pid, "decision")) for pid in (dropped["pair_id"], kept["pair_id"])}
    decided = events_of(demo_db, "pairs.decided")
    assert [(e.payload["pair_id"], e.payload["decision"], e.actor) for e in decided] == [
        (dropped["pair_id"], "accept", ACTOR), (kept["pair_id"], "reject", ACTOR)]
    rebuilt = events_of(demo_db, "pairs.built")[-1]
    assert rebuilt.actor == ACTOR
    states = {p["pair_id"]: p["dropped_by"] for p in rebuilt.payload["pairs"]}
    assert states[dropped["pair_id"]] is None and states[kept["pair_id"]] == "manual"
    assert f"manual {rebuilt.payload['funnel']['manual']}" in text
    assert operator == {dropped["pair_id"]: "accept", kept["pair_id"]: "reject"}
    assert "reject" in text  # the row under the cursor, the last one decided, is in view


async def test_export_asks_then_writes_and_logs(demo_db):
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("4", "e")
        await pilot.pause()
        assert "Export the pairs?" in screen_text(app)
        body = " ".join(app.screen.body.split())
        assert f"into {demo_db.parent.resolve()}" in body and "Warning" not in body  # every rollout finished
        await pilot.press("y")
        await settle(pilot)
        text = screen_text(app)
        said = [n.text for n in app.notices if "pairs exported" in n.text]
    ex = events_of(demo_db, "pairs.exported")[-1]
    assert said and all(ex.payload[f"{k}_path"] in said[-1] for k in ("together", "trl", "manifest"))
    assert f"sha256 {ex.payload['together_sha256'][:12]}" in said[-1]
    assert ex.actor == ACTOR and Path(ex.payload["together_path"]).exists()
    assert Path(ex.payload["together_path"]).parent == demo_db.parent
    assert f"exported {ex.payload['pairs']} ({ex.payload['together_sha256'][:12]})" in text
    # the demo's plan took the export decision already (actor plan); it is recorded once
    assert [e.payload["decision"] for e in events_of(demo_db, "decision.recorded")].count("export_pairs") == 1


async def test_budget_inputs_validate_and_the_estimate_updates_then_records(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        before = screen_text(app)
        field = app.query_one("#in-rollouts_per_task")
        # ten times the rollouts: the dedicated generator's started minutes move too (twice would fit its one minute)
        field.value = "40"
        await settle(pilot, 0.1)
        doubled = screen_text(app)
        field.value = "0"
        await settle(pilot, 0.1)
        assert "rollouts.rollouts_per_task" in screen_text(app)  # the plan's validation names the field
        field.value = "40"
        await pilot.press("ctrl+r")
        await settle(pilot)
    row0 = next(line for line in before.splitlines() if line.strip().startswith("rollouts"))
    row1 = next(line for line in doubled.splitlines() if line.strip().startswith("rollouts"))
    assert row0.split()[-1] != row1.split()[-1]  # '$ edited' moved with the input
    est = events_of(split_db, "budget.estimated")
    assert est[-1].actor == ACTOR and est[-1].payload["inputs"]["rollouts_per_task"] == 40


async def test_pilot_asks_with_its_cost_then_runs_and_pause_resume_are_logged(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("3", "r")
        await pilot.pause()
        assert "approve (freeze) the split first" in screen_text(app)
        app.session.approve_split()  # (its own test drives the modal)
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        modal = screen_text(app)
        assert "Run the pilot?" in modal and "12 rollouts, estimated $" in modal and "cap" in modal
        power = ("Power (under the prior, no pilot yet): this eval test (5 tasks x 3 seeds) cannot detect any effect "
                 "(5 tasks: the exact test cannot reject at alpha 0.05)")
        assert power in app.screen.body and "Power (under the prior" in modal  # told before paying
        await pilot.press("y")
        await wait_for(pilot, lambda: app.engine is not None, timeout=60)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.engine is None or app.engine.progress.status == "paused", timeout=10)
        await wait_for(pilot, lambda: "pilot: paused" in screen_text(app), timeout=10)
        assert app.engine is not None and app.engine.progress.status == "paused"
        await pilot.press("plus")
        await pilot.pause()
        assert app.engine.concurrency == 9
        await pilot.press("space")
        await wait_for(pilot, lambda: app.working is None, timeout=120)
        await settle(pilot)
        text = screen_text(app)
        said = [n.text for n in app.notices]
        await pilot.press("r")
        await pilot.pause()
        second = screen_text(app)
        second_body = app.screen.body
        await pilot.press("n")
    decisions = [(e.payload["decision"], e.actor) for e in events_of(split_db, "decision.recorded")]
    assert ("run_pilot", ACTOR) in decisions and ("approve_rollouts", ACTOR) not in decisions
    notes = [e.payload["text"] for e in events_of(split_db, "note.added") if e.actor == ACTOR]
    assert any("paused" in n for n in notes) and any("resumed" in n for n in notes)
    assert any("concurrency set to 9" in n for n in notes)
    pilot_done = [e for e in events_of(split_db, "rollout.finished")]
    assert len(pilot_done) == 12  # 8 tasks once (the cost sample) and 4 of them twice (their spread)
    assert "rollouts 12/52" in text and "pilot: done" in text  # the plan's 13 tasks x 4
    assert any("waiting for your decision" in n for n in said), said  # the console's words, not the CLI's:
    assert not [n for n in said if any(w in n for w in ("--yes", "--until", "dpo-tui ", "decisions."))], said
    assert "Start the rollouts?" in second and "calibrated by the pilot" in second
    assert "Power (from the pilot's per-task pass rates): this eval test (5 tasks x 3 seeds) cannot detect" in second_body


async def test_command_palette_offers_the_actions(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"approve the split")
        await pilot.pause(0.5)
        assert "Approve (freeze) the split" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot, 0.2)
        assert "Approve the split?" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
    assert [e.actor for e in events_of(split_db, "split.approved")] == [ACTOR]


async def test_every_binding_has_an_id_and_a_description(split_db):
    from dpo_tui.tui.app import DpoApp
    from dpo_tui.tui.screens.modals import (CapScreen, ConfirmScreen, NewRunScreen, OverrideScreen, ReasonScreen,
                                            TextScreen)

    app = make_app(split_db, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        panes = list(app.query("StagePane"))
        assert len(panes) == 7
        classes = [DpoApp, ConfirmScreen, ReasonScreen, CapScreen, OverrideScreen, NewRunScreen, TextScreen,
                   *{type(p) for p in panes}]
        bindings = [b for cls in classes for b in cls.BINDINGS]
        assert len(bindings) >= 25
        assert all(b.id and b.description for b in bindings), [b for b in bindings if not (b.id and b.description)]
        ids = [b.id for b in bindings]
        assert len(ids) == len(set(ids))
        await pilot.press("q")  # nothing running: quits at once
        await pilot.pause()
    assert app.return_code == 0


async def test_training_prepares_free_then_launches_after_a_confirmation_with_its_price(demo_db):
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot, 0.1)
        assert "Train: not run yet" in screen_text(app)
        prepared = await prepare_training(pilot)  # upload and Together's price estimate: no charge, no question
        assert prepared.status == "waiting", prepared.message
        await settle(pilot)
        assert "price: estimated $" in screen_text(app)
        modal = await open_launch(pilot)
        assert "Launch training?" in modal and "Together's estimate $" in modal and "remains" in modal
        assert "Launch (y)" in modal and "No (n)" in modal  # the longer body still leaves the buttons on screen
        launch = app.screen.body  # what the launch commits to (issue 19, point 5)
        with Campaign.open(demo_db, readonly=True) as c:
            x = c.state.parts["pairs"].export
            up = next(u for u in c.state.parts["training"].files.values() if u["export_sha256"] == x["together_sha256"])
        plan = app.session.plan.plan
        assert f"pairs: {x['pairs']} against the plan's target of {plan.pairs.target_pairs}" in launch
        assert f"base model: {plan.models.policy_base}" in launch
        assert f"n_epochs={plan.training.n_epochs}" in launch and f"dpo_beta={plan.training.dpo_beta:g}" in launch
        assert f"learning_rate={plan.training.learning_rate:g}" in launch
        assert f"batch_size={plan.training.batch_size}" in launch
        assert f"{up['filename']} (file {up['file_id']}, sha256 {(up.get('sha256') or up['export_sha256'])[:16]})" \
            in launch
        assert "this eval test (5 tasks x 3 seeds) cannot detect any effect" in app.screen.body and "Power (" in modal
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None, timeout=180)
        assert app.last_result.status in ("waiting", "done"), app.last_result.message
        await settle(pilot)
        text = screen_text(app)
    launched = [e for e in events_of(demo_db, "decision.recorded") if e.payload["decision"] == "launch_training"]
    assert [e.actor for e in launched] == [ACTOR] and launched[0].payload["estimate_usd"] > 0
    with Campaign.open(demo_db, readonly=True) as c:
        t = c.state.to_json()["training"]
    assert t["status"] == "completed" and f"job {t['job_id']}" in text and "status completed" in text


async def test_pair_thresholds_preview_the_funnel_without_logging(demo_db):
    from dpo_tui.campaign.pairs import compute_pairs
    from dpo_tui.tui.session import Session

    before = _count(demo_db)
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        app.query_one("#th-margin").value = "0.5"
        await settle(pilot, 0.3)
        text = screen_text(app)
    s = Session(demo_db, readonly=True)
    try:
        from dataclasses import replace

        from dpo_tui.campaign.pairs import plan_filters
        filters = replace(plan_filters(s.plan.plan), min_margin=0.5)
        _p, result, _i, _pr = compute_pairs(s.campaign, s.plan.plan, s.plan.tasks, s.tokenizer(), filters=filters)
    finally:
        s.close()
    assert f"what if: → {result.funnel['manual']} kept" in text and "T applies" not in text  # read-only: no apply
    assert _count(demo_db) == before


def test_the_palette_names_real_actions_and_offers_every_pane_action():
    from dpo_tui.tui.app import STAGES, DpoApp
    from dpo_tui.tui.commands import ACTIONS

    names = {action.split("(")[0] for _title, action, _help in ACTIONS}
    assert all(hasattr(DpoApp, f"action_{n}") for n in names), [n for n in names if not hasattr(DpoApp, f"action_{n}")]
    pane_actions = {b.action.removeprefix("app.").split("(")[0] for _k, _l, cls in STAGES for b in cls.BINDINGS
                    if b.action.startswith("app.")}
    assert pane_actions <= names, pane_actions - names  # every key's action is in the palette too


async def test_build_and_export_on_unfinished_rollouts_warn_with_the_counts(split_db):
    """Issue 19, point 5: pairs built (or exported) before the paid rollouts finished say so,
    with finished/planned, in a confirmation; declining builds nothing, confirming builds."""
    from dpo_tui.campaign import outlook

    app = make_app(split_db)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        app.session.approve_split()  # frozen; no paid rollout has run
        planned = outlook.rollout_stage(app.session.campaign, app.session.plan.plan)["planned"]
        assert planned and planned > 0
        await pilot.press("4", "b")
        await wait_for(pilot, lambda: "Build pairs from unfinished rollouts?" in screen_text(app))
        body = " ".join(app.screen.body.split())
        assert f"0/{planned} rollouts finished" in body and f"uses 0 of the {planned} planned" in body
        await pilot.press("n")
        await settle(pilot, 0.2)
        assert events_of(split_db, "pairs.built") == []
        await pilot.press("b")
        await wait_for(pilot, lambda: "Build pairs from unfinished rollouts?" in screen_text(app))
        await pilot.press("y")
        await wait_for(pilot, lambda: any(n.text == "pairs built" for n in app.notices))
        await pilot.press("e")  # the export says the same
        await wait_for(pilot, lambda: "Export the pairs?" in screen_text(app))
        body = " ".join(app.screen.body.split())
        assert body.startswith(f"Warning: the rollout stage is unfinished: 0/{planned} rollouts finished")
        await pilot.press("n")
        await settle(pilot, 0.2)
    assert len(events_of(split_db, "pairs.built")) == 1 and events_of(split_db, "pairs.exported") == []
    from tests.conftest import run_dpo_tui

    res = run_dpo_tui("pairs", "build", "--db", split_db)  # the CLI's twin says the same, on stderr
    assert res.returncode == 0, res.stderr
    assert f"warning: the rollout stage is unfinished: 0/{planned} rollouts finished" in res.stderr
