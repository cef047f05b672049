"""The plan runner: the stages in order, headless, resumable.

`run_campaign()` opens (or creates) the campaign, starts the backend (the embedded
simulator or the real API), and runs budget, split, rollouts (pilot first), pairs, ...
up to `until`. Decisions an operator must take are taken from the plan only with
`yes=True` (logged with actor `plan`); otherwise the run stops, waiting (exit 4).
Running it again resumes: every stage reads the log and does only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import together

from dpo_tui.campaign import pairs as pairs_stage
from dpo_tui.campaign import preflight
from dpo_tui.campaign.budget import plan_estimate, record_estimate
from dpo_tui.campaign.cap import cap_warning, hold_stage
from dpo_tui.campaign.decisions import record_decision
from dpo_tui.campaign.engine import RolloutEngine
from dpo_tui.campaign.eval_stage import EvalServing, stage_eval
from dpo_tui.campaign.rollouts_stage import power_text, stage_rollouts
from dpo_tui.campaign.plan import Plan, load_checked_plan
from dpo_tui.campaign.lock import campaign_lock  # noqa: F401 - re-exported: where the runner's callers find it
from dpo_tui.campaign.progress import Progress
from dpo_tui.campaign.runids import (RUN_ID, TRAINING_OVERRIDES, check_run_id, run_decision,  # noqa: F401
                                     training_plan)
from dpo_tui.campaign.split import approve_split, propose_split
from dpo_tui.campaign.stages import STAGES
from dpo_tui.campaign.state.budget import BUDGET, plan_cap_applies
from dpo_tui.campaign.state.pairs import PAIRS, ordered_funnel
from dpo_tui.campaign.state.plan import PLAN, changed_fields
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.campaign.suites import check_unchanged
from dpo_tui.campaign.suites import PlanTasks, load_plan_tasks
from dpo_tui.config import Settings, load_settings
from dpo_tui.errors import (EXIT_BUDGET_CAP, EXIT_OK, EXIT_STAGE_FAILED, EXIT_WAITING, BackendUnavailable,
                            BudgetCapReached, DpoTuiError, InputError, Stopped)
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.catalog import build_price_book
from dpo_tui.provider.prices import PriceTable, load_prices
from dpo_tui.provider.provider import Provider
from dpo_tui.provider.tokenizer import get_tokenizer

class Waiting(DpoTuiError):
    exit_code = EXIT_WAITING


class StageFailed(DpoTuiError):
    exit_code = EXIT_STAGE_FAILED


@dataclass
class Ctx:
    plan: Plan
    plan_path: Path
    campaign: Campaign
    tasks: PlanTasks
    prices: PriceTable
    provider: Provider
    yes: bool
    progress: Progress
    backend: str
    settings: Settings | None = None
    run_id: str = RUN_ID
    train_plan: Plan | None = None  # the plan with this run's hyperparameter overrides
    label_swap: bool = False  # this run trains on the label-swapped control export
    stages: dict[str, str] = field(default_factory=dict)
    _client: Any = None
    on_engine: Callable[[RolloutEngine], None] | None = None  # a front end's handle on the running engine
    stop: threading.Event | None = None  # set by a front end that quits: stop following a training job
    eval_serving: EvalServing = field(default_factory=EvalServing)  # the command's, shared by the runs it evaluates
    console: bool = False  # the console runs it: say what happened in its words, not the command line's

    def client(self):
        """The SDK client for management calls (files, fine-tunes, endpoints), made once."""
        if self._client is None:
            from dpo_tui.campaign.mgmt import mgmt_client

            self._client = mgmt_client(self.settings, self.campaign)
        return self._client

    def decide(self, decision: str, stage: str, allowed: bool, what: str, estimate_usd: float | None = None,
               *, label: str | None = None) -> None:
        """Take a decision from the plan under --yes, or stop waiting for the operator.
        `label` names the decision in the log when it is per run (e.g. launch_training:run-2)."""
        state = self.campaign.state.part(PLAN)
        if state.has(label or decision):
            return
        if not (self.yes and allowed):
            raise Waiting(f"waiting for an operator decision: {what} (in the TUI, or run with --yes and "
                          f"decisions.{decision} = true in the plan)", console=f"waiting for your decision: {what}")
        record_decision(self.campaign, label or decision, stage,
                        reason=f"plan {self.plan_path.name}: decisions.{decision} = true", actor="plan",
                        estimate_usd=estimate_usd)


@contextlib.contextmanager
def backend_settings(plan: Plan, db: Path) -> Iterator[tuple[Settings, str]]:
    if plan.backend.kind == "simulator":
        from dpo_tui.campaign.sim_env import embedded_sim_options
        from dpo_tui.sim.server import SimServer

        state_dir = db.with_name(f"{db.name}.sim")
        # the simulated models perceive the reference fixes of the plan's suites (sim/references.py)
        refs = [*plan.suites.train_test, *plan.suites.heldout]
        with SimServer(seed=plan.backend.sim_seed, faults=plan.backend.sim_faults or None, state_dir=state_dir,
                       references=refs, replica_slots=plan.backend.sim_replica_slots,
                       serving_scale=plan.backend.sim_serving_scale, **embedded_sim_options()) as sim:
            # The simulator needs no key; a placeholder keeps a real TOGETHER_API_KEY out of its way.
            yield load_settings(None, api_key="simulated-no-key", base_url=sim.base_url,
                                retry_initial_s=0.2, retry_max_s=2.0, retry_jitter_s=0.1), "simulated"
    else:
        yield load_settings(None, base_url=plan.backend.base_url), "together"


def record_plan(campaign: Campaign, plan: Plan, plan_path: Path, *, actor: str = "plan") -> None:
    """Record the plan the campaign runs under, when it differs from the last one recorded."""
    state = campaign.state.part(PLAN)
    if state.hash != plan.hash():
        canonical = plan.canonical()
        campaign.append("plan.recorded", {"hash": plan.hash(), "path": str(plan_path.resolve()),
                                          "plan": canonical, "previous_hash": state.hash,
                                          "backend": plan.backend.kind,
                                          "changed": changed_fields(state.plan, canonical)}, actor=actor)


def open_or_create(db: Path, plan: Plan, plan_path: Path, backend: str, tasks: PlanTasks | None = None) -> Campaign:
    campaign = Campaign.open(db) if db.exists() else Campaign.create(db, name=plan.campaign.name, actor="plan")
    if tasks is not None:  # before anything is appended: a task changed since the split stops the run
        try:
            check_unchanged(campaign.state, tasks.all(), tasks.sources)
        except BaseException:
            campaign.close()
            raise
    record_plan(campaign, plan, plan_path)
    return campaign


# -- stages -------------------------------------------------------------------------------

def apply_plan_cap(campaign: Campaign, plan: Plan) -> bool:
    """Set the plan's `budget.cap_usd` when the one rule says it applies (state.budget.plan_cap_applies)."""
    if not plan_cap_applies(campaign.state.part(BUDGET), plan.budget.cap_usd):
        return False
    from dpo_tui.provider.provider import set_cap

    try:
        set_cap(campaign, plan.budget.cap_usd, reason="plan budget.cap_usd", actor="plan")
    except InputError as exc:
        raise InputError(f"budget.cap_usd: {exc.message}") from None
    return True


async def stage_budget(ctx: Ctx) -> None:
    b = ctx.campaign.state.part(BUDGET)
    if b.first is None:
        inp, est = plan_estimate(ctx.plan, ctx.prices, n_pool=len(ctx.tasks.pool), n_heldout=len(ctx.tasks.heldout))
        record_estimate(ctx.campaign, inp, est, prices=ctx.prices, train_tasks=inp.tasks, eval_tasks=inp.eval_tasks,
                        actor="plan")
    apply_plan_cap(ctx.campaign, ctx.plan)
    b = ctx.campaign.state.part(BUDGET)
    est = b.latest
    ctx.progress.say(f"budget: estimate ${est['total_usd']:.2f} (${est['low_usd']:.2f}-${est['high_usd']:.2f}), "
                     f"cap ${b.cap_usd:.2f}" + ("" if b.cap_set_by == "plan" else f" (set by {b.cap_set_by})"))
    warning = cap_warning(est["total_usd"], b.cap_usd)
    if warning:
        ctx.progress.say(warning)


async def stage_split(ctx: Ctx) -> None:
    split = propose_split(ctx.campaign, ctx.plan, ctx.tasks, actor="plan")
    s = ctx.campaign.state.part(SPLIT)
    if not s.frozen:
        # after an unfreeze, approving again is a new decision (not the first approval taken again)
        label = f"approve_split:{s.approvals + 1}" if s.approvals else None
        ctx.decide("approve_split", "split", ctx.plan.decisions.approve_split,
                   f"approve the split ({len(split.train)} train, {len(split.test)} test, {len(s.findings)} leakage findings)",
                   label=label)
        approve_split(ctx.campaign, actor="plan")
    s = ctx.campaign.state.part(SPLIT)
    ctx.progress.say(f"split: frozen {s.frozen_hash[:12]} ({len(s.split.train)} train, {len(s.split.test)} test, "
                     f"{len(s.split.excluded)} excluded, {len(s.findings)} leakage findings)")


async def stage_pairs(ctx: Ctx) -> None:
    tok = ctx.provider.tokenizer
    p = ctx.campaign.state.part(PAIRS)
    if p.export is None:
        pairs_stage.build(ctx.campaign, ctx.plan, ctx.tasks, tok, actor="system")
        ctx.decide("export_pairs", "pairs", ctx.plan.decisions.export_pairs,
                   f"export the filtered pairs (funnel {ordered_funnel(ctx.campaign.state.part(PAIRS).built['funnel'])})")
        pairs_stage.export(ctx.campaign, ctx.plan, ctx.tasks, tok, actor="plan" if ctx.yes else "system")
    run = ctx.campaign.state.parts["training"].runs.get(ctx.run_id)
    if run is None or run.status is None:  # a launched job keeps the file it was given; its eval goes on
        ensure_current_export(ctx)
    x = ctx.campaign.state.part(PAIRS).export
    ctx.progress.say(f"pairs: funnel {ordered_funnel(x['funnel'])}; exported {x['pairs']} pairs to {x['together_path']}")


def ensure_current_export(ctx: Ctx, *, label_swap: bool = False) -> None:
    """A stale export (a pair accepted or rejected since) is exported again when the plan
    allows it under --yes (a new, logged decision); otherwise the run waits (exit 4)."""
    state = ctx.campaign.state.part(PAIRS)
    why = state.staleness(state.control_export if label_swap else state.export)
    if why is None:
        return
    label = pairs_stage.export_decision(ctx.campaign)
    ctx.decide("export_pairs", "pairs", ctx.plan.decisions.export_pairs,
               f"re-export the pairs: {why}; training never uploads a stale export", label=label)
    x = pairs_stage.export(ctx.campaign, ctx.plan, ctx.tasks, ctx.provider.tokenizer, actor="plan",
                           label_swap=label_swap)
    ctx.progress.say(f"pairs: re-exported {x['pairs']} pairs ({x['together_sha256'][:12]}, replacing "
                     f"{x['supersedes'][:12]}) because {why}")


async def stage_train(ctx: Ctx) -> None:
    from dpo_tui.campaign import outlook, train
    from dpo_tui.campaign.state.train import TRAINING

    run = ctx.campaign.state.part(TRAINING).runs.get(ctx.run_id)
    plan = ctx.train_plan or ctx.plan
    label = run_decision("launch_training", ctx.run_id)
    if run is None or run.status not in ("completed",):
        await preflight.before_stage(ctx)
        client = await asyncio.to_thread(ctx.client)
        actor = "plan" if ctx.yes else "system"
        if ctx.label_swap and ctx.campaign.state.part(PAIRS).control_export is None:
            pairs_stage.export(ctx.campaign, ctx.plan, ctx.tasks, ctx.provider.tokenizer, actor=actor, label_swap=True)
        if run is not None and run.status is not None and run.file_id:
            file_id = run.file_id  # a job requested (or running) trains on the file it was given
        else:
            ensure_current_export(ctx, label_swap=ctx.label_swap)
            file_id = await asyncio.to_thread(train.upload, ctx.campaign, client, actor=actor,
                                              label_swap=ctx.label_swap, plan=plan,
                                              tokenizer=ctx.provider.tokenizer)
        run = ctx.campaign.state.part(TRAINING).runs.get(ctx.run_id)
        if run is None or run.job_id is None and run.status != "requested":
            rate = ctx.prices.training_rate(plan.models.policy_base, "dpo", plan.training.lora)
            est = await asyncio.to_thread(train.estimate, ctx.campaign, client, plan, ctx.run_id, file_id, actor=actor,
                                          fallback_rate_usd_per_mtok=rate)
            hold_stage(ctx.campaign, "train", est["estimated_usd"], f"training {ctx.run_id} (Together's estimate)")
            ctx.progress.say(f"train {ctx.run_id}: Together's estimate ${est['estimated_usd']:.4f} for "
                             f"{est['estimated_tokens']:,} tokens; ${est['remaining_budget_usd']:.2f} of the cap left")
            for line in outlook.launch_lines(outlook.launch(ctx.campaign, plan, ctx.run_id)):
                ctx.progress.say(f"train {ctx.run_id}: {line}")
            power = power_text(ctx)
            ctx.progress.say(f"train {ctx.run_id}: {power}")
            ctx.decide("launch_training", "train", ctx.plan.decisions.launch_training,
                       f"launch DPO training {ctx.run_id} (estimated ${est['estimated_usd']:.2f}; {power})",
                       est["estimated_usd"], label=label)
        job_id = await asyncio.to_thread(train.launch, ctx.campaign, client, plan, ctx.run_id, file_id, actor=actor,
                                         label_swap=ctx.label_swap)
        ctx.progress.say(f"train: job {job_id} running")
        run = await asyncio.to_thread(train.monitor, ctx.campaign, client, ctx.run_id, poll_s=0.5,
                                      on_status=lambda s: ctx.progress.say(f"train: job {job_id} {s}"), stop=ctx.stop)
        from dpo_tui.campaign.state.metrics import METRICS

        signs = ctx.campaign.state.part(METRICS).runs.get(ctx.run_id)
        for warning in signs.warnings if signs is not None else []:
            ctx.progress.say(f"train: warning: {warning}")
        if run.status != "completed":
            raise StageFailed(f"training job {run.job_id} ended {run.status}")
    ctx.progress.say(f"train: {run.job_id} completed -> {run.output_model} (${run.price_usd:.4f})")


def resume_point(ctx: Ctx) -> str | None:
    """The first stage this run has work left in (None when every stage is done)."""
    from dpo_tui.campaign.state.eval import EVAL
    from dpo_tui.campaign.state.train import TRAINING

    st = ctx.campaign.state
    split = st.part(SPLIT)
    if st.part(BUDGET).first is None:
        return "budget"
    if not split.frozen:
        return "split"
    from dpo_tui.campaign.state.allocation import planned_rollouts

    r = ctx.plan.rollouts
    planned = planned_rollouts(st, r.allocation, len(split.split.train), r.rollouts_per_task)
    if st.part(ROLLOUTS).finished.get("rollouts", 0) < planned:
        return "rollouts"
    if st.part(PAIRS).export is None:
        return "pairs"
    run = st.part(TRAINING).runs.get(ctx.run_id)
    if run is None or run.status != "completed":
        return "train"
    done = st.part(EVAL).runs.get(ctx.run_id)
    if done is None or done.gate_decision is None:
        return "eval"
    return None


STAGE_FUNCS = {"budget": stage_budget, "split": stage_split, "rollouts": stage_rollouts, "pairs": stage_pairs,
               "train": stage_train, "eval": stage_eval}


@dataclass
class RunResult:
    exit_code: int
    status: str
    message: str
    summary: dict[str, Any]


PER_RUN = ("train", "eval")  # the stages each run of a command has of its own


async def _run_stage(ctx: Ctx, stage: str) -> tuple[int, str, str] | None:
    """One stage of one run; (exit code, status, message) when it ends the command."""
    func = STAGE_FUNCS[stage]

    def said(exc: DpoTuiError) -> str:  # the console's words in the console, the command line's elsewhere
        return exc.console_text if ctx.console else exc.message

    try:
        try:
            await func(ctx)
        finally:  # a stage's end, however it ended, is under a keyed checkpoint
            ctx.campaign.seal("stage")
    except Waiting as exc:
        ctx.stages[stage] = "waiting"
        return EXIT_WAITING, "waiting", said(exc)
    except Stopped as exc:
        ctx.stages[stage] = "stopped"
        return EXIT_WAITING, "stopped", said(exc)
    except BudgetCapReached as exc:
        ctx.stages[stage] = "budget_cap"
        return EXIT_BUDGET_CAP, "budget_cap", said(exc)
    except BackendUnavailable as exc:  # the preflight or the circuit breaker: shown as `dpo-tui: error: ...`
        ctx.stages[stage] = "failed"
        return EXIT_STAGE_FAILED, "error", said(exc)
    except (InputError, StageFailed) as exc:
        ctx.stages[stage] = "failed"
        return EXIT_STAGE_FAILED, "failed", f"{stage}: {said(exc)}"
    except (together.APIError, json.JSONDecodeError, pydantic.ValidationError) as exc:  # malformed bodies too
        ctx.stages[stage] = "failed"
        message = ctx.provider.redactor.redact(str(exc).splitlines()[0] if str(exc) else "")
        return EXIT_STAGE_FAILED, "failed", f"{stage}: the API failed after retries: {type(exc).__name__}: {message}"
    ctx.stages[stage] = "done"
    return None


async def run_stages(ctx: Ctx, until: str | None, also: tuple[Ctx, ...] = ()) -> tuple[int, str, str]:
    """The stages in order for `ctx`'s run; `also`: more runs of this command (e.g. its
    control), trained after it and evaluated after it on the same base endpoint (their
    train and eval stages only: the rollouts and pairs are the campaign's)."""
    ctx.eval_serving.runs = tuple(c.run_id for c in (ctx, *also))
    try:
        for stage in STAGES:
            if stage not in STAGE_FUNCS:
                ctx.stages[stage] = "not built yet"
                continue
            runs = (ctx, *also) if stage in PER_RUN else (ctx,)
            for i, run in enumerate(runs):
                ctx.eval_serving.keep_base = stage == "eval" and i < len(runs) - 1
                ended = await _run_stage(run, stage)
                if ended is not None:
                    return ended
            if stage == until:
                return EXIT_OK, "done", (f"{stage} done; the next stage starts when you ask" if ctx.console
                                         else f"stopped after {stage} as asked (--until {until})")
        return EXIT_OK, "done", "the campaign completed every stage"
    finally:  # the command's shared base endpoint never outlives it
        try:
            if ctx.eval_serving.base(ctx.campaign) is not None:
                from dpo_tui.campaign import serving

                client = await asyncio.to_thread(ctx.client)
                await asyncio.to_thread(serving.stop_all, ctx.campaign, client, reason="the command ended")
        finally:  # on this loop: an open client would be closed by its __del__ on a later one
            await ctx.provider.aclose()


def make_ctx(plan: Plan, plan_path: Path, campaign: Campaign, tasks: PlanTasks, settings: Settings, backend: str,
             *, yes: bool, progress: Progress, run_id: str = RUN_ID, train_plan: Plan | None = None,
             label_swap: bool = False, offers: Any | None = None, client: Any = None) -> Ctx:
    """The stages' context with one provider on `campaign`: the runner and the TUI build it alike.
    Prices: the config's table when it names one, else the catalogue's (`offers`, read live for
    the real API), else the shipped table. `client`: a management client to share (the
    console's), else one is made when first needed."""
    from dpo_tui.provider.offers import offer_prices

    live = offers is not None and offers.origin == "catalogue" and settings.prices_path is None
    catalogue = list(offers.models.values()) if live else None
    book = build_price_book(settings.prices_path, catalogue, catalogue_origin=offers.where if live else "")
    prices = offer_prices(offers) if live else load_prices(settings.prices_path)
    provider = Provider(settings, campaign, book, get_tokenizer(), actor="system")
    return Ctx(plan, plan_path, campaign, tasks, prices, provider, yes, progress, backend,
               settings=settings, run_id=run_id, train_plan=train_plan, label_swap=label_swap, _client=client)


def run_campaign(plan_path: Path, db: Path, *, until: str | None = None, yes: bool = False,
                 progress: Progress | None = None, run_id: str = RUN_ID,
                 training_overrides: dict[str, Any] | None = None, label_swap: bool = False,
                 control: str | None = None) -> RunResult:
    """`control`: also train, in this command, a label-swap control of run `run_id` under this
    id (the same pairs and hyperparameters, preferred and non-preferred exchanged), evaluated
    after it on the same base endpoint."""
    if until is not None and until not in STAGES:
        raise InputError(f"--until must be one of {', '.join(STAGES)}")
    check_run_id(run_id)
    if control is not None and (check_run_id(control) == run_id or label_swap):
        raise InputError(f"--control {control}: a control of run {run_id} needs its own id, and run {run_id} "
                         f"must not be a label-swap control itself")
    plan, _prices, offers = load_checked_plan(plan_path)
    train_plan = training_plan(plan, training_overrides)
    tasks = load_plan_tasks(plan)
    db = db.expanduser().resolve()
    progress = progress or Progress()
    with campaign_lock(db), backend_settings(plan, db) as (settings, backend):
        resumed = db.exists()
        campaign = open_or_create(db, plan, plan_path, plan.backend.kind, tasks)
        resumed = resumed and campaign.state.events > 2  # more than created + this plan
        try:
            ctx = make_ctx(plan, plan_path, campaign, tasks, settings, backend, yes=yes, progress=progress,
                           run_id=run_id, train_plan=train_plan, label_swap=label_swap, offers=offers)
            for warning in offers.warnings:
                progress.say(warning)
            if backend == "simulated":
                progress.say("backend: the embedded Together simulator (simulated: numbers are not Together's)")
            if resumed:
                point = resume_point(ctx)
                progress.say(f"resuming at {point}" if point else "resuming: every stage is done already")
            also = (dataclasses.replace(ctx, run_id=control, label_swap=True, stages={}),) if control else ()
            code, status, message = asyncio.run(run_stages(ctx, until, also))
            summary = summarize(ctx, code, status, message, also)
        finally:
            campaign.close()
    return RunResult(code, status, message, summary)


def _training_metrics(state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The run's last training metrics and the failure signs they show (summary.training_metrics;
    replay's training_metrics has every run's curves)."""
    m = (state.get("training_metrics") or {}).get(run_id) or {}
    return {"run_id": run_id, "steps": m.get("steps", 0), "final": m.get("final", False), "last": m.get("last") or {},
            "warnings": m.get("warnings", [])}


def summarize(ctx: Ctx, code: int, status: str, message: str, also: tuple[Ctx, ...] = ()) -> dict[str, Any]:
    """The command's JSON summary; `eval` is `ctx`'s run's (a control's gate is under `runs`)."""
    from dpo_tui.campaign.state.eval import EVAL

    evals = ctx.campaign.state.part(EVAL).runs
    out = _summary(ctx, code, status, message)
    mine = evals.get(ctx.run_id)
    if also:  # the latest eval may be the control's
        out["eval"] = ({k: mine.to_json()[k] for k in ("suites", "decision", "decided_by")} if mine is not None
                       else {"suites": {}, "decision": None, "decided_by": None})
    out["runs"] = {c.run_id: {"label_swap": c.label_swap, "stages": c.stages,
                              "decision": evals[c.run_id].decision if c.run_id in evals else None}
                   for c in (ctx, *also)}
    return out


def _summary(ctx: Ctx, code: int, status: str, message: str) -> dict[str, Any]:
    state = ctx.campaign.state.to_json()
    return {"campaign": state["campaign"]["name"], "db": str(ctx.campaign.store.path), "backend": ctx.backend,
            "status": status, "exit_code": code, "message": message, "stages": ctx.stages,
            "spend": state["spend"], "budget_cap_usd": state["budget"]["cap_usd"] or ctx.plan.budget.cap_usd,
            "split": {k: state["split"][k] for k in ("frozen", "frozen_hash")} | {
                "train": len(state["split"]["train"]), "test": len(state["split"]["test"])},
            "rollouts": state["rollouts"], "pairs": {k: state["pairs"][k] for k in ("built", "exported", "funnel",
                                                                                      "export_path")},
            "training": {k: state["training"][k] for k in ("job_id", "status", "model", "price_usd")},
            "training_metrics": _training_metrics(state, ctx.run_id),
            "endpoint": {k: state["endpoint"][k] for k in ("minutes", "running")},
            "eval": {k: state["eval"][k] for k in ("suites", "decision", "decided_by")},
            "events": state["events"]}
