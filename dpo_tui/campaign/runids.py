"""Training-run ids and the per-run names of decisions and hyperparameters: light (no SDK),
so the console's session can resume its run before the runner is imported."""

from __future__ import annotations

from typing import Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.errors import InputError

RUN_ID = "run-1"  # the plan's training run; more runs from the same export get their own ids


def run_decision(decision: str, run_id: str) -> str:
    """The name a per-run decision is logged under: run-1's plain, another run's suffixed."""
    return decision if run_id == RUN_ID else f"{decision}:{run_id}"


TRAINING_OVERRIDES = ("dpo_beta", "learning_rate", "n_epochs")  # what another run may change (dpo-tui train)


def training_plan(plan: Plan, overrides: dict[str, Any] | None) -> Plan:
    """The plan with one run's training hyperparameters changed, validated like the plan."""
    if not overrides:
        return plan
    from pydantic import ValidationError

    from dpo_tui.campaign.plan import TrainingSection

    try:
        training = TrainingSection.model_validate({**plan.training.model_dump(), **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"training.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return plan.model_copy(update={"training": training})


def check_run_id(run_id: str) -> str:
    if not run_id.replace("-", "").isalnum() or len(run_id) > 20:
        raise InputError(f"run id {run_id!r}: letters, digits and '-', at most 20 characters")
    return run_id
