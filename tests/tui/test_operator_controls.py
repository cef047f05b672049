"""The console's controls beyond the stages' main path: the budget cap, unfreezing the split,
per-task rollout progress, cancelling the training job, stopping an endpoint by hand,
quitting while work runs, and what --readonly offers. Each through the real App (Pilot),
asserting on the events appended (actor operator:<name>) and on the screen."""

from __future__ import annotations

import asyncio

import pytest

from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from tests.tui.conftest import ACTOR, events_of, make_app, open_launch, prepare_training, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def _type(pilot, text: str) -> None:
    """Type into the dialog's input once it has the focus, and return once it holds `text`."""
    from textual.widgets import Input

    # not the cap dialog's amount: its enter moves the focus on to the reason
    await wait_for(pilot, lambda: isinstance(pilot.app.focused, Input) and pilot.app.focused.id != "cap-amount")
    field = pilot.app.focused
    await pilot.press(*("space" if ch == " " else ch for ch in text))
    await wait_for(pilot, lambda: field.value.endswith(text))


async def _start_pilot(pilot, app) -> None:
    """Freeze the split, then start the pilot through its confirmation; returns once it runs."""
    await settle(pilot)
    app.session.approve_split()
    await settle(pilot)
    await pilot.press("3", "r")
    await pilot.pause()
    await pilot.press("y")
    await wait_for(pilot, lambda: app.engine is not None, timeout=60)


async def test_cap_is_set_with_a_reason_and_validated_in_the_modal(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        modal = screen_text(app)
        assert "Set the budget cap" in modal and "Cap now $5.00" in modal and "Spent $" in modal
        amount = app.screen.query_one("#cap-amount")
        amount.value = "0"
        await pilot.press("enter")  # on to the reason
        await _type(pilot, "finance")
        await pilot.press("enter")  # submitted: the amount is refused, the modal stays
        await pilot.pause()
        assert "positive number" in screen_text(app) and app.screen.query_one("#cap-amount").has_focus
        amount.value = "2.5"
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
    caps = [(e.payload["cap_usd"], e.payload["reason"], e.actor) for e in events_of(split_db, "budget.cap_set")]
    assert caps[-1] == (2.5, "finance", ACTOR) and len(caps) == 2  # the plan's, then the operator's
    assert "/$2.50 cap" in text.splitlines()[0] and f"cap $2.50 ({ACTOR})" in text


async def test_unfreeze_asks_why_showing_what_was_built_then_the_split_is_editable(demo_db):
    with Campaign.open(demo_db, readonly=True) as c:
        finished = c.state.part("rollouts").finished["rollouts"]
        old_hash = c.state.part("split").frozen_hash
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "U")
        await pilot.pause()
        modal = screen_text(app)
        assert "Unfreeze the split?" in modal and f"rollouts {finished} paid" in modal and old_hash[:12] in modal
        await _type(pilot, "a test task leaks into train")
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
    ev = events_of(demo_db, "split.unfrozen")
    assert [(e.payload["previous_hash"], e.payload["reason"], e.actor) for e in ev] == [
        (old_hash, "a test task leaks into train", ACTOR)]
    assert "proposed, editable" in text and "split:prop" in text


async def test_rollouts_per_task_view_counts_each_task(demo_db):
    with Campaign.open(demo_db, readonly=True) as c:
        by_task = {task: (p.started, p.finished, p.passed) for (stage, task), p in
                   c.state.part("rollouts").by_task.items() if stage == "rollouts"}
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3", "v")
        await settle(pilot, 0.2)
        text = screen_text(app)
        await pilot.press("v")
        await settle(pilot, 0.2)
        back = screen_text(app)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.lstrip().startswith("fixtures/")}
    assert len(rows) >= 10  # every row that fits at 80x24
    for name, cells in rows.items():
        task = next(t for t in by_task if t.startswith(name.rstrip("…")))
        started, finished, passed = by_task[task]
        assert cells[1:4] == ["rollouts", f"{finished}/{started}", str(passed)], cells
    assert "passed" in text and "/r0" not in text and "/r0" in back  # v switches back to the rollouts


async def test_readonly_offers_no_action_that_writes(demo_db):
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot, 0.2)
        footer = screen_text(app).splitlines()[-1]
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await _type(pilot, "split")
        await pilot.pause(0.5)
        palette = screen_text(app)
    assert "Quit" in footer and not any(w in footer for w in ("Move", "Exclude", "Approve", "Unfreeze"))
    assert "Go to Split" in palette and "Approve (freeze) the split" not in palette
    writer = make_app(demo_db)
    async with writer.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot, 0.2)
        assert "Unfreeze" in screen_text(writer).splitlines()[-1]


async def test_cancel_the_training_job_with_a_reason(demo_db, monkeypatch):
    from dpo_tui.campaign.sim_env import SIM_JOB_STAGE_SECONDS

    # every status of the simulated job lasts 2 minutes, so the job is still live when the
    # reason has been typed however loaded the machine is (by default it ends in ~6 s)
    monkeypatch.setenv(SIM_JOB_STAGE_SECONDS, "120")
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("5", "c")
        await pilot.pause()
        assert "no DPO job has been launched" in screen_text(app)
        await prepare_training(pilot)
        assert "Launch training?" in await open_launch(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: (app.session.training_run() or {}).get("job_id") is not None, timeout=60)
        await pilot.press("c")
        await pilot.pause()
        assert "Cancel the training job?" in screen_text(app)
        await _type(pilot, "wrong beta")
        await pilot.press("enter")
        await wait_for(pilot, lambda: events_of(demo_db, "train.cancel_requested"), timeout=60)
        await wait_for(pilot, lambda: app.working is None, timeout=120)
        await settle(pilot)
        app.clear_notifications()  # the toasts cover the pane's right half
        await pilot.pause()
        text = screen_text(app)
        result = app.last_result
    asked = events_of(demo_db, "train.cancel_requested")
    assert [(e.payload["reason"], e.actor) for e in asked] == [("wrong beta", ACTOR)]
    finished = events_of(demo_db, "train.job_finished")
    assert [e.payload["status"] for e in finished] == ["cancelled"]
    assert result.status == "failed" and "cancelled" in result.message
    assert "status cancelled" in text and "cancel_requested" in text and "job_stopped" in text


async def test_stop_an_endpoint_by_hand(demo_db):
    from dpo_tui.campaign import serving

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        s = app.session
        before = len(events_of(demo_db, "endpoint.stopped"))  # the demo's own (its generator's)
        prices = s.plan.prices
        model = s.plan.plan.models.policy_base
        instance = prices.dedicated[model]

        def start_one():  # as the eval starts its base endpoint, through the same service
            m = s.mgmt()
            ref, config = serving.base_profile(m, model)
            return serving.start(s.campaign, m, run_id="run-1", role="base", model_ref=ref, config=config,
                                 price_cents_per_hour=prices.instances[instance].price_cents_per_hour,
                                 instance=instance, actor="system", poll_s=0.1)
        ep = await asyncio.to_thread(start_one)
        await pilot.press("5")
        await settle(pilot)
        assert ep["endpoint_id"] in screen_text(app) and "1 running" in screen_text(app)
        await pilot.press("s")
        await pilot.pause()
        modal = screen_text(app)
        assert "Stop the endpoint?" in modal and "/min" in modal
        await pilot.press("y")
        await wait_for(pilot, lambda: not s.running_endpoints(), timeout=60)
        await settle(pilot)
        text = screen_text(app)
    stopped = events_of(demo_db, "endpoint.stopped")[before:]
    assert [(e.payload["endpoint_id"], e.actor) for e in stopped] == [(ep["endpoint_id"], ACTOR)]
    assert "0 running" in text and "stopped" in text


async def test_quit_while_rollouts_run_stops_them_then_exits(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _start_pilot(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert "Quit while work is running?" in screen_text(app)
        await pilot.press("y")
        await pilot.pause(0.2)
        assert app.quitting and "stopping pilot" in screen_text(app)  # it waits for the stage to stop
        await wait_for(pilot, lambda: not app.is_running, timeout=120)
    assert app.last_result.status == "stopped", app.last_result.message
    with open_store(split_db, readonly=True) as store:
        assert audit(store).ok
        started = [e for e in store.read() if e.type == "call.started"]
        ended = {e.payload["idempotency_key"] for e in store.read() if e.type in ("call.completed", "call.failed")}
    assert all(e.payload["idempotency_key"] in ended for e in started)  # nothing left in flight


@pytest.fixture
def planned_db(tmp_path):
    """A campaign with its plan and first estimate logged, and no split yet."""
    from dpo_tui.campaign.budget import plan_estimate, record_estimate
    from dpo_tui.campaign.plan import demo_plan_path, load_plan
    from dpo_tui.campaign.runner import record_plan
    from dpo_tui.campaign.suites import load_plan_tasks
    from dpo_tui.provider.prices import load_prices

    prices = load_prices()
    plan = load_plan(demo_plan_path(), prices=prices)
    tasks = load_plan_tasks(plan)
    db = tmp_path / "planned.db"
    with Campaign.create(db, name="planned", actor="plan") as c:
        record_plan(c, plan, demo_plan_path())
        inp, est = plan_estimate(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout))
        record_estimate(c, inp, est, prices=prices, train_tasks=inp.tasks, eval_tasks=inp.eval_tasks, actor="plan")
    return db


async def test_propose_the_split_then_verify_the_chain(planned_db):
    app = make_app(planned_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot, 0.1)
        assert "not proposed yet" in screen_text(app)
        await pilot.press("P")
        await settle(pilot)
        split_text = screen_text(app)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("v")
        await wait_for(pilot, lambda: "chain: ok" in screen_text(app), timeout=30)
        log_text = screen_text(app)
    proposed = events_of(planned_db, "split.proposed")
    assert [e.actor for e in proposed] == [ACTOR]
    train, test = proposed[0].payload["train"], proposed[0].payload["test"]
    assert f"Split: {len(train)} train, {len(test)} test" in split_text and "proposed, editable" in split_text
    assert f"chain: ok - {len(events_of(planned_db))} events verified" in log_text


async def test_build_pairs_again_as_the_operator(demo_db):
    before = len(events_of(demo_db, "pairs.built"))
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("4", "b")
        await settle(pilot)
        text = screen_text(app)
    built = events_of(demo_db, "pairs.built")
    assert len(built) == before + 1 and built[-1].actor == ACTOR
    assert f"built {built[-1].payload['funnel']['built']}" in text


async def test_cancel_rollouts_stops_the_stage_and_the_next_start_resumes(split_db):
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _start_pilot(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        assert "Cancel the rollouts?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None, timeout=120)
        stopped = app.last_result
        cut = len(events_of(split_db, "rollout.finished"))
        await pilot.press("r")  # the pilot again: it asks again, and runs only what is left
        await pilot.pause()
        assert "Run the pilot?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None and app.last_result is not stopped, timeout=120)
        resumed = app.last_result
    assert stopped.status == "stopped" and "cancelled by the operator" in stopped.message, stopped.message
    assert cut < 12 and resumed.status == "waiting", resumed.message  # the pilot done, waiting for the rest's go
    finished = [e.payload["rollout_id"] for e in events_of(split_db, "rollout.finished")]
    # none run twice: the demo's pilot is 8 rollouts, one per task, plus the second of 4 tasks
    assert len(finished) == len(set(finished)) == 8 + 4
    notes = [e.payload["text"] for e in events_of(split_db, "note.added") if e.actor == ACTOR]
    assert any("cancelled by the operator" in n for n in notes)
    assert [d.payload["decision"] for d in events_of(split_db, "decision.recorded")].count("run_pilot") == 1


async def test_a_key_typed_into_a_reason_never_reaches_the_log(split_db, monkeypatch):
    key = "tgp_v1_" + "k3y" * 8
    monkeypatch.setenv("TOGETHER_API_KEY", key)
    with Campaign.open(split_db, readonly=True) as c:
        task = sorted(c.state.part("split").split.test)[0]
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        table = app.query_one("#split-table")
        table.move_cursor(row=table.get_row_index(task))
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        app.screen.query_one("#reason").value = f"flaky; key {key} pasted by mistake"
        await pilot.press("enter")
        await settle(pilot)
    ev = events_of(split_db, "split.task_excluded")
    assert [e.payload["reason"] for e in ev] == ["flaky; key [REDACTED] pasted by mistake"]
    assert key.encode() not in b"".join(p.read_bytes() for p in split_db.parent.glob("c.db*") if p.is_file())


async def test_a_new_training_run_with_its_own_hyperparameters(trained_template, tmp_path):
    from tests.tui.conftest import copy_with_sim

    db = copy_with_sim(trained_template, tmp_path)
    app = make_app(db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        assert app.session.run_id == "run-1"  # the newest run in the log
        await pilot.press("5", "n")
        await pilot.pause()
        assert "A new training run" in screen_text(app) and app.screen.query_one("#newrun-id").value == "run-2"
        app.screen.query_one("#newrun-dpo_beta").value = "0"
        await pilot.press("enter")
        await pilot.pause()
        assert "training.dpo_beta" in screen_text(app)  # the plan's own rule, the field named
        app.screen.query_one("#newrun-id").value = "run-1"
        app.screen.query_one("#newrun-dpo_beta").value = "0.3"
        await pilot.press("enter")
        await pilot.pause()
        assert "run id 'run-1' is taken" in screen_text(app)
        app.screen.query_one("#newrun-id").value = "beta-03"
        await pilot.press("enter")
        await settle(pilot, 0.1)
        assert app.session.run_id == "beta-03" and app.session.train_overrides == {"dpo_beta": 0.3}
        assert "Train beta-03: not run yet" in screen_text(app)  # not run-1's job any more
        prepared = await prepare_training(pilot)  # the upload is there already; the price is this run's
        assert prepared.status == "waiting" and "launch DPO training beta-03" in prepared.message
        modal = await open_launch(pilot)
        assert "Launch DPO training beta-03 (dpo_beta=0.3)" in modal
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None and app.last_result.status != "waiting", timeout=180)
        await settle(pilot)
        app.clear_notifications()
        await pilot.pause()
        text = screen_text(app)
    priced = [e.payload for e in events_of(db, "train.price_estimated") if e.payload["run_id"] == "beta-03"]
    assert priced and priced[-1]["hyperparameters"]["dpo_beta"] == 0.3
    requested = [e.payload for e in events_of(db, "train.job_requested") if e.payload["run_id"] == "beta-03"]
    assert [r["hyperparameters"]["dpo_beta"] for r in requested] == [0.3]
    launched = [(e.payload["decision"], e.actor) for e in events_of(db, "decision.recorded")]
    assert ("launch_training:beta-03", ACTOR) in launched
    with Campaign.open(db, readonly=True) as c:
        run = c.state.part("training").runs["beta-03"]
    assert run.status == "completed" and f"Train beta-03: job {run.job_id}" in text
    reopened = make_app(db)  # a new console carries on with that run and its hyperparameters
    try:
        assert (reopened.session.run_id, reopened.session.train_overrides) == ("beta-03", {"dpo_beta": 0.3})
    finally:
        reopened.session.close()


async def test_the_console_resumes_a_label_swap_control_run_on_its_own_export(trained_template, tmp_path):
    from dpo_tui.campaign.plan import demo_plan_path
    from dpo_tui.campaign.runner import run_campaign
    from dpo_tui.tui.session import Session
    from tests.tui.conftest import copy_with_sim

    db = copy_with_sim(trained_template, tmp_path)
    before = Session(db, actor=ACTOR)
    try:
        assert (before.run_id, before.label_swap) == ("run-1", False)
    finally:
        before.close()
    done = await asyncio.to_thread(run_campaign, demo_plan_path(), db, until="train", yes=True, run_id="control",
                                   label_swap=True)
    assert done.exit_code == 0, done.message
    after = Session(db, actor=ACTOR)
    try:
        assert (after.run_id, after.label_swap) == ("control", True)  # t and e go on with the swapped pairs
    finally:
        after.close()


async def test_a_campaign_without_a_plan_explains_instead_of_acting(tmp_path):
    db = tmp_path / "bare.db"
    Campaign.create(db, name="bare", actor="operator:tester").close()
    app = make_app(db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        # (c on Budget opens the cap dialog: a cap needs no plan; see test_stale_export.py)
        for keys in (("2", "U"), ("5", "n"), ("5", "c"), ("5", "s"), ("6", "o")):
            await pilot.press(*keys)
            await settle(pilot, 0.1)
            assert app.screen is app.screen_stack[0], keys  # no dialog for what cannot be done
        assert app.is_running
    assert [e.type for e in events_of(db)] == ["campaign.created"]


async def test_an_operators_cap_set_before_the_pilot_is_not_replaced_by_the_plans(planned_db):
    """The campaign has a plan but no cap logged yet: the operator's cap must survive the
    stages the pilot runs first (budget), where the plan's cap used to be re-applied."""
    app = make_app(planned_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        # the pilot fits (its dedicated generator runs while its next minute fits: 2 x $0.183)
        app.screen.query_one("#cap-amount").value = "0.38"
        await pilot.press("enter")
        await _type(pilot, "a tiny pilot budget")
        await pilot.press("enter")
        await wait_for(pilot, lambda: events_of(planned_db, "budget.cap_set"), timeout=30)
        await wait_for(pilot, lambda: "/$0.38 cap" in screen_text(app), timeout=30)
        await pilot.press("2")
        await settle(pilot, 0.1)
        await pilot.press("P")
        await wait_for(pilot, lambda: events_of(planned_db, "split.proposed"), timeout=30)
        await _start_pilot(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.working is None, timeout=120)
    caps = [(e.payload["cap_usd"], e.actor) for e in events_of(planned_db, "budget.cap_set")]
    assert caps == [(0.38, ACTOR)]
    with Campaign.open(planned_db, readonly=True) as c:
        assert c.state.part("budget").cap_set_by == ACTOR and c.state.parts["budget_guard"].cap_usd == 0.38


async def test_a_stage_that_does_not_fit_the_cap_asks_for_a_higher_cap_instead_of_starting(trained_template,
                                                                                           tmp_path):
    from dpo_tui.provider.provider import set_cap
    from tests.tui.conftest import copy_with_sim

    db = copy_with_sim(trained_template, tmp_path)
    with Campaign.open(db) as c:
        set_cap(c, round(c.state.part("spend").total_usd + 0.01, 4), reason="almost spent", actor=ACTOR)
    app = make_app(db)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("6", "e")
        await wait_for(pilot, lambda: "it would be refused" in screen_text(app), timeout=30)
        assert "Set the budget cap" in screen_text(app) and "The eval's endpoint minutes" in screen_text(app)
        app.screen.query_one("#cap-amount").value = "5"
        await pilot.press("enter")
        await _type(pilot, "the eval is worth it")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(events_of(db, "budget.cap_set")) == 3, timeout=30)
        await pilot.press("e")
        await wait_for(pilot, lambda: "Run the eval?" in screen_text(app), timeout=30)
        await pilot.press("n")
        await settle(pilot)
    # no eval endpoint (the rollouts' dedicated generator ran before training)
    assert [e for e in events_of(db, "endpoint.started") if e.payload["role"] != "generator"] == []
    assert events_of(db, "budget.cap_set")[-1].payload["cap_usd"] == 5.0


async def test_an_exit_other_than_q_while_the_pilot_is_paused_stops_it_and_its_worker_ends(split_db):
    """ctrl+q, a hang-up or a crash of the screen exits without the quit dialog: the stage must
    stop as q's does (calls in flight finish, the rest resumes next time), not wait paused for
    a resume nobody can press, holding the process open (asyncio joins the worker's thread)."""
    app = make_app(split_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _start_pilot(pilot, app)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.engine is not None and app.engine.progress.status == "paused", timeout=60)
        assert not app.stages_idle.is_set()
        app.exit()  # not q: no dialog, no quitting flag
    # the worker thread ends by itself (bounded: a paused engine would wait forever)
    assert await asyncio.to_thread(app.stages_idle.wait, 120), "the paused stage still waits after the exit"
    with open_store(split_db, readonly=True) as store:
        assert audit(store).ok
        events = list(store.read())
    started = [e for e in events if e.type == "call.started"]
    ended = {e.payload["idempotency_key"] for e in events if e.type in ("call.completed", "call.failed")}
    assert started and all(e.payload["idempotency_key"] in ended for e in started)  # nothing left in flight
    stopped = {e.payload["endpoint_id"] for e in events if e.type == "endpoint.stopped"}
    assert all(e.payload["endpoint_id"] in stopped for e in events if e.type == "endpoint.started")
