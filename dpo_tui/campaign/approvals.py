"""The operator's go for a paid stage, as one service: which decision the stage waits for now,
the estimate its confirmation shows, and the cap check it must pass. The console records it
after its dialog; `dpo-tui approve` records it headless (then `dpo-tui run` goes on without
`--yes`). Both refuse what does not fit the cap, with the same words."""

from __future__ import annotations

from typing import Any

from dpo_tui.campaign import outlook
from dpo_tui.campaign.decisions import record_decision
from dpo_tui.campaign.plan import Plan
from dpo_tui.errors import EXIT_BUDGET_CAP, DpoTuiError, InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.prices import PriceTable

STAGES = ("rollouts", "train", "eval")


def refused_by_cap(what: str, estimate_usd: float, cap_usd: float, spend_usd: float) -> str | None:
    """Why `what` cannot start under the cap (None when it fits): the console's words."""
    fits, left = outlook.fits_cap(estimate_usd, cap_usd, spend_usd)
    if fits:
        return None
    return (f"{what} is estimated at ${estimate_usd:.3f}, but only ${max(left, 0):.3f} of the ${cap_usd:.2f} cap "
            "remains: it would be refused before it starts. Raise the cap to go on, then start it again.")


def pending(campaign: Campaign, plan: Plan, prices: PriceTable, stage: str, run_id: str, *,
            label_swap: bool = False) -> dict[str, Any]:
    """The decision `stage` waits for: {"decision", "stage", "what", "estimate_usd", "hold_usd",
    "cap_usd", "spend_usd", "commits" (a launch's pairs, model, hyperparameters and file, as its
    confirmation words them)}; InputError when the stage waits for none (already approved, or a
    step that costs nothing must run first)."""
    from dpo_tui.campaign.runner import run_decision
    from dpo_tui.campaign.train import stale_export

    commits: list[str] = []  # what the go commits to beyond its estimate (a launch: pairs, model, file)
    if stage == "rollouts":
        p = outlook.rollouts(campaign, plan)
        if p["phase"] == "pilot":
            decision, what, est, hold = "run_pilot", "The pilot", p["pilot_usd"], p["hold_usd"]
        elif p["approved"]:
            raise InputError("the rollouts are already approved (approve_rollouts is in the log)")
        else:
            decision, what, est, hold = "approve_rollouts", "The rollouts", p["stage_usd"], p["hold_usd"]
    elif stage == "train":
        decision = run_decision("launch_training", run_id)
        p = outlook.training(campaign, plan, run_id, decision=decision, stale=stale_export(campaign, label_swap=label_swap),
                               overrides={})
        if p["launched"]:
            raise InputError(f"{run_id}'s launch is already approved ({decision} is in the log)")
        if p["stale"]:
            raise InputError(f"the export is stale ({p['stale']}): export the pairs again (dpo-tui pairs export) "
                             "before approving the launch",
                             console=f"the export is stale ({p['stale']}): export the pairs again (e on Pairs) first")
        if p["phase"] == "prepare":
            raise InputError("nothing to launch yet: `dpo-tui run --until train` uploads the pairs and asks Together's "
                             "price (free), which this approves",
                             console="nothing to launch yet: t on Train uploads the pairs and asks Together's price "
                             "(free) first")
        what, est = f"Training {run_id}", p["estimated_usd"]
        hold = est
        commits = outlook.launch_lines(outlook.launch(campaign, plan, run_id))
    elif stage == "eval":
        decision = run_decision("run_eval", run_id)
        p = outlook.evaluation(campaign, plan, prices, run_id, decision=decision)
        if p["approved"]:
            raise InputError(f"{run_id}'s eval is already approved ({decision} is in the log)")
        what, est, hold = "The eval's endpoint minutes", p["endpoint_usd"], p["endpoint_usd"]
    else:
        raise InputError(f"--stage: one of {', '.join(STAGES)}, not {stage!r}")
    return {"decision": decision, "stage": stage, "what": what, "estimate_usd": est, "hold_usd": hold,
            "cap_usd": p["cap_usd"], "spend_usd": p["spend_usd"], "commits": commits}


def approve(campaign: Campaign, plan: Plan, prices: PriceTable, stage: str, run_id: str, *, reason: str,
            actor: str, label_swap: bool = False) -> dict[str, Any]:
    """Record the go `stage` waits for, with the estimate it was given on; refused (exit 3)
    when that does not fit what the cap leaves."""
    p = pending(campaign, plan, prices, stage, run_id, label_swap=label_swap)
    if p["hold_usd"] is not None and p["cap_usd"] is not None:
        why = refused_by_cap(p["what"], p["hold_usd"], p["cap_usd"], p["spend_usd"])
        if why:
            raise DpoTuiError(why, exit_code=EXIT_BUDGET_CAP)
    record_decision(campaign, p["decision"], stage, reason=reason, actor=actor,
                    estimate_usd=p["estimate_usd"])
    return p
