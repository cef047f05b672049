"""What an operator action would do next, read from the log: the figures a confirmation shows
before the money is spent (the console asks with them; `dpo-tui run` says the same in its
waiting message). Pure reads of the campaign's state: nothing here appends.

Each refuses, with the message both front ends show, when the action cannot start yet.
"""

from __future__ import annotations

from typing import Any, get_args

from dpo_tui.campaign.pilot import pilot_size, rollouts_usd
from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.allocation import planned_rollouts
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.campaign.state.eval import EVAL, Decision
from dpo_tui.campaign.state.pairs import PAIRS
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.prices import PriceTable


def cap_in_force(campaign: Campaign, plan: Plan | None) -> float | None:
    """The cap every call is held against: the guard's (the one rule), else the plan's."""
    cap = campaign.state.parts["budget_guard"].cap_usd
    return cap or (plan.budget.cap_usd if plan is not None else None)


def fits_cap(estimate_usd: float | None, cap_usd: float, spend_usd: float) -> tuple[bool, float]:
    """(whether `estimate_usd` fits what the cap leaves, what it leaves): the check a stage's
    start makes (budget.stage_refused otherwise), asked before the operator confirms it."""
    left = cap_usd - spend_usd
    return estimate_usd is None or estimate_usd <= left + 1e-9, left


def cap(campaign: Campaign, plan: Plan | None) -> dict[str, Any]:
    """The cap in force, who set it, and what is spent and estimated against it."""
    st = campaign.state
    b = st.part(BUDGET)
    latest = b.calibrated or b.latest
    return {"cap_usd": cap_in_force(campaign, plan), "set_by": b.cap_set_by, "spend_usd": st.parts["spend"].total_usd,
            "estimate_usd": latest["total_usd"] if latest else None,
            "plan_cap_usd": plan.budget.cap_usd if plan is not None else None}


def built_on_split(campaign: Campaign) -> dict[str, Any]:
    """What was done on the frozen split (an unfreeze leaves it in the log, tied to its hash)."""
    st = campaign.state
    r, p = st.part(ROLLOUTS), st.part(PAIRS)
    part = st.parts.get("training")
    return {"rollouts": dict(r.finished), "pairs_built": p.built is not None, "exported": p.export is not None,
            "training_runs": len(part.runs) if part is not None else 0}


def rollouts(campaign: Campaign, plan: Plan) -> dict[str, Any]:
    """What "start rollouts" would do next and what it is estimated to cost (from the logged
    estimates): the pilot first, then the rest after the operator's go. `hold_usd` is what the
    stage's start holds against the cap (the pilot's share, or the unfinished rollouts')."""
    st = campaign.state
    b, r, split = st.part(BUDGET), st.part(ROLLOUTS), st.part(SPLIT)
    if not split.frozen:
        raise InputError("approve (freeze) the split first: rollouts run on the frozen train split")
    latest = b.calibrated or b.latest
    stage_usd = latest["by_stage"]["rollouts"]["usd"] if latest else None
    total = planned_rollouts(st, plan.rollouts.allocation, len(split.split.train), plan.rollouts.rollouts_per_task)
    pilot_n = pilot_size(plan, len(split.split.train))
    pilot_done = b.calibrated is not None or pilot_n == 0
    finished = r.finished.get("rollouts", 0)
    pilot_usd = rollouts_usd(latest, pilot_n, total) if stage_usd and total else None
    return {"phase": "rollouts" if pilot_done else "pilot", "pilot_rollouts": pilot_n, "total": total,
            "finished": finished, "stage_usd": stage_usd, "calibrated": b.calibrated is not None,
            "pilot_usd": pilot_usd,
            "hold_usd": pilot_usd if not pilot_done else rollouts_usd(latest or _zero(), total - finished, total),
            "spend_usd": st.parts["spend"].total_usd, "cap_usd": cap_in_force(campaign, plan),
            "approved": st.part(PLAN).has("approve_rollouts"), "allocation": plan.rollouts.allocation}


def _zero() -> dict[str, Any]:
    return {"by_stage": {"rollouts": {"usd": 0.0}}}


def training(campaign: Campaign, plan: Plan, run_id: str, *, decision: str, stale: str | None,
             overrides: dict[str, Any]) -> dict[str, Any]:
    """What "train" would do next for `run_id`: prepare (upload and Together's price
    estimate, free) or launch (the estimate to confirm against the remaining budget).
    `decision` is the run's launch decision; `stale` why the export is stale (None: current)."""
    st = campaign.state
    if st.part(PAIRS).export is None:
        raise InputError("export the pairs first (Pairs, e): training uploads the exported JSONL")
    part = st.parts.get("training")
    run = part.runs.get(run_id) if part is not None else None
    status = getattr(run, "status", None) if run is not None else None
    est = getattr(run, "estimated_usd", None) if run is not None else None
    return {"phase": "launch" if est is not None else "prepare", "estimated_usd": est,
            "stale": None if status is not None else stale, "status": status,
            "launched": st.part(PLAN).has(decision), "spend_usd": st.parts["spend"].total_usd,
            "cap_usd": cap_in_force(campaign, plan), "run_id": run_id, "decision": decision,
            "overrides": dict(overrides)}


def evaluation(campaign: Campaign, plan: Plan, prices: PriceTable, run_id: str, *, decision: str) -> dict[str, Any]:
    """What "eval" would do for `run_id`: what it starts (one shared deployment or base and
    tuned apart), the endpoint minutes' estimate against the cap. Refused before the run's job
    completed."""
    from dpo_tui.campaign.budget import run_shares_deployment, serving_words

    st = campaign.state
    part = st.parts.get("training")
    run = part.runs.get(run_id) if part is not None else None
    if run is None or getattr(run, "status", None) != "completed":
        raise InputError(f"the eval compares base against the tuned model: finish training {run_id} first")
    latest = st.part(BUDGET).calibrated or st.part(BUDGET).latest or {"by_stage": {}}
    endpoint = latest["by_stage"].get("endpoint", {}).get("usd")
    instance = prices.dedicated.get(plan.models.eval_base or plan.models.policy_base)
    per_min = prices.instances[instance].price_cents_per_hour / 100 / 60 if instance in prices.instances else 0.0
    shared = run_shares_deployment(plan, prices, run)
    endpoints = 1 if shared else 2
    return {"serving": serving_words(shared), "endpoints": endpoints,"endpoint_usd": endpoint, "spend_usd": st.parts["spend"].total_usd,
            "cap_usd": cap_in_force(campaign, plan),
            "minutes": (endpoint or 0) / (endpoints * per_min) if per_min else 0.0, "approved": st.part(PLAN).has(decision),
            "run_id": run_id, "decision": decision}


def gate(campaign: Campaign) -> dict[str, Any] | None:
    """The latest eval run's gate: its run id, decision, criterion, reason and who decided
    (None before the gate has decided), and the decisions an override can choose."""
    e = campaign.state.part(EVAL)
    run = e.runs.get(e.latest or "")
    if run is None or run.gate_decision is None:
        return None
    return {"run_id": e.latest, "decision": run.decision, "criterion": run.criterion, "reason": run.reason,
            "decided_by": run.decided_by, "overridden": run.overridden,
            "choices": [d for d in get_args(Decision) if d != run.decision]}


def rollout_stage(campaign: Campaign, plan: Plan | None) -> dict[str, Any]:
    """The paid rollout stage's progress: finished against planned (the frozen train split x
    rollouts per task; None before the split is frozen or without a plan), and `unfinished`,
    the warning pairs built or exported now carry (None when the stage is complete)."""
    st = campaign.state
    split = st.part(SPLIT)
    finished = st.part(ROLLOUTS).finished.get("rollouts", 0)
    planned = (planned_rollouts(st, plan.rollouts.allocation, len(split.split.train), plan.rollouts.rollouts_per_task)
               if plan is not None and split.frozen and split.split is not None else None)
    short = planned is not None and finished < planned
    return {"finished": finished, "planned": planned,
            "unfinished": (f"the rollout stage is unfinished: {finished}/{planned} rollouts finished; pairs come "
                           f"only from the finished ones") if short else None}


def build(campaign: Campaign, plan: Plan | None) -> dict[str, Any]:
    """What "build the pairs" would work from: the rollout stage's counts (`rollout_stage`)."""
    return {"rollouts": rollout_stage(campaign, plan), "rebuild": campaign.state.part(PAIRS).built is not None}


def export(campaign: Campaign, *, stale: str | None, plan: Plan | None = None) -> dict[str, Any] | None:
    """What "export the pairs" would write: the kept pairs, where (the campaign file's folder),
    why the current export is stale (None: current, or none yet) and the rollout stage's
    counts; None before the pairs are built."""
    built = campaign.state.part(PAIRS).built
    if built is None:
        return None
    return {"kept": sum(1 for x in built["pairs"] if x["dropped_by"] is None), "stale": stale,
            "out_dir": str(campaign.store.path.parent.resolve()), "rollouts": rollout_stage(campaign, plan)}


def exported_files(x: dict[str, Any]) -> list[str]:
    """The files an export (a pairs.exported payload) wrote, each with its sha256's head."""
    return [f"{x[f'{k}_path']} (sha256 {x[f'{k}_sha256'][:12]})" for k in ("together", "trl", "manifest")]


LAUNCH_HP = ("n_epochs", "learning_rate", "dpo_beta", "batch_size", "max_seq_length", "lora", "lora_r",
             "lora_alpha", "warmup_ratio", "validation_share")


def launch(campaign: Campaign, plan: Plan, run_id: str) -> dict[str, Any]:
    """What a launch of `run_id` commits to, from its price estimate and the upload it priced:
    the exported pairs against the plan's target, the base model, the hyperparameters priced
    (the plan's when none were logged), and the training file (name, Together's file id, the
    sha256 of the bytes uploaded)."""
    from dpo_tui.campaign.train import hyperparameters

    st = campaign.state
    part = st.parts.get("training")
    run = part.runs.get(run_id) if part is not None else None
    upload = next((up for up in part.files.values() if run is not None and up["file_id"] == run.file_id), None) \
        if part is not None else None
    x = st.part(PAIRS).export
    hp = dict(getattr(run, "estimated_hyperparameters", None) or hyperparameters(plan))
    return {"pairs": x["pairs"] if x else 0, "target_pairs": plan.pairs.target_pairs,
            "model": plan.models.policy_base, "hyperparameters": hp,
            "file_id": getattr(run, "file_id", None), "filename": upload["filename"] if upload else None,
            "file_sha256": (upload.get("sha256") or upload["export_sha256"]) if upload else None,
            "export_sha256": x["together_sha256"] if x else None}


def launch_lines(d: dict[str, Any]) -> list[str]:
    """`launch`'s figures as the confirmation (and `dpo-tui run`'s waiting message) says them."""
    hp = d["hyperparameters"]
    shown = ", ".join(f"{k}={hp[k]:g}" if isinstance(hp[k], float) else f"{k}={hp[k]}"
                      for k in LAUNCH_HP if k in hp and (k not in ("lora_r", "lora_alpha") or hp.get("lora")))
    file = (f"{d['filename']} (file {d['file_id']}, sha256 {d['file_sha256'][:16]})" if d["filename"]
            else f"file {d['file_id'] or '(not uploaded yet)'}")
    return [f"pairs: {d['pairs']} against the plan's target of {d['target_pairs']}", f"base model: {d['model']}",
            f"hyperparameters: {shown}", f"training file: {file}"]
