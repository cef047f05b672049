"""Audit's re-derivations: what the campaign concluded, recomputed from what it observed.

The hash chain and the checkpoints say the log was not changed; these rules say its
conclusions follow from its observations, so a forged conclusion fails even when the whole
chain was re-hashed and no key is at hand. Each is an audit rule of its own:

  eval-derivation    each eval.results: per-task outcomes and per-arm metrics recomputed from
                     the eval rollouts in the log, and the comparison recomputed from those
                     outcomes with the plan's seed, k and alpha (the runner's own functions)
  gate-derivation    each decision.gate: the decision recomputed by the gate (domain.gate via
                     campaign.evaluation) from the recomputed comparisons and the rollback
                     criteria of the plan training was requested under
                     (a sequential eval's: its last look's, campaign/rederive_looks.py, which
                     also re-derives every eval.look under look-derivation)
  funnel-derivation  each pairs.built: the funnel recounted from each pair's dropped_by, and
                     the operator's accept/reject decisions honoured
  spend-derivation   each rollout.finished: its calls, tokens and cost are the sums of its
                     completed calls; each endpoint.stopped: cost = minutes x the logged price,
                     minutes no more than its logged start-to-stop time bills
  export-derivation  each pairs.exported: its pair count and funnel are the latest build's,
                     its pair_ids the build's kept pairs; the exact bytes of its Together
                     JSONL, TRL JSONL and manifest are rebuilt from the log alone (the prompts
                     from `tasks.snapshot` and `task.baseline`, the answers from the pairs'
                     rollouts' final programs, with the writer's own `pairs.export_blobs`)
                     and hash to the logged sha256s; its files, where they still exist, too
  spend-by-stage     (campaign/rederive_spend.py) spend by stage recomputed from the calls and
                     the endpoint billing, against every figure the log states about it
Heavy modules (the plan, the stats, serving) are imported only when a rule runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpo_tui.campaign.state.eval import EVAL
from dpo_tui.campaign.state.pairs import PAIRS
from dpo_tui.campaign.state.train import ENDPOINTS, TRAINING
from dpo_tui.domain.pairs import FILTERS, HARD_FILTERS
from dpo_tui.events.fold import CampaignState, Note, invariant, on, state_part
from dpo_tui.events.store import StoredEvent

TOLERANCE = 1e-9


@dataclass
class Derivation:
    """What the re-derivations need beyond the stages' own state parts."""

    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan hash -> the plan as recorded
    call_rollout: dict[str, str] = field(default_factory=dict)  # idempotency key -> rollout id
    completed: set[str] = field(default_factory=set)
    by_rollout: dict[str, list[float]] = field(default_factory=dict)  # rollout -> [calls, prompt, completion, usd]
    programs: dict[str, str] = field(default_factory=dict)  # rollout id -> final program
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> its first logged baseline report

    def to_json(self) -> dict[str, Any]:
        return {"plans": len(self.plans), "rollouts": len(self.by_rollout)}


DERIVATION = state_part("derivation", factory=Derivation, to_json=Derivation.to_json)


@on("plan.recorded")
def _plan(state: CampaignState, event: StoredEvent) -> None:
    state.part(DERIVATION).plans[event.payload["hash"]] = event.payload["plan"]


@on("call.started")
def _call_started(state: CampaignState, event: StoredEvent) -> None:
    state.part(DERIVATION).call_rollout[event.payload["idempotency_key"]] = event.payload["rollout"]


@on("call.completed")
def _call_completed(state: CampaignState, event: StoredEvent) -> None:
    d: Derivation = state.part(DERIVATION)
    p = event.payload
    key = p["idempotency_key"]
    rollout = d.call_rollout.get(key)
    if rollout is None or key in d.completed:
        return
    d.completed.add(key)
    sums = d.by_rollout.setdefault(rollout, [0, 0, 0, 0.0])
    sums[0] += 1
    sums[1] += p["usage"]["prompt_tokens"]
    sums[2] += p["usage"]["completion_tokens"]
    sums[3] += p["cost_usd"]


@on("task.baseline")
def _baseline(state: CampaignState, event: StoredEvent) -> None:
    state.part(DERIVATION).baselines.setdefault(event.payload["task_id"], event.payload["report"])


@on("rollout.finished")
def _rollout_finished(state: CampaignState, event: StoredEvent) -> None:
    state.part(DERIVATION).programs.setdefault(event.payload["rollout_id"], event.payload["final_program"])


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON, numbers within TOLERANCE (the log stores floats by repr, exactly)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if not _same(a.get(k), b.get(k)))
    return ", ".join(keys[:4]) or "?"


def _training_plan(state: CampaignState, run_id: str, fallback_hash: str | None):
    """The plan training `run_id` was requested under (its rollback criteria were fixed then)."""
    from pydantic import ValidationError

    from dpo_tui.campaign.plan import Plan

    run = state.part(TRAINING).runs.get(run_id)
    plan_hash = (run.plan_hash if run is not None else None) or fallback_hash
    raw = state.part(DERIVATION).plans.get(plan_hash)
    if raw is None:
        return None, f"the plan {str(plan_hash)[:12]} named by run {run_id} was never recorded"
    try:
        return Plan.model_validate(raw), None
    except ValidationError as exc:
        return None, f"the recorded plan {plan_hash[:12]} does not read back: {exc.errors()[0]['msg']}"


def _recomputed(state: CampaignState, plan, run_id: str, suite: str, logged: dict) -> tuple[Any, str | None]:
    from dpo_tui.campaign import evaluation
    from dpo_tui.errors import InputError

    try:
        per_task, metrics = evaluation.outcomes(state, run_id, suite)
    except InputError as exc:
        return None, f"{suite}: {exc.message}"
    if not _same(per_task, logged["per_task"]):
        return None, (f"{suite}: the per-task outcomes differ from the eval rollouts in the log "
                      f"(tasks {_diff(per_task, logged['per_task'])})")
    if not _same(metrics, logged["metrics"]):
        return None, f"{suite}: the metrics differ from the eval rollouts in the log ({_diff(metrics, logged['metrics'])})"
    comparison = evaluation.suite_comparison(plan, per_task)
    if not _same(comparison.to_json(), logged["comparison"]):
        return None, (f"{suite}: the comparison is not what the per-task outcomes give "
                      f"({_diff(comparison.to_json(), logged['comparison'])} differ)")
    return comparison, None


@invariant("eval-derivation", "eval.results")
def _eval_derived(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    from dpo_tui.campaign.state.plan import PLAN

    plan, error = _training_plan(state, p["run_id"], state.part(PLAN).hash)
    if plan is None:
        return error
    _, error = _recomputed(state, plan, p["run_id"], p["suite"], p)
    return f"eval.results of run {p['run_id']}: {error}" if error else None


@invariant("gate-derivation", "decision.gate")
def _gate_derived(state: CampaignState, event: StoredEvent) -> str | None:
    from dpo_tui.campaign import evaluation

    p = event.payload
    run = state.part(EVAL).runs.get(p["run_id"])
    if run is None or not run.suites:
        return f"a gate decision for run {p['run_id']} without eval.results to derive it from"
    plan, error = _training_plan(state, p["run_id"], p["plan_hash"])
    if plan is None:
        return error
    results = {}
    for suite in sorted(run.suites):
        comparison, error = _recomputed(state, plan, p["run_id"], suite, run.suites[suite])
        if error:
            return f"the gate's evidence does not recompute: {error}"
        results[suite] = comparison
    try:
        criteria, decision = evaluation.gate_decision(plan, results)
    except ValueError as exc:
        return f"the gate cannot be recomputed: {exc}"
    if plan.eval.design == "sequential":  # the decision is its last look's (campaign/rederive_looks.py)
        from dpo_tui.campaign.rederive_looks import gate_problem

        problem = gate_problem(state, plan, p)
        if problem:
            return problem
    elif decision.decision != p["decision"] or decision.criterion != p["criterion"]:
        return (f"the log says {p['decision']} ({p['criterion']}), but the eval results and the criteria fixed "
                f"before training give {decision.decision} ({decision.criterion}): {decision.reason}")
    fixed = dataclasses.asdict(criteria)
    if not _same({k: fixed.get(k) for k in p["criteria"]}, p["criteria"]):
        return f"the gate's logged criteria {p['criteria']} are not the training plan's {fixed}"
    return None


@invariant("funnel-derivation", "pairs.built")
def _funnel_derived(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    pairs, funnel = p["pairs"], p["funnel"]
    unknown = sorted({x["dropped_by"] for x in pairs if x["dropped_by"] is not None} - set(FILTERS))
    if unknown:
        return f"pairs dropped by unknown filters {unknown}"
    expect, left = {"built": len(pairs)}, len(pairs)
    for name in FILTERS:
        left -= sum(1 for x in pairs if x["dropped_by"] == name)
        if name in funnel:
            expect[name] = left
    if not _same(expect, funnel):
        return f"the funnel {funnel} is not the pairs' own count {expect}"
    decisions = state.part(PAIRS).decisions
    for x in pairs:
        d = decisions.get(x["pair_id"])
        if d == "reject" and x["dropped_by"] is None:
            return f"pair {x['pair_id']} was rejected by the operator but is kept"
        if d == "accept" and x["dropped_by"] is not None and x["dropped_by"] not in HARD_FILTERS:
            return f"pair {x['pair_id']} was accepted by the operator but dropped by {x['dropped_by']}"
        if d != "reject" and x["dropped_by"] == "manual":
            return f"pair {x['pair_id']} is dropped as rejected, but no operator rejected it"
    return None


@invariant("spend-derivation", "rollout.finished")
def _rollout_spend(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    calls, prompt, completion, usd = state.part(DERIVATION).by_rollout.get(p["rollout_id"], [0, 0, 0, 0.0])
    logged = [p["calls"], p["prompt_tokens"], p["completion_tokens"], p["cost_usd"]]
    if not _same([calls, prompt, completion, usd], logged):
        return (f"rollout {p['rollout_id']}: calls/tokens/cost {logged} are not the sums of its completed calls "
                f"{[calls, prompt, completion, round(usd, 9)]}")
    return None


@invariant("spend-derivation", "endpoint.stopped")
def _endpoint_spend(state: CampaignState, event: StoredEvent) -> str | None:
    from dpo_tui.campaign.serving import billed_minutes, minute_cost

    p = event.payload
    ep = state.part(ENDPOINTS).by_id.get(p["endpoint_id"])
    if ep is None:
        return f"endpoint {p['endpoint_id']} stopped but never started in the log"
    if not _same(p["cost_usd"], minute_cost(p["minutes"], ep["price_cents_per_hour"])):
        return (f"endpoint {p['endpoint_id']}: cost {p['cost_usd']} is not {p['minutes']} minutes at "
                f"{ep['price_cents_per_hour']} cents/hour")
    try:
        most = billed_minutes(ep["started_at"], p["stopped_at"])
    except ValueError:
        return f"endpoint {p['endpoint_id']}: its start or stop time does not parse"
    if p["minutes"] > most:
        return f"endpoint {p['endpoint_id']}: {p['minutes']} minutes billed, but it ran {most} started minutes"
    return None


def _file_sha(path: str) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class CannotRebuild(Exception):
    """The log lacks what the rebuild needs (a log written before tasks were snapshotted)."""


def rebuilt_export(state: CampaignState, x: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of export `x` (a pairs.exported payload) rebuilt from the log alone: the pairs it
    names in the latest build, their tasks as logged, their baseline reports, their rollouts'
    final programs, through the writer's own `pairs.export_blobs`. Raises ValueError when the log
    contradicts the export, CannotRebuild when it lacks a task's snapshot or baseline."""
    from dpo_tui.campaign.pairs import ExportLine, export_blobs, prompt_for
    from dpo_tui.campaign.state.tasks import logged_task

    d: Derivation = state.part(DERIVATION)
    built = state.part(PAIRS).built or {"pairs": []}
    by_id = {p["pair_id"]: p for p in built["pairs"]}
    kept = [p["pair_id"] for p in built["pairs"] if p["dropped_by"] is None]
    ids = x.get("pair_ids")
    ids = kept if ids is None else ids  # an older log: the writer wrote the kept pairs in build order
    if sorted(ids) != sorted(kept):
        raise ValueError(f"its pair_ids are not the kept pairs of the latest build ({len(ids)} named, {len(kept)} kept)")
    lines = []
    for pid in ids:
        p = by_id[pid]
        task, report = logged_task(state, p["task_id"]), d.baselines.get(p["task_id"])
        if task is None or report is None:
            raise CannotRebuild(f"task {p['task_id']} has no {'tasks.snapshot' if task is None else 'task.baseline'}")
        programs = [d.programs.get(p["chosen"]), d.programs.get(p["rejected"])]
        if None in programs:
            raise ValueError(f"pair {pid}: rollout {p['chosen'] if programs[0] is None else p['rejected']} "
                             "never finished in the log")
        lines.append(ExportLine(pid, p["task_id"], p["chosen"], p["rejected"], p["chosen_score"], p["rejected_score"],
                                prompt_for(task, report), *programs))
    return export_blobs(lines, bool(x.get("label_swap")))


@invariant("export-derivation", "pairs.exported")
def _export_derived(state: CampaignState, event: StoredEvent) -> str | None:
    from dpo_tui.domain.export import sha256

    p = event.payload
    built = state.part(PAIRS).built
    if built is None:
        return "an export without pairs.built"
    kept = [x for x in built["pairs"] if x["dropped_by"] is None]
    if p["pairs"] != len(kept) or not _same(p["funnel"], built["funnel"]):
        return f"the export names {p['pairs']} pairs and funnel {p['funnel']}; the latest build kept {len(kept)}"
    for kind in ("together", "trl", "manifest"):
        sha = _file_sha(p[f"{kind}_path"])
        if sha is not None and sha != p[f"{kind}_sha256"]:
            return f"the {kind} file {p[f'{kind}_path']} has sha256 {sha[:12]}, not the logged {p[f'{kind}_sha256'][:12]}"
    try:
        blobs = rebuilt_export(state, p)
    except CannotRebuild as exc:
        return Note(f"the export cannot be rebuilt from this log ({exc}): only its files' sha256 were checked")
    except ValueError as exc:
        return f"the export cannot be what the log holds: {exc}"
    for kind in ("together", "trl", "manifest"):
        again = sha256(blobs[kind])
        if again != p[f"{kind}_sha256"]:
            return (f"the {kind} JSONL rebuilt from the log (tasks as logged, baselines, the pairs' final programs) "
                    f"has sha256 {again[:12]}, not the logged {p[f'{kind}_sha256'][:12]}")
    return None
