"""The generator's serving for the rollouts: serverless (per token), or a dedicated endpoint of
its own (per minute) when the plan says `models.generator_serving = "dedicated"`.

A dedicated generator is started before the pilot's first call and logged before it can bill
(`endpoint.started`, role `generator`); while the rollouts run its started minutes are booked
live (`endpoint.billed`) under the rollouts' spend and held against the cap (the eval's meter,
campaign/cap.py); it is stopped however the rollouts end (done, waiting for a decision,
cancelled, the cap, an error), and on the next start after a crash (adopted by name first when
the crashed run never logged it). Its calls are `call.completed` events at $0 per token: the
cost is the endpoint's minutes. It is started only when a rollout is left to run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from dpo_tui.campaign import serving
from dpo_tui.campaign.budget import generator_hardware
from dpo_tui.campaign.cap import EndpointMeter, meter_loop
from dpo_tui.campaign.state.train import ENDPOINTS
from dpo_tui.errors import BudgetCapReached

RUN_ID, ROLE = "rollouts", "generator"


def dedicated(plan: Any) -> bool:
    return plan.models.generator_serving == "dedicated"


async def stop_leftovers(ctx: Any, *, keep_one: bool = False) -> list[str]:
    """Stop the generator endpoints an earlier run left running: those its log shows running, and
    those Together has under this campaign's name prefix that it never logged (adopted first, so
    stopping them bills them). With `keep_one` (rollouts are left to run, on a dedicated
    generator) the latest is kept for `generator_model` to reuse instead of deploying again."""
    running = [e for e in ctx.campaign.state.part(ENDPOINTS).running() if e.get("role") == ROLE]
    if not dedicated(ctx.plan) and not running:
        return []
    client = await asyncio.to_thread(ctx.client)
    instance, cents = generator_hardware(ctx.plan, ctx.prices)
    eval_instance = ctx.prices.dedicated.get(ctx.plan.models.eval_base or ctx.plan.models.policy_base)
    eval_cents = ctx.prices.instances[eval_instance].price_cents_per_hour if eval_instance in ctx.prices.instances else 0
    await asyncio.to_thread(serving.adopt_unlogged, ctx.campaign, client, instance=eval_instance or "?",
                            price_cents_per_hour=eval_cents, by_role={ROLE: (instance or "?", cents)})
    ours = [e["endpoint_id"] for e in ctx.campaign.state.part(ENDPOINTS).running()
            if e.get("role") == ROLE and e.get("run_id") == RUN_ID and e.get("deployment_id")]
    kept = ours[-1:] if keep_one and dedicated(ctx.plan) else []
    left = await asyncio.to_thread(serving.stop_all, ctx.campaign, client, reason="left running by an earlier run",
                                   role=ROLE, keep=lambda e: e["endpoint_id"] in kept)
    if left:
        ctx.progress.say(f"rollouts: stopped {len(left)} generator endpoint(s) an earlier run left running")
    return left


@dataclass
class Served:
    model: str  # what the rollouts' chat calls name
    over_cap: list[str] = field(default_factory=list)  # set by the meter: the next minute does not fit

    def check(self) -> None:
        """Before an engine starts: the meter may have tripped while nothing was running."""
        if self.over_cap:
            raise BudgetCapReached(self.over_cap[0])


@contextlib.asynccontextmanager
async def generator_model(ctx: Any, engines: list[Any]) -> AsyncIterator[Served]:
    """The chat model the rollouts call, served for the duration of the block: the plan's
    generator itself (serverless), or a dedicated endpoint's pinned deployment, metered against
    the cap (`engines` are stopped when its next minute would not fit) and stopped at the end."""
    plan = ctx.plan
    if not dedicated(plan):
        yield Served(plan.models.generator)
        return
    client = await asyncio.to_thread(ctx.client)
    instance, cents = generator_hardware(plan, ctx.prices)
    meter = EndpointMeter(ctx.campaign)
    refused = meter.start_refusal(cents)
    if refused:
        raise BudgetCapReached(refused)
    served = Served(plan.models.generator)
    over_cap = served.over_cap

    def on_cap(message: str) -> None:
        over_cap.append(message.replace("the eval stopped", "the rollouts stopped"))
        for engine in engines:
            engine.stop_for_cap(over_cap[0])

    metering = asyncio.create_task(meter_loop(meter, on_cap))
    try:
        abort = lambda: over_cap[0] if over_cap else None  # noqa: E731
        ep = await asyncio.to_thread(serving.reuse, ctx.campaign, client, run_id=RUN_ID, role=ROLE, poll_s=0.1,
                                     abort=abort)
        if ep is not None:
            ctx.progress.say(f"rollouts: reusing the generator endpoint {ep['chat_model']} an earlier run left running")
        else:
            ref, config = await asyncio.to_thread(serving.base_profile, client, plan.models.generator)
            ep = await asyncio.to_thread(
                serving.start, ctx.campaign, client, run_id=RUN_ID, role=ROLE, model_ref=ref, config=config,
                price_cents_per_hour=cents, instance=instance or "?", actor="plan" if ctx.yes else "system",
                poll_s=0.1, abort=abort, replicas=plan.models.generator_replicas)
        ctx.provider.price_endpoint_model(ep["chat_model"], note=ROLE)
        ctx.progress.say(f"rollouts: generator {plan.models.generator} on a dedicated endpoint ({instance}, "
                         f"{plan.models.generator_replicas} replica(s), ${cents / 100:.2f}/h, billed per started "
                         f"minute into the rollouts' spend) as {ep['chat_model']}")
        served.model = ep["chat_model"]
        yield served
    finally:
        metering.cancel()
        await asyncio.gather(metering, return_exceptions=True)
        await asyncio.to_thread(serving.stop_all, ctx.campaign, client, role=ROLE,
                                reason="the budget cap stopped the rollouts" if over_cap else "rollouts ended")


async def stop_running(ctx: Any) -> list[str]:
    """Stop every generator endpoint the log shows running (none: no API call)."""
    if not any(e.get("role") == ROLE for e in ctx.campaign.state.part(ENDPOINTS).running()):
        return []
    client = await asyncio.to_thread(ctx.client)
    return await asyncio.to_thread(serving.stop_all, ctx.campaign, client, role=ROLE, reason="rollouts ended")


def measured_provisioning_minutes(campaign: Any) -> float | None:
    """Minutes from the generator endpoint's start to ready, as the log shows them (the latest)."""
    from dpo_tui.campaign.cap import _parse

    eps = [e for e in campaign.state.part(ENDPOINTS).by_id.values() if e.get("role") == ROLE and e.get("ready_at")]
    if not eps:
        return None
    ep = eps[-1]
    return max(0.0, (_parse(ep["ready_at"]) - _parse(ep["started_at"])).total_seconds() / 60)
