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
  funnel-derivation  each pairs.built: the funnel recounted from each pair's dropped_by, and
                     the operator's accept/reject decisions honoured
  spend-derivation   each rollout.finished: its calls, tokens and cost are the sums of its
                     completed calls; each endpoint.stopped: cost = minutes x the logged price,
                     minutes no more than its logged start-to-stop time bills
  export-derivation  each pairs.exported: its pair count and funnel are the latest build's;
                     its files, where they still exist, hash to the logged sha256s, the
                     manifest names the kept pairs, and each line's answers are the logged
                     rollouts' final programs (the prompts are rebuilt from the suite files,
                     which the log does not hold: they are not compared)
Heavy modules (the plan, the stats, serving) are imported only when a rule runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpo_tui.campaign.state_eval import EVAL
from dpo_tui.campaign.state_pairs import PAIRS
from dpo_tui.campaign.state_train import ENDPOINTS, TRAINING
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
    from dpo_tui.campaign.state_plan import PLAN

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
    if decision.decision != p["decision"] or decision.criterion != p["criterion"]:
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


@invariant("export-derivation", "pairs.exported")
def _export_derived(state: CampaignState, event: StoredEvent) -> str | None:
    from dpo_tui.domain.export import program_reply

    p = event.payload
    built = state.part(PAIRS).built
    if built is None:
        return "an export without pairs.built"
    kept = [x for x in built["pairs"] if x["dropped_by"] is None]
    if p["pairs"] != len(kept) or not _same(p["funnel"], built["funnel"]):
        return f"the export names {p['pairs']} pairs and funnel {p['funnel']}; the latest build kept {len(kept)}"
    missing = []
    for kind in ("together", "trl", "manifest"):
        sha = _file_sha(p[f"{kind}_path"])
        if sha is None:
            missing.append(kind)
        elif sha != p[f"{kind}_sha256"]:
            return f"the {kind} file {p[f'{kind}_path']} has sha256 {sha[:12]}, not the logged {p[f'{kind}_sha256'][:12]}"
    if "manifest" not in missing:
        lines = [json.loads(line) for line in Path(p["manifest_path"]).read_text().splitlines() if line.strip()]
        expect = [(x["pair_id"], x["task_id"], x["chosen"], x["rejected"]) for x in kept]
        got = [(m.get("pair_id"), m.get("task_id"), m.get("chosen_rollout"), m.get("rejected_rollout")) for m in lines]
        if sorted(got) != sorted(expect):
            return "the manifest's pairs are not the kept pairs of the latest build"
        if any(bool(m.get("label_swap")) != bool(p.get("label_swap")) for m in lines):
            return "the manifest's label_swap differs from the export's"
        if "together" not in missing:
            programs = state.part(DERIVATION).programs
            rows = [json.loads(line) for line in Path(p["together_path"]).read_text().splitlines() if line.strip()]
            if len(rows) != len(lines):
                return f"the Together file has {len(rows)} lines, the manifest {len(lines)}"
            for m, row in zip(lines, rows, strict=True):
                good = program_reply(programs.get(m["chosen_rollout"], ""))
                bad = program_reply(programs.get(m["rejected_rollout"], ""))
                if p.get("label_swap"):
                    good, bad = bad, good
                try:
                    answers = (row["preferred_output"][-1]["content"], row["non_preferred_output"][-1]["content"])
                except (KeyError, IndexError, TypeError):
                    return f"line {m['line']} of the Together file is not a preference pair"
                if answers != (good, bad):
                    return (f"line {m['line']} of the Together file: its answers are not the final programs of "
                            f"rollouts {m['chosen_rollout']} / {m['rejected_rollout']} in the log")
    if missing:
        return Note(f"the export's {', '.join(missing)} file(s) are gone: their sha256 cannot be checked")
    return None
