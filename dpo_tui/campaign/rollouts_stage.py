"""The rollouts stage: the warm-up, the pilot and its calibration, the approved rest, on the
generator as it is served (serverless, or a dedicated endpoint of its own); and `run_specs`,
the engine run every stage with rollouts (the eval's too) goes through."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dpo_tui.campaign import preflight
from dpo_tui.campaign import allocation, generator, warmup
from dpo_tui.campaign.budget import budget_inputs, generator_hardware, inputs_json, pilot_outcomes
from dpo_tui.campaign.cap import hold_stage
from dpo_tui.campaign.engine import RolloutEngine, RolloutSpec
from dpo_tui.campaign.pilot import pilot_plan, rollouts_usd
from dpo_tui.campaign.state.allocation import ALLOCATION, finished_paid, planned_rollouts
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.domain.concurrency import ThroughputController
from dpo_tui.domain.costs import PilotRollout, calibrated_estimate, pair_yield, summarize_pilot
from dpo_tui.errors import InputError, Stopped
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent
from dpo_tui.tasks.sandbox import Limits

if TYPE_CHECKING:
    from dpo_tui.campaign.runner import Ctx


def rollout_specs(ctx: Ctx) -> list[RolloutSpec]:
    """Every paid rollout of a uniform allocation, round-robin over the train tasks in a seeded
    order (the pilot is chosen from these by `pilot_specs`). Seeds are distinct and fixed by the
    plan: rollout k of a task has the same id and seed under either allocation."""
    order = allocation.train_order(ctx.plan, ctx.campaign.state.part(SPLIT).split.train)
    return [_spec(ctx, order, t, k) for k in range(ctx.plan.rollouts.rollouts_per_task) for t in order]


def _spec(ctx: Ctx, order: list[str], task_id: str, k: int) -> RolloutSpec:
    r = ctx.plan.rollouts
    return RolloutSpec(allocation.rollout_id(task_id, k), ctx.tasks.pool[task_id], "rollouts",
                       ctx.plan.models.generator, allocation.rollout_seed(ctx.plan, order, task_id, k), r.max_iters,
                       r.reflections, r.temperature, r.max_tokens)


def _program(ctx: Ctx) -> Callable[[str], str]:
    by_id = ctx.campaign.state.part(ROLLOUTS).by_id
    return lambda rid: ctx.campaign.store.event_at(by_id[rid].finished["seq"]).payload["final_program"]


async def _yield_rounds(ctx: Ctx, engines: list[RolloutEngine], with_model) -> None:  # noqa: ANN001
    """The yield allocation after the pilot: run what is allocated and unfinished (a resume
    reruns nothing that finished), then decide the next round from every outcome so far and
    log it before its rollouts start, until the total is spent or every task is closed."""
    order = allocation.train_order(ctx.plan, ctx.campaign.state.part(SPLIT).split.train)
    while True:
        st = ctx.campaign.state
        a = st.part(ALLOCATION)
        todo = [_spec(ctx, order, t, k) for t, k in allocation.allocated_ids(st)]
        if _todo(ctx, todo):
            await run_specs(ctx, await with_model(todo), f"rollouts round {a.rounds}", engines=engines)
        round_no = a.rounds + 1
        decisions = allocation.round_decisions(st, ctx.plan, order, round_no, finished_paid(st), a, _program(ctx))
        if not decisions:
            break
        ctx.campaign.append_batch([NewEvent("rollouts.allocated", p, actor="system")
                                   for p in allocation.payloads(round_no, decisions)])
        given = sum(d.rollouts for d in decisions)
        closed = [f"{d.task_id} {d.reason}" for d in decisions if d.reason in ("stopped", "ceiling")]
        why = ("each task its floor, the pilot's rollouts included" if round_no == 1 else
               f"expected +{sum(d.expected_gain for d in decisions if d.rollouts):.1f} kept pairs")
        ctx.progress.say(f"allocation: round {round_no} gives {given} rollouts to "
                         f"{sum(1 for d in decisions if d.rollouts)} tasks ({why})"
                         + (f"; closed: {', '.join(closed)}" if closed else ""))
    a = ctx.campaign.state.part(ALLOCATION)
    total = allocation.policy(ctx.plan, len(order)).total
    if a.total() < total:
        ctx.progress.say(f"allocation: done after {a.rounds} rounds with {a.total()} of {total} rollouts: every "
                         "task stopped or reached its ceiling (the rest is not spent)")


async def run_specs(ctx: Ctx, specs: list[RolloutSpec], label: str,
                    engines: list[RolloutEngine] | None = None, *, concurrency: int | None = None,
                    controller: ThroughputController | None = None) -> None:
    engine = RolloutEngine(ctx.campaign, ctx.provider, concurrency=concurrency or ctx.plan.rollouts.concurrency,
                           limits=Limits(test_cpu_seconds=ctx.plan.rollouts.test_cpu_seconds),
                           on_progress=lambda p: ctx.progress.rollouts(label, p, ctx.campaign), controller=controller)
    if engines is not None:
        engines.append(engine)
    if ctx.on_engine is not None:
        ctx.on_engine(engine)
    try:
        progress = await engine.run(specs)
    finally:
        engine.close()
        ctx.progress.done()
    if progress.status == "cancelled":
        raise Stopped(f"{label}: cancelled by the operator after {progress.finished} of {progress.total} rollouts; "
                      "the next start resumes the unfinished ones")
    if progress.errors:  # errored rollouts are no data: nothing downstream may use a stage with holes
        from dpo_tui.campaign.runner import StageFailed

        raise StageFailed(f"{label}: {progress.errors} of {progress.total} rollouts errored (a call gave up: "
                          f"{progress.failures[-1]}); run again to retry them")


def _rollout_seconds(campaign: Campaign, ids: set[str]) -> dict[str, float]:
    """Wall seconds from each rollout's start to its finish, from the events' timestamps (a
    rollout resumed after a crash counts the downtime too: the pilot takes the median)."""
    from datetime import datetime

    def parse_ts(ts: str) -> datetime:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")

    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for e in campaign.store.read(verify=False):
        rid = e.payload.get("rollout_id") if e.type in ("rollout.started", "rollout.finished") else None
        if rid not in ids:
            continue
        t = parse_ts(e.ts).timestamp()
        if e.type == "rollout.started":
            started[rid] = t
        elif rid in started:
            out[rid] = max(0.0, t - started[rid])
    return out


def _calibrate(ctx: Ctx, pilot_specs: list[RolloutSpec], cost_specs: list[RolloutSpec]) -> None:
    """The pilot's calibration: cost, calls and tokens from `cost_specs` (one rollout per task),
    the per-task pair yield from every pilot rollout."""
    if ctx.campaign.state.part(BUDGET).calibrated is not None or not pilot_specs:
        return
    by_id = ctx.campaign.state.part(ROLLOUTS).by_id
    seconds = _rollout_seconds(ctx.campaign, {s.rollout_id for s in cost_specs})
    pilot, cost_ids = [], []
    for spec in cost_specs:
        f = by_id[spec.rollout_id].finished if spec.rollout_id in by_id else None
        if f is None:  # errored or unfinished: no measurement
            continue
        cost_ids.append(spec.rollout_id)
        pilot.append(PilotRollout(calls=f["calls"], iterations=f["iterations"],
                                  reflections=max(0, f["calls"] - f["iterations"]), prompt_tokens=f["prompt_tokens"],
                                  completion_tokens=f["completion_tokens"], cost_usd=f["cost_usd"], passed=f["passed"],
                                  seconds=seconds.get(spec.rollout_id)))
    if not pilot:
        ctx.progress.say("pilot: no finished rollout to calibrate on; the estimate stays uncalibrated")
        return
    summary = summarize_pilot(pilot, seed=ctx.plan.rollouts.seed)
    split = ctx.campaign.state.part(SPLIT).split
    inp = budget_inputs(ctx.plan, ctx.prices, train_tasks=len(split.train), eval_tasks=_eval_tasks(ctx))
    provisioning = generator.measured_provisioning_minutes(ctx.campaign) if generator.dedicated(ctx.plan) else None
    if provisioning is not None:  # the dedicated generator's start to ready, as measured
        inp = dataclasses.replace(inp, generator_provisioning_minutes=provisioning)
    ids = [s.rollout_id for s in pilot_specs if by_id[s.rollout_id].finished is not None]
    inp = dataclasses.replace(inp, **warmup.eval_inputs(ctx.campaign, ctx, ids))
    per_task = pilot_outcomes(ctx.campaign, ids)
    if not any(len(o) >= 2 for o in per_task.values()):
        per_task = {}  # no task ran twice: its spread is unknown, the mean-based forecast stays
    yld = pair_yield(summary.pass_rate, train_tasks=len(split.train), rollouts_per_task=ctx.plan.rollouts.rollouts_per_task,
                     target_pairs=ctx.plan.pairs.target_pairs, per_task_cap=ctx.plan.pairs.per_task_cap,
                     pilot_tasks=per_task or None, min_margin=ctx.plan.pairs.min_margin, seed=ctx.plan.rollouts.seed)
    # training is priced on the pairs the pilot's yield expects, not the target
    inp = dataclasses.replace(inp, expected_pairs=yld.expected_pairs)
    est = calibrated_estimate(inp, summary)
    ctx.campaign.append("budget.pilot_calibrated", {
        "pilot": summary.__dict__ | {"notes": list(summary.notes)}, "inputs": inputs_json(inp),
        "rollout_ids": ids, "cost_rollout_ids": cost_ids,
        "estimate": est.to_json(), "pair_yield": yld.__dict__}, actor="system")
    first = ctx.campaign.state.part(BUDGET).first
    for note in est.notes:
        if note.startswith("dedicated generator"):
            ctx.progress.say(f"pilot: {note}")
    ctx.progress.say(f"pilot: {len(ids)} rollouts ({summary.rollouts} of them, one per task, price the calibration), "
                     f"pass rate {summary.pass_rate:.0%}; rollout stage "
                     f"estimate ${first['by_stage']['rollouts']['usd']:.3f} uncalibrated -> "
                     f"${est.by_stage['rollouts'].usd:.3f} calibrated "
                     f"(${est.by_stage['rollouts'].low_usd:.3f}-${est.by_stage['rollouts'].high_usd:.3f})")
    if yld.model == "per-task":
        ctx.progress.say(f"pair yield: ~{yld.expected_pairs:.1f} pairs expected from the pilot's per-task outcomes "
                         f"({yld.tasks_yielding} of {yld.pilot_tasks} pilot tasks disagree enough to pair; the mean "
                         f"pass rate alone would say ~{yld.mean_based_pairs:.1f})")
    if yld.warning:
        ctx.progress.say(f"pair yield: {yld.warning}")


def power_text(ctx: Ctx) -> str:
    """What the planned eval can detect, for a confirmation (campaign/power.py)."""
    from dpo_tui.campaign.power import campaign_power, power_summary

    return power_summary(campaign_power(ctx.campaign, ctx.plan, ctx.prices, n_pool=len(ctx.tasks.pool),
                                        n_heldout=len(ctx.tasks.heldout)))


def _eval_tasks(ctx: Ctx) -> int:
    split = ctx.campaign.state.part(SPLIT).split
    n = len(split.test) if "test" in ctx.plan.eval.suites else 0
    return n + (len(ctx.tasks.heldout) if "heldout" in ctx.plan.eval.suites else 0)


def unfinished_usd(ctx: Ctx, specs: list[RolloutSpec], estimate: dict[str, Any]) -> float:
    """The point estimate of the rollouts in `specs` not finished yet (the stage's estimate per
    rollout); on a dedicated generator, its provisioning minutes in full and the rest pro rata."""
    total = len(rollout_specs(ctx)) or 1
    by_id = ctx.campaign.state.part(ROLLOUTS).by_id
    todo = sum(1 for s in specs if by_id.get(s.rollout_id) is None or by_id[s.rollout_id].finished is None)
    if ctx.plan.rollouts.allocation == "yield" and len(specs) == total:  # the whole stage, ids as allocated
        st = ctx.campaign.state
        train = len(st.part(SPLIT).split.train)
        todo = max(0, planned_rollouts(st, "yield", train, ctx.plan.rollouts.rollouts_per_task) - len(finished_paid(st)))
    usd = estimate["by_stage"]["rollouts"]["usd"]
    running = any(e.get("role") == generator.ROLE for e in ctx.campaign.state.part("endpoint").running())
    if not generator.dedicated(ctx.plan) or not todo or running:
        return rollouts_usd(estimate, todo, total)
    fixed = min(usd, math.ceil(ctx.plan.rollouts.provisioning_minutes) * generator_hardware(ctx.plan, ctx.prices)[1]
                / 100 / 60)
    return fixed + (usd - fixed) * todo / total


def _todo(ctx: Ctx, specs: list[RolloutSpec]) -> bool:
    by_id = ctx.campaign.state.part(ROLLOUTS).by_id
    return any(by_id.get(s.rollout_id) is None or by_id[s.rollout_id].finished is None for s in specs)


def _stage_todo(ctx: Ctx, specs: list[RolloutSpec]) -> bool:
    """Whether the stage has rollouts left to run (under yield allocation: to allocate or run)."""
    if ctx.plan.rollouts.allocation != "yield":
        return _todo(ctx, specs)
    st = ctx.campaign.state
    planned = planned_rollouts(st, "yield", len(st.part(SPLIT).split.train), ctx.plan.rollouts.rollouts_per_task)
    return len(finished_paid(st)) < planned


def allocation_fixed_once_started(ctx: Ctx) -> None:
    """The allocation the paid rollouts started under is the stage's: a plan switched since
    (uniform <-> yield) would re-spend what was planned under the other rule mid-stage. Under
    yield, round 1 is logged before its rollouts; under uniform no round is ever logged."""
    st = ctx.campaign.state
    if st.part(ALLOCATION).rounds:
        under = "yield"
    elif st.part(ROLLOUTS).started.get("rollouts", 0):
        under = "uniform"
    else:
        return  # not started: the plan's allocation is the stage's
    now = ctx.plan.rollouts.allocation
    if now != under:
        raise InputError(f"rollouts.allocation changed from {under!r} to {now!r} after the paid rollouts started "
                         f"under {under!r}: the allocation is fixed once the stage starts; restore "
                         f'rollouts.allocation = "{under}" in the plan (or start a new campaign)')


async def stage_rollouts(ctx: Ctx) -> None:
    allocation_fixed_once_started(ctx)
    specs = rollout_specs(ctx)
    await preflight.before_stage(ctx, specs)
    left_running = any(e.get("role") == generator.ROLE for e in ctx.campaign.state.part("endpoint").running())
    todo = _stage_todo(ctx, specs)
    if todo or left_running:  # a finished stage makes no call (the eval stops what is left by name)
        await generator.stop_leftovers(ctx, keep_one=todo)
    engines: list[RolloutEngine] = []
    try:
        await _rollouts_served(ctx, specs, engines)
    finally:  # a generator kept for reuse never outlives the command, however the stage ended
        await generator.stop_running(ctx)
    r = ctx.campaign.state.part(ROLLOUTS).to_json()
    ctx.progress.say(f"rollouts: {r['finished']}/{r['total']} finished, {r['passed']} passed")


async def _rollouts_served(ctx: Ctx, specs: list[RolloutSpec], engines: list[RolloutEngine]) -> None:
    async with contextlib.AsyncExitStack() as serving_stack:
        served: list[generator.Served] = []

        async def with_model(todo: list[RolloutSpec]) -> list[RolloutSpec]:
            """The specs calling the generator as served: a dedicated one starts on first need."""
            if not served and _todo(ctx, todo):
                served.append(await serving_stack.enter_async_context(generator.generator_model(ctx, engines)))
            if not served:
                return todo
            served[0].check()
            return [dataclasses.replace(s, model=served[0].model) for s in todo]

        await _rollouts_phases(ctx, specs, engines, with_model)


async def _rollouts_phases(ctx: Ctx, specs: list[RolloutSpec], engines: list[RolloutEngine], with_model) -> None:  # noqa: ANN001
    """The pilot, its calibration, the decision, the remaining rollouts."""
    pilot, cost_specs = pilot_plan(ctx.plan, specs)
    n_pilot = len(pilot)
    b = ctx.campaign.state.part(BUDGET)
    if b.calibrated is None:
        if warmed := await warmup.warm_up(ctx):
            ctx.progress.say(f"warm-up: ran the buggy program of {warmed} eval tasks in the sandbox (no call): "
                             "their test time prices the eval's endpoint minutes")
        ctx.progress.say(f"pilot: {power_text(ctx)}")
    hold_stage(ctx.campaign, "rollouts", unfinished_usd(ctx, pilot, b.calibrated or b.latest),
               f"the pilot ({n_pilot} rollouts)")
    await run_specs(ctx, await with_model(pilot), "pilot", engines=engines)
    _calibrate(ctx, pilot, cost_specs)
    if n_pilot < len(specs):
        cal = ctx.campaign.state.part(BUDGET).calibrated or ctx.campaign.state.part(BUDGET).latest
        cost = cal["by_stage"]["rollouts"]["usd"]
        power = power_text(ctx)
        if not ctx.campaign.state.part(PLAN).has("approve_rollouts"):
            ctx.progress.say(f"rollouts: {power}")
        by_yield = ctx.plan.rollouts.allocation == "yield"
        more = (f"up to {len(specs) - n_pilot} more rollouts, allocated by expected pair yield in rounds"
                if by_yield else f"{len(specs) - n_pilot} more rollouts")
        ctx.decide("approve_rollouts", "rollouts", ctx.plan.decisions.approve_rollouts,
                   f"start {more} (estimated ${cost:.2f} for the stage; {power})", cost)
        hold_stage(ctx.campaign, "rollouts", unfinished_usd(ctx, specs, cal),
                   f"the remaining rollouts ({len(specs) - n_pilot} after the pilot)")
        if by_yield:
            await _yield_rounds(ctx, engines, with_model)
        else:
            await run_specs(ctx, await with_model(specs), "rollouts", engines=engines)


