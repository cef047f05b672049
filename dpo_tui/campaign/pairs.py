"""The pairs stage: build pairs from finished rollouts, run the filter funnel, take the
operator's accept/reject decisions, and export Together's and TRL's JSONL with a manifest."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.decisions import record_decision
from dpo_tui.campaign.state.pairs import PAIRS, PairsState, decisions_sha256, ordered_funnel
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.campaign.state.tasks import logged_task
from dpo_tui.campaign.suites import PlanTasks
from dpo_tui.domain.export import check_together_jsonl, jsonl_bytes, program_reply, sha256, together_line, trl_line
from dpo_tui.domain.pairs import Pair, PairFilters, RolloutOutcome, build_pairs, filter_pairs
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent
from dpo_tui.tasks import agent

TOKEN_RULE = ("prompt + chosen + rejected tokens (Qwen chat template) <= training.max_seq_length: Together "
              "trains DPO with preferred and non-preferred sharing the context length (DESIGN.md stage 4)")


def _frozen_split(campaign: Campaign):
    s = campaign.state.part(SPLIT)
    if not s.frozen or s.split is None:
        raise InputError("the split is not approved (frozen) yet: pairs need a frozen split")
    return s


def rollout_outcomes(campaign: Campaign, train: set[str]) -> list[RolloutOutcome]:
    out = []
    for rec in campaign.state.part(ROLLOUTS).by_id.values():
        if rec.stage != "rollouts" or rec.finished is None or rec.task_id not in train:
            continue
        f = campaign.store.event_at(rec.finished["seq"]).payload
        out.append(RolloutOutcome(rec.rollout_id, rec.task_id, f["final_program"], f["tests_passed"], f["tests"],
                                  f["passed"], f["iterations"]))
    return out


def first_prompt(campaign: Campaign, task, templates: agent.PromptTemplates | None = None) -> list[dict]:
    """The first prompt the rollouts of `task` saw, from the log alone: the task as logged in
    `tasks.snapshot` (not the suite file as it is now) and its logged baseline report."""
    task = logged_task(campaign.state, task.id) or task
    seq = campaign.state.part(ROLLOUTS).baselines.get(task.id)
    if seq is None:
        raise InputError(f"task {task.id} has no baseline test report in the log")
    return prompt_for(task, campaign.store.event_at(seq).payload["report"], templates)


def prompt_for(task, baseline_report: dict[str, Any], templates: agent.PromptTemplates | None = None) -> list[dict]:
    """The first prompt of `task` given its logged baseline report (`task.baseline`): the one
    function the export writer and audit's rebuild both use."""
    from dpo_tui.campaign.specs import report_from_dict

    return agent.initial_messages(task, report_from_dict(baseline_report), templates)


@dataclass(frozen=True)
class ExportLine:
    """One kept pair as the export writes it: its lineage, its prompt and both final programs."""

    pair_id: str
    task_id: str
    chosen_rollout: str
    rejected_rollout: str
    chosen_score: float
    rejected_score: float
    prompt: list[dict]
    chosen_program: str
    rejected_program: str


def export_blobs(lines: list[ExportLine], label_swap: bool) -> dict[str, bytes]:
    """The exact bytes of the Together JSONL, the TRL JSONL and the manifest for `lines`, in
    order. The writer (`export`) writes these; audit rebuilds them from the log and compares
    their sha256 with the logged ones (campaign/rederive.py, export-derivation)."""

    def answers(x: ExportLine) -> tuple[str, str]:
        good, bad = program_reply(x.chosen_program), program_reply(x.rejected_program)
        return (bad, good) if label_swap else (good, bad)

    together = [together_line(x.prompt, *answers(x)) for x in lines]
    trl = [trl_line(x.prompt, *answers(x)) for x in lines]
    manifest = [{"line": i + 1, "pair_id": x.pair_id, "task_id": x.task_id, "chosen_rollout": x.chosen_rollout,
                 "rejected_rollout": x.rejected_rollout, "chosen_score": x.chosen_score,
                 "rejected_score": x.rejected_score, "label_swap": label_swap} for i, x in enumerate(lines)]
    return {"together": jsonl_bytes(together), "trl": jsonl_bytes(trl), "manifest": jsonl_bytes(manifest)}


def plan_filters(plan: Plan) -> PairFilters:
    """The plan's pair filters, as pairs.built records them."""
    return PairFilters(min_margin=plan.pairs.min_margin, max_seq_length=plan.training.max_seq_length,
                       per_task_cap=plan.pairs.per_task_cap,
                       near_duplicate_threshold=plan.pairs.near_duplicate_threshold)


def filters_in_force(campaign: Campaign, plan: Plan) -> PairFilters:
    """The plan's filters with the operator's thresholds (pairs.thresholds_set) over them."""
    t = campaign.state.part(PAIRS).thresholds
    return replace(plan_filters(plan), **t) if t else plan_filters(plan)


def check_thresholds(min_margin: float, per_task_cap: int) -> None:
    """InputError naming the threshold out of range."""
    if not 0 <= min_margin <= 1:
        raise InputError(f"min margin: {min_margin:g} is not in 0..1 (the score gap, as a fraction of the tests)")
    if per_task_cap < 1:
        raise InputError(f"per-task cap: {per_task_cap} is not at least 1 (pairs per task at most)")


def set_thresholds(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, *, min_margin: float,
                   per_task_cap: int, reason: str, actor: str) -> dict[str, int] | None:
    """The operator's thresholds as a logged decision: pairs.thresholds_set and, when pairs are
    built, the funnel rebuilt with them, in one transaction. Returns the new funnel (None
    before any build: the next build uses them). An export from before becomes stale."""
    check_thresholds(min_margin, per_task_cap)
    if not reason.strip():
        raise InputError("a reason is required to set the pair thresholds (it is logged with your name)")
    decided = NewEvent("pairs.thresholds_set", {"min_margin": float(min_margin), "per_task_cap": int(per_task_cap),
                                                "reason": reason}, actor)
    if campaign.state.part(PAIRS).built is None:
        campaign.append_batch([decided])
        return None
    rebuilt = build_event(campaign, plan, tasks, tokenizer, actor,
                          filters=replace_filters(plan, min_margin, per_task_cap))
    campaign.append_batch([decided, rebuilt])
    return ordered_funnel(rebuilt.payload["funnel"])


def replace_filters(plan: Plan, min_margin: float, per_task_cap: int) -> PairFilters:
    return replace(plan_filters(plan), min_margin=float(min_margin), per_task_cap=int(per_task_cap))


def compute_pairs(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer,
                  filters: PairFilters | None = None, extra_decisions: dict[str, str] | None = None):
    split = _frozen_split(campaign)
    train = set(split.split.train)
    pairs = build_pairs(rollout_outcomes(campaign, train))
    prompts = {tid: first_prompt(campaign, tasks.pool[tid]) for tid in {p.task_id for p in pairs}}

    def pair_tokens(p: Pair) -> int:
        prompt = int(tokenizer.count_chat(prompts[p.task_id], add_generation_prompt=True))
        return prompt + int(tokenizer.count_completion(program_reply(p.chosen.program))) + \
            int(tokenizer.count_completion(program_reply(p.rejected.program)))

    # the test split's programs as logged at split time (`tasks.snapshot`), not the suite file now
    test_programs = [t.buggy_program for t in (logged_task(campaign.state, tid) or tasks.pool.get(tid)
                                               for tid in split.split.test) if t is not None]
    state: PairsState = campaign.state.part(PAIRS)
    result = filter_pairs(pairs, filters or filters_in_force(campaign, plan), pair_tokens=pair_tokens,
                          test_tasks=set(split.split.test),
                          test_programs=test_programs, decisions={**state.decisions, **(extra_decisions or {})})
    infos = [{"pair_id": p.pair_id, "task_id": p.task_id, "chosen": p.chosen.rollout_id,
              "rejected": p.rejected.rollout_id, "chosen_score": p.chosen.score, "rejected_score": p.rejected.score,
              "tokens": pair_tokens(p), "dropped_by": result.dropped.get(p.pair_id)} for p in pairs]
    return pairs, result, infos, prompts


def preview_funnel(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, *, min_margin: float,
                   per_task_cap: int) -> dict[str, int]:
    """The funnel these thresholds would give, in the funnel's order (nothing is logged: the
    thresholds in force are what pairs.built records). InputError naming a threshold out of range."""
    check_thresholds(min_margin, per_task_cap)
    filters = replace_filters(plan, min_margin, per_task_cap)
    _pairs, result, _infos, _prompts = compute_pairs(campaign, plan, tasks, tokenizer, filters=filters)
    return ordered_funnel(result.funnel)


def build_event(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, actor: str,
                extra_decisions: dict[str, str] | None = None, filters: PairFilters | None = None) -> NewEvent:
    """pairs.built under `filters` (default: the thresholds in force)."""
    split = _frozen_split(campaign)
    filters = filters or filters_in_force(campaign, plan)
    _, result, infos, _ = compute_pairs(campaign, plan, tasks, tokenizer, filters=filters,
                                        extra_decisions=extra_decisions)
    return NewEvent("pairs.built", {"split_hash": split.frozen_hash, "filters": filters.__dict__,
                                    "token_rule": TOKEN_RULE, "funnel": result.funnel, "pairs": infos}, actor)


def build(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, *, actor: str) -> dict[str, Any]:
    campaign.append_batch([build_event(campaign, plan, tasks, tokenizer, actor)])
    return campaign.state.part(PAIRS).built


def decide(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, pair_id: str, decision: str, *,
           reason: str, actor: str) -> None:
    built = campaign.state.part(PAIRS).built
    if built is None:
        raise InputError("no pairs built yet: the pairs stage builds them from the finished rollouts")
    if pair_id not in {p["pair_id"] for p in built["pairs"]}:
        raise InputError(f"unknown pair {pair_id!r} (`dpo-tui pairs list` shows the ids)")
    if decision not in ("accept", "reject"):
        raise InputError("a pair is accepted or rejected")
    if not reason.strip():
        raise InputError(f"a reason is required to {decision} a pair (it is logged with your name)")
    decided = NewEvent("pairs.decided", {"pair_id": pair_id, "decision": decision, "reason": reason}, actor)
    # the decision and the funnel it changes land together, in one transaction
    rebuilt = build_event(campaign, plan, tasks, tokenizer, actor, extra_decisions={pair_id: decision})
    campaign.append_batch([decided, rebuilt])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def dataset_report(kept: list[Pair], infos: list[dict]) -> dict[str, Any]:
    tokens = [i["tokens"] for i in infos if i["dropped_by"] is None]
    margins = [p.margin for p in kept]
    per_task = Counter(p.task_id for p in kept)

    def dist(xs):
        return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)} if xs else None

    return {"pairs": len(kept), "tasks": len(per_task), "pairs_per_task": dict(sorted(per_task.items())),
            "tokens": dist(tokens), "margin": dist(margins)}


def export(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, *, actor: str,
           out_dir: Path | None = None, label_swap: bool = False, reason: str = "") -> dict[str, Any]:
    """Write the kept pairs in Together's and TRL's formats with a manifest, logging the pair
    decisions they reflect. `label_swap` writes the control: the same pairs with preferred and
    non-preferred exchanged. An export that replaces a stale one names it (`supersedes`)."""
    split = _frozen_split(campaign)
    state: PairsState = campaign.state.part(PAIRS)
    previous = state.control_export if label_swap else state.export
    stale = state.staleness(previous)
    _, result, infos, prompts = compute_pairs(campaign, plan, tasks, tokenizer)
    if not result.kept:
        raise InputError(f"no pairs survive the filters (funnel {result.funnel}); nothing to export")

    blobs = export_blobs([ExportLine(p.pair_id, p.task_id, p.chosen.rollout_id, p.rejected.rollout_id, p.chosen.score,
                                     p.rejected.score, prompts[p.task_id], p.chosen.program, p.rejected.program)
                          for p in result.kept], label_swap)
    data = blobs["together"]
    check = check_together_jsonl(data)
    if not check.ok:
        line, rule = check.problems[0]
        raise InputError(f"the export breaks Together's preference format at line {line}: {rule}")
    out_dir = out_dir or campaign.store.path.parent
    stem = f"{campaign.store.path.stem}.{'swapped-' if label_swap else ''}pairs-{sha256(data)[:12]}"
    paths = {"together": out_dir / f"{stem}.together.jsonl", "trl": out_dir / f"{stem}.trl.jsonl",
             "manifest": out_dir / f"{stem}.manifest.jsonl"}
    for key, path in paths.items():
        _write_atomic(path, blobs[key])
    payload = {"split_hash": split.frozen_hash, "pairs": len(result.kept),
               "together_path": str(paths["together"].resolve()), "together_sha256": sha256(blobs["together"]),
               "trl_path": str(paths["trl"].resolve()), "trl_sha256": sha256(blobs["trl"]),
               "manifest_path": str(paths["manifest"].resolve()), "manifest_sha256": sha256(blobs["manifest"]),
               "funnel": result.funnel, "report": dataset_report(result.kept, infos), "label_swap": label_swap,
               "decisions_sha256": decisions_sha256(state.decisions),
               "decisions_seq": state.decided[-1][0] if state.decided else None,
               "pair_ids": [p.pair_id for p in result.kept],
               "supersedes": previous["together_sha256"] if stale else None,
               "reason": "; ".join(r for r in (reason, f"re-export: {stale}" if stale else "") if r)}
    campaign.append("pairs.exported", payload, actor=actor)
    return payload


def export_decision(campaign: Campaign) -> str:
    """The name the go for the next export is logged under: `export_pairs` for the first,
    `export_pairs:N` for the Nth (a re-export after the decisions changed is a new decision)."""
    n = sum(1 for x in campaign.state.part(PAIRS).exports if not x.get("label_swap"))
    return "export_pairs" if n == 0 else f"export_pairs:{n + 1}"


def export_decided(campaign: Campaign, plan: Plan, tasks: PlanTasks, tokenizer, *, actor: str,
                   reason: str) -> dict[str, Any]:
    """An operator's export (the console's e, `dpo-tui pairs export`): the decision to export,
    then the export (a re-export when the current one is stale). Refused before pairs are built."""
    state: PairsState = campaign.state.part(PAIRS)
    if state.built is None:
        raise InputError("no pairs built yet: the pairs stage builds them from the finished rollouts")
    record_decision(campaign, export_decision(campaign), "pairs",
                    reason=f"{reason} (funnel {ordered_funnel(state.built['funnel'])})", actor=actor)
    return export(campaign, plan, tasks, tokenizer, actor=actor, reason=reason)


def pair_rows(campaign: Campaign) -> list[dict[str, Any]]:
    """Every built pair with its id, task, scores, the filter that dropped it, the operator's
    decision, its status (kept, dropped, rejected) and whether the current export holds it."""
    state: PairsState = campaign.state.part(PAIRS)
    if state.built is None:
        return []
    exported = exported_pair_ids(state.export)
    rows = []
    for p in state.built["pairs"]:
        decision = state.decisions.get(p["pair_id"])
        dropped = p["dropped_by"]
        status = "kept" if dropped is None else ("rejected" if dropped == "manual" else "dropped")
        rows.append({"id": p["pair_id"], "task_id": p["task_id"], "chosen": p["chosen"], "rejected": p["rejected"],
                     "chosen_score": p["chosen_score"], "rejected_score": p["rejected_score"], "tokens": p["tokens"],
                     "filter": dropped, "decision": decision, "status": status,
                     "exported": p["pair_id"] in exported})
    return rows


def exported_pair_ids(x: dict[str, Any] | None) -> set[str]:
    """The pair ids an export holds: from its log entry, or (older logs) its manifest when the
    file is still the one logged."""
    if x is None:
        return set()
    if x.get("pair_ids") is not None:
        return set(x["pair_ids"])
    path = Path(x["manifest_path"])
    if not path.exists() or sha256(path.read_bytes()) != x["manifest_sha256"]:
        return set()
    return {line["pair_id"] for line in read_manifest(str(path))}


def read_manifest(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
