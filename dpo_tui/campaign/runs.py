"""Training runs an operator starts from the same frozen pairs: a new run's id and
hyperparameters checked by the plan's own rules (`dpo-tui train --run-id` and the console's
n on Train), the next free id, and the run a reopened console carries on with."""

from __future__ import annotations

import json
from typing import Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.runids import RUN_ID, TRAINING_OVERRIDES, check_run_id, training_plan
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign


def _runs(campaign: Campaign) -> dict[str, Any]:
    part = campaign.state.parts.get("training")
    return part.runs if part is not None else {}


def check_new_run(campaign: Campaign, plan: Plan, run_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """Validate a new run's id and its hyperparameters as typed (numbers as a TOML plan would
    have them; the plan's rules name the field); returns the overrides of the plan's values."""
    run_id = run_id.strip()
    check_run_id(run_id)
    if run_id in _runs(campaign):
        raise InputError(f"run id {run_id!r} is taken: every run has its own id")
    values: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            values[key] = json.loads(text.strip())
        except ValueError:
            raise InputError(f"training.{key}: {text.strip()!r} is not a number") from None
    trained = training_plan(plan, values).training
    return {k: getattr(trained, k) for k in raw if getattr(trained, k) != getattr(plan.training, k)}


def next_run_id(campaign: Campaign) -> str:
    taken = set(_runs(campaign))
    n = 2
    while f"run-{n}" in taken:
        n += 1
    return f"run-{n}"


def resumed_run(campaign: Campaign, plan: Plan) -> tuple[str, dict[str, Any], bool]:
    """(run id, hyperparameter overrides, trains on the label-swapped control) of the newest
    run in the log, with what it was launched (or priced) with; the plan's run-1 without one."""
    from dpo_tui.campaign.train import trains_on_control

    runs = list(_runs(campaign).values())
    if not runs:
        return RUN_ID, {}, False
    run = runs[-1]
    hp = run.hyperparameters or run.estimated_hyperparameters
    overrides = {k: hp[k] for k in TRAINING_OVERRIDES if k in hp and hp[k] != getattr(plan.training, k)}
    return run.run_id, overrides, trains_on_control(campaign, run.run_id)
