"""Budget events and their part of the campaign state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.store import StoredEvent
from dpo_tui.events.types import Payload, event_type


@event_type("budget.estimated", version=1)
class BudgetEstimated(Payload):
    """An estimate and every input it came from, so it can be audited against actual spend."""

    inputs: dict[str, Any]
    estimate: dict[str, Any]  # Estimate.to_json()
    prices_source: str
    train_tasks: int = Field(ge=0)
    eval_tasks: int = Field(ge=0)


@event_type("budget.pilot_calibrated", version=1)
class PilotCalibrated(Payload):
    pilot: dict[str, Any]  # PilotSummary
    rollout_ids: list[str]
    estimate: dict[str, Any]  # calibrated Estimate.to_json()
    pair_yield: dict[str, Any]


@dataclass
class BudgetState:
    first: dict[str, Any] | None = None  # the first (uncalibrated) estimate
    latest: dict[str, Any] | None = None
    calibrated: dict[str, Any] | None = None
    pilot: dict[str, Any] | None = None
    pair_yield: dict[str, Any] | None = None
    cap_usd: float | None = None
    cap_set_by: str | None = None  # the actor of the cap in force (plan, or operator:<name>)
    plan_cap_usd: float | None = None  # the last cap the plan set: a changed plan sets its new one

    def to_json(self) -> dict[str, Any]:
        return {"cap_usd": self.cap_usd, "cap_set_by": self.cap_set_by, "estimate": self.first, "latest": self.latest,
                "calibrated": self.calibrated, "pilot": self.pilot, "pair_yield": self.pair_yield}


BUDGET = state_part("budget", factory=BudgetState, to_json=BudgetState.to_json)


@on("budget.estimated")
def _estimated(state: CampaignState, event: StoredEvent) -> None:
    b: BudgetState = state.part(BUDGET)
    b.latest = event.payload["estimate"]
    if b.first is None:
        b.first = event.payload["estimate"]


@on("budget.pilot_calibrated")
def _calibrated(state: CampaignState, event: StoredEvent) -> None:
    b: BudgetState = state.part(BUDGET)
    b.calibrated = event.payload["estimate"]
    b.pilot = event.payload["pilot"]
    b.pair_yield = event.payload["pair_yield"]


@on("budget.cap_set")
def _cap(state: CampaignState, event: StoredEvent) -> None:
    b: BudgetState = state.part(BUDGET)
    b.cap_usd, b.cap_set_by = event.payload["cap_usd"], event.actor
    if event.actor == "plan":
        b.plan_cap_usd = event.payload["cap_usd"]
