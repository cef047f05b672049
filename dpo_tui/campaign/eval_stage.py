"""The eval stage: base against tuned on dedicated serving, then the gate.

Serving pays once. Where the catalogue says the base's deployment hosts LoRA adapters
(`budget.shared_eval_deployment`), base and tuned share one deployment: the base endpoint
is started and the run's tuned adapter attached to it (one endpoint's minutes, the same
serving path by construction); otherwise base and tuned get an endpoint each. Within one
command the base endpoint serves every run it evaluates (`EvalServing`: `dpo-tui train
--control` evaluates a run and its control on one base), a resume after a crash reuses the
campaign's still-running endpoints, and no endpoint outlives the command."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dpo_tui.campaign import evaluation, preflight, serving
from dpo_tui.campaign import sequential_eval as seq
from dpo_tui.campaign.budget import run_shares_deployment, serving_words
from dpo_tui.campaign.cap import EndpointMeter, hold_stage, meter_loop
from dpo_tui.campaign.rollouts_stage import run_specs
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.campaign.state.concurrency import CONCURRENCY
from dpo_tui.campaign.state.eval import EVAL
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.campaign.state.train import ENDPOINTS, TRAINING
from dpo_tui.domain.concurrency import ThroughputController
from dpo_tui.domain.stats import interval_text
from dpo_tui.errors import BudgetCapReached, InputError


@dataclass
class EvalServing:
    """The command's eval serving, shared by every run it evaluates: the base endpoint's id
    once started, and whether a later run of this command still needs it."""

    base_endpoint_id: str | None = None
    keep_base: bool = False  # set by the command while another run's eval follows this one
    runs: tuple[str, ...] = ()  # the runs this command evaluates, in order

    def mine(self, run_id: str) -> tuple[str, ...]:
        """This run first, then the command's others: whose base endpoint, left running by a
        crash, this run's eval reuses."""
        return tuple(dict.fromkeys((run_id, *self.runs)))

    def needs_base(self, campaign: Any, run_id: str) -> bool:
        """This run or another of the command's still has its gate open."""
        evals = campaign.state.part(EVAL).runs
        return any(r not in evals or evals[r].gate_decision is None for r in self.mine(run_id))

    def base(self, campaign: Any) -> dict[str, Any] | None:
        ep = campaign.state.part(ENDPOINTS).by_id.get(self.base_endpoint_id or "")
        return ep if ep is not None and ep["state"] != "stopped" else None


def _hardware(ctx: Any) -> tuple[str, str | None, int]:
    base_model = ctx.plan.models.eval_base or ctx.plan.models.policy_base
    instance = ctx.prices.dedicated.get(base_model)
    cents = ctx.prices.instances[instance].price_cents_per_hour if instance in ctx.prices.instances else 0
    return base_model, instance, cents


async def _clear_leftovers(ctx: Any, client: Any, pool: EvalServing, open_gate: bool) -> None:
    """Log the endpoints a killed run left unlogged, stop every endpoint nobody will use: kept
    are this command's shared base and, while its gate is open, this run's own base and tuned."""
    _base_model, instance, cents = _hardware(ctx)
    unlogged = await asyncio.to_thread(serving.adopt_unlogged, ctx.campaign, client, instance=instance or "?",
                                       price_cents_per_hour=cents)
    needed = pool.needs_base(ctx.campaign, ctx.run_id)
    mine = (lambda ep: ep["endpoint_id"] == pool.base_endpoint_id or (bool(ep.get("deployment_id")) and (
        (open_gate and ep.get("run_id") == ctx.run_id and ep.get("role") == "tuned")
        or (needed and ep.get("role") == "base" and ep.get("run_id") in pool.mine(ctx.run_id)))))
    left = await asyncio.to_thread(serving.stop_all, ctx.campaign, client, reason="left running by an earlier run",
                                   keep=mine)
    if left:
        ctx.progress.say(f"eval: stopped {len(left)} endpoint(s) an earlier run left running"
                         + (f" ({len(unlogged)} of them never logged by it)" if unlogged else ""))


def _what(endpoints: int, instance: str | None, cents: int, endpoint_usd: float, shared: bool) -> str:
    minutes = endpoint_usd / (endpoints * cents / 100 / 60) if cents else 0.0
    return (f"start {serving_words(shared)} on {instance}, ${endpoints * cents / 100 / 60:.3f}/min together, {minutes:g} min each "
            f"estimated, and run the eval")


async def _endpoint(ctx: Any, client: Any, role: str, ref: str, config: str | None, abort: Any,
                    instance: str | None, cents: int, actor: str, reusable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run's endpoint of `role`: one a crashed run of this command left running (`reusable`
    names whose), else a new one."""
    for run_id in reusable or (ctx.run_id,):
        ep = await asyncio.to_thread(serving.reuse, ctx.campaign, client, run_id=run_id, role=role, poll_s=0.1,
                                     abort=abort)
        if ep is not None:
            ctx.progress.say(f"eval: reusing the {role} endpoint {ep['chat_model']} an earlier run left running")
            return ep
    return await asyncio.to_thread(serving.start, ctx.campaign, client, run_id=ctx.run_id, role=role, model_ref=ref,
                                   config=config, price_cents_per_hour=cents, instance=instance or "?", actor=actor,
                                   poll_s=0.1, abort=abort)


async def _serve(ctx: Any, client: Any, pool: EvalServing, meter: EndpointMeter, over_cap: list[str],
                 shared: bool) -> dict[str, str]:
    """The base's and the tuned model's chat names, their endpoints running."""
    base_model, instance, cents = _hardware(ctx)
    run = ctx.campaign.state.part(TRAINING).runs[ctx.run_id]
    actor = "plan" if ctx.yes else "system"
    abort = lambda: over_cap[0] if over_cap else None  # noqa: E731

    def refuse() -> None:
        refused = over_cap[0] if over_cap else meter.start_refusal(cents)
        if refused:
            raise BudgetCapReached(refused)

    base_ref, config = await asyncio.to_thread(serving.base_profile, client, base_model)
    base = pool.base(ctx.campaign)
    if base is None:
        refuse()
        base = await _endpoint(ctx, client, "base", base_ref, config, abort, instance, cents, actor,
                               reusable=pool.mine(ctx.run_id))
        pool.base_endpoint_id = base["endpoint_id"]
    else:
        ctx.progress.say(f"eval: the base endpoint {base['chat_model']} serves run {ctx.run_id} too")
    models = {"base": base["chat_model"]}
    if shared:
        models["tuned"] = await asyncio.to_thread(
            serving.attach_adapter, ctx.campaign, client, base, run_id=ctx.run_id,
            adapter_model_id=run.adapter_object_id, chat_model=run.adapter_object_name, poll_s=0.1)
    else:
        refuse()
        project = (await asyncio.to_thread(client.call, "whoami", client.client.whoami)).project.id
        tuned = await _endpoint(ctx, client, "tuned", f"projects/{project}/models/{run.model_object_id}", config,
                                abort, instance, cents, actor)
        models["tuned"] = tuned["chat_model"]
    return models


def _concurrency(ctx: Any) -> dict[str, Any]:
    """The eval's rollouts in flight: the plan's number, or (auto) a controller that follows the
    endpoints' measured latency (domain/concurrency.py), resumed where this run's last logged
    change left it."""
    ev = ctx.plan.eval
    if ev.concurrency != "auto":
        return {"concurrency": ev.concurrency}
    last = ctx.campaign.state.part(CONCURRENCY).last("eval", ctx.run_id)
    if last is None:
        return {"controller": ThroughputController(ctx.plan.rollouts.concurrency, ceiling=ev.max_concurrency)}
    return {"controller": ThroughputController(last["after"], ceiling=ev.max_concurrency,
                                               baseline=last["baseline_ms_per_token"] / 1000)}


def _decide(ctx: Any, shared: bool) -> None:
    from dpo_tui.campaign.runner import run_decision

    _base_model, instance, cents = _hardware(ctx)
    b = ctx.campaign.state.part(BUDGET)
    endpoint_usd = (b.calibrated or b.latest)["by_stage"]["endpoint"]["usd"]
    endpoints = 1 if shared else 2
    what = _what(endpoints, instance, cents, endpoint_usd, shared)
    ctx.decide("run_eval", "eval", ctx.plan.decisions.run_eval, what, endpoint_usd,
               label=run_decision("run_eval", ctx.run_id))
    hold_stage(ctx.campaign, "eval", endpoint_usd, "the eval's endpoint minutes")


async def stage_eval(ctx: Any) -> None:
    pool: EvalServing = ctx.eval_serving
    done = ctx.campaign.state.part(EVAL).runs.get(ctx.run_id)
    await preflight.before_stage(ctx)
    client = await asyncio.to_thread(ctx.client)
    open_gate = done is None or done.gate_decision is None
    await _clear_leftovers(ctx, client, pool, open_gate)
    if not open_gate:
        ctx.progress.say(f"eval: gate decided {done.decision} ({done.reason})")
        return
    run = ctx.campaign.state.part(TRAINING).runs[ctx.run_id]
    _design_fixed_before_training(ctx, run)
    shared = run_shares_deployment(ctx.plan, ctx.prices, run)
    try:
        _decide(ctx, shared)
    except BaseException:  # a kept endpoint never outlives the command
        await asyncio.to_thread(serving.stop_all, ctx.campaign, client, reason="eval not started")
        raise
    split = ctx.campaign.state.part(SPLIT).split
    meter = EndpointMeter(ctx.campaign)
    over_cap: list[str] = []
    engines: list[Any] = []

    def on_cap(message: str) -> None:
        over_cap.append(message)
        for engine in engines:
            engine.stop_for_cap(message)

    metering = asyncio.create_task(meter_loop(meter, on_cap))
    finished = False
    try:
        models = await _serve(ctx, client, pool, meter, over_cap, shared)
        for arm, model in models.items():
            ctx.provider.price_endpoint_model(model, note=arm)
        ctx.progress.say(f"eval: base {models['base']} and tuned {models['tuned']} on the same serving path"
                         + (" (one deployment, the tuned adapter attached)" if shared else ""))
        specs = evaluation.eval_specs(ctx.plan, ctx.tasks, list(split.test), ctx.run_id, models)
        if seq.sequential(ctx.plan):
            await _run_rounds(ctx, specs, engines, over_cap)
        else:
            await run_specs(ctx, specs, "eval", engines=engines, **_concurrency(ctx))
        finished = True
    finally:
        metering.cancel()
        await asyncio.gather(metering, return_exceptions=True)
        keep = (lambda ep: ep["endpoint_id"] == pool.base_endpoint_id) if finished and pool.keep_base else (
            lambda ep: False)
        await asyncio.to_thread(serving.stop_all, ctx.campaign, client, keep=keep,
                                reason="the budget cap stopped the eval" if over_cap else "eval ended")
    _gate(ctx, split, models)


def _design_fixed_before_training(ctx: Any, run: Any) -> None:
    """The eval design (and a sequential one's looks) is the plan's training was requested under:
    one changed since (before any eval sample) would let the design follow the training."""
    from dpo_tui.campaign.state.plan import PLAN, gate_protocol

    p = ctx.campaign.state.part(PLAN)
    before = p.protocols.get(run.plan_hash or "")
    now = gate_protocol(ctx.plan.canonical())
    if before is not None and (before["design"], before["looks"]) != (now["design"], now["looks"]):
        raise InputError(f"eval.design / eval.looks changed after training run {ctx.run_id} was requested "
                         f"({before['design']}, looks {before['looks']} -> {now['design']}, looks {now['looks']}): "
                         "the eval's design is fixed before training; restore it in the plan")


async def _run_rounds(ctx: Any, specs: list[Any], engines: list[Any], over_cap: list[str]) -> None:
    """A sequential eval: each round's samples (every seed of its tasks, both arms), then its
    look; stop at the first look that ships or rolls back. A resume skips the rounds whose look
    is logged and finishes the round it was in (the engine pays no finished sample twice)."""
    plan_rounds = seq.eval_rounds(ctx.plan, seq.suite_ids(ctx.plan, list(ctx.campaign.state.part(SPLIT).split.test),
                                                          list(ctx.tasks.heldout)))
    concurrency = _concurrency(ctx)
    for j, rnd in enumerate(plan_rounds):
        logged = ctx.campaign.state.part(EVAL).runs.get(ctx.run_id)
        done = logged.looks if logged is not None else []
        if j < len(done):
            if seq.stopped(done[j]):
                break
            continue
        if over_cap:
            raise BudgetCapReached(over_cap[0])
        todo = [s for s in specs if s.task.id in set(rnd.get(s.suite) or ())]
        ctx.progress.say(f"eval: round {j + 1}/{len(plan_rounds)}, {len(todo)} samples")
        await run_specs(ctx, todo, "eval", engines=engines, **concurrency)
        look = seq.look(ctx.campaign.state, ctx.plan, ctx.run_id, plan_rounds, j)
        ctx.campaign.append("eval.look", look, actor="system")
        st = look["statistic"]
        ctx.progress.say(f"eval look {look['look']}/{look['looks']}: {look['tasks_seen']}/{look['tasks_planned']} "
                         f"tasks, delta {st['delta']:+.1%}, one-sided p={st['p_improve']:.4f} against "
                         f"{look['one_sided_alpha']:.4f}: {look['decision']}")
        if seq.stopped(look):
            break


def _gate(ctx: Any, split: Any, models: dict[str, str]) -> None:
    results = evaluation.record_results(ctx.campaign, ctx.plan, ctx.tasks, ctx.run_id, list(split.test), models)
    run = ctx.campaign.state.part(EVAL).runs.get(ctx.run_id)
    look = run.looks[-1] if seq.sequential(ctx.plan) and run is not None and run.looks else None
    decision = evaluation.gate(ctx.campaign, ctx.plan, ctx.run_id, results, look=look)
    for suite, r in results.items():
        ctx.progress.say(f"eval {suite}: pass@1 base {r.base_pass1:.1%} tuned {r.tuned_pass1:.1%} "
                         f"delta {r.delta:+.1%} CI {interval_text(r.ci_low, r.ci_high)} p={r.perm_p:.3f} "
                         f"MDE {'none reachable' if r.mde is None else format(r.mde, '.1%')}")
    ctx.progress.say(f"gate: {decision['decision']} ({decision['reason']})")
