"""The eval's warm-up and the measured figures its endpoint minutes are estimated from.

The eval's endpoints are billed for as long as its rollouts take, and on a campaign whose
policy model fails often that time is the test runs of its failing programs, not the
calls: on QuixBugs a wrong `bitcount` loops until the CPU limit on every test, 9 s a run,
where a passing program takes a tenth of a second. The generator's pilot cannot show
this (the 72B fixes most bugs at once), so before the pilot the warm-up runs each eval
task's buggy program through its tests in the sandbox (local CPU, no call, no spend) and
logs it as the task's `task.baseline`, the report every first prompt shows anyway. A
failing eval iteration is then estimated to take as long as its task's buggy program did,
a passing one as long as the pilot's passing iterations did, and the calls as long as
the pilot's calls did; the test runs share the engine's test workers
(`domain/costs.py` `eval_serving_seconds`).
"""

from __future__ import annotations

import os
import statistics
from typing import TYPE_CHECKING, Any

from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT

if TYPE_CHECKING:
    from dpo_tui.campaign.runner import Ctx
    from dpo_tui.events.campaign import Campaign


def test_workers() -> int:
    """Test runs in flight at once: the engine's pool (one per core)."""
    return os.cpu_count() or 2


def eval_task_ids(ctx: Ctx) -> list[str]:
    from dpo_tui.campaign.evaluation import suite_tasks

    split = ctx.campaign.state.part(SPLIT).split
    return sorted({t for ids in suite_tasks(ctx.plan, ctx.tasks, sorted(split.test)).values() for t in ids})


async def warm_up(ctx: Ctx) -> int:
    """Run and log the baseline of every eval task that has none yet; how many ran."""
    from dpo_tui.campaign.engine import RolloutEngine
    from dpo_tui.tasks.sandbox import Limits

    baselines = ctx.campaign.state.part(ROLLOUTS).baselines
    by_id = {**ctx.tasks.pool, **ctx.tasks.heldout}
    todo = [by_id[t] for t in eval_task_ids(ctx) if t not in baselines and t in by_id]
    if not todo:
        return 0
    engine = RolloutEngine(ctx.campaign, ctx.provider, concurrency=ctx.plan.rollouts.concurrency,
                           limits=Limits(test_cpu_seconds=ctx.plan.rollouts.test_cpu_seconds))
    try:
        await engine.baselines(todo)
    finally:
        engine.close()
    return len(todo)


def baseline_seconds(campaign: Campaign, task_ids: list[str]) -> list[float]:
    """Each task's logged buggy-program test run (tasks without one left out), in seconds of
    the sandbox's own work: the tests' CPU time (a CPU limit times out in CPU seconds, however
    loaded the machine was) plus one sandbox start, the least wall-over-CPU any run showed."""
    baselines = campaign.state.part(ROLLOUTS).baselines
    runs = []
    for t in task_ids:
        seq = baselines.get(t)
        if seq is not None:
            report = campaign.store.event_at(seq).payload["report"]
            if report.get("seconds") is not None:
                cpu = sum(float(v.get("cpu_seconds") or 0.0) for v in report.get("verdicts") or ())
                runs.append((cpu, float(report["seconds"])))
    if not runs:
        return []
    start = max(0.0, min(wall - cpu for cpu, wall in runs))
    return [cpu + start for cpu, _wall in runs]


def pilot_timings(campaign: Campaign, rollout_ids: list[str]) -> dict[str, float | None]:
    """The pilot's median call latency and median passing test run, in seconds (None: none logged)."""
    rollouts = campaign.state.part(ROLLOUTS).by_id
    passing: list[float] = []
    for rid in rollout_ids:
        rec = rollouts.get(rid)
        for it in rec.iterations if rec else ():
            if it["passed"]:
                s = campaign.store.event_at(it["seq"]).payload["report"].get("seconds")
                if s is not None:
                    passing.append(float(s))
    ids = set(rollout_ids)
    latencies = [float(e.payload["latency_s"]) for e in campaign.store.read(verify=False, types=["call.completed"])
                 if _rollout_of(e.payload) in ids]
    return {"call_s": statistics.median(latencies) if latencies else None,
            "pass_test_s": statistics.median(passing) if passing else None}


def _rollout_of(payload: dict[str, Any]) -> str | None:
    """The rollout of a call from its idempotency key, <campaign>/<stage>/<rollout id>/<iteration>/<step>."""
    parts = payload.get("idempotency_key", "").split("/")
    return "/".join(parts[2:-2]) if len(parts) > 4 else None


def eval_inputs(campaign: Campaign, ctx: Ctx, pilot_ids: list[str]) -> dict[str, Any]:
    """BudgetInputs fields for the eval's serving time from the warm-up and the pilot; {} when
    the warm-up logged nothing (the token-throughput prior stays)."""
    fail = baseline_seconds(campaign, eval_task_ids(ctx))
    if not fail:
        return {}
    timings = pilot_timings(campaign, pilot_ids)
    return {"eval_fail_test_seconds": statistics.fmean(fail),
            "eval_pass_test_seconds": timings["pass_test_s"] if timings["pass_test_s"] is not None else min(fail),
            "eval_call_seconds": timings["call_s"], "test_workers": test_workers()}
