"""Budget events and their part of the campaign state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent


@event_type("budget.estimated", version=1)
class BudgetEstimated(Payload):
    """An estimate and every input it came from, so it can be audited against actual spend."""

    inputs: dict[str, Any]
    estimate: dict[str, Any]  # Estimate.to_json()
    prices_source: str
    prices: dict[str, Any] | None = None  # {"origin": "catalogue" | "table", "as_of": DATE, "source"}
    train_tasks: int = Field(ge=0)
    eval_tasks: int = Field(ge=0)


@event_type("budget.pilot_calibrated", version=1)
class PilotCalibrated(Payload):
    pilot: dict[str, Any]  # PilotSummary
    rollout_ids: list[str]  # every finished pilot rollout (the per-task pair yield reads them all)
    # the rollouts `pilot` was computed on (one per task; the repeats only inform the yield);
    # absent in logs written before the pilot had repeats, where it is `rollout_ids`
    cost_rollout_ids: list[str] | None = None
    estimate: dict[str, Any]  # calibrated Estimate.to_json()
    pair_yield: dict[str, Any]
    # the BudgetInputs the estimate was computed from (the warm-up's and the pilot's measured
    # figures among them); absent in logs written before it was logged
    inputs: dict[str, Any] | None = None


@event_type("budget.stage_refused", version=1)
class StageRefused(Payload):
    """A stage held against the cap before it started (or went on), and refused (campaign/cap.py)."""

    stage: str
    what: str
    estimate_usd: float = Field(ge=0)
    remaining_usd: float
    cap_usd: float


@dataclass
class BudgetState:
    first: dict[str, Any] | None = None  # the first (uncalibrated) estimate
    latest: dict[str, Any] | None = None
    calibrated: dict[str, Any] | None = None
    pilot: dict[str, Any] | None = None
    pilot_rollout_ids: list[str] = field(default_factory=list)  # the rollouts the pilot calibrated on
    pair_yield: dict[str, Any] | None = None
    cap_usd: float | None = None
    cap_set_by: str | None = None  # the actor of the cap in force (plan, or operator:<name>)
    plan_cap_seen: float | None = None  # budget.cap_usd of the latest recorded plan
    # the plan's value when the cap in force was set (or the first seen after it): a plan value
    # other than this one is a change of the plan's own cap, which then applies
    plan_cap_baseline: float | None = None
    refused: list[dict[str, Any]] = field(default_factory=list)  # stages the cap refused

    def to_json(self) -> dict[str, Any]:
        return {"cap_usd": self.cap_usd, "cap_set_by": self.cap_set_by, "estimate": self.first, "latest": self.latest,
                "calibrated": self.calibrated, "pilot": self.pilot, "pair_yield": self.pair_yield,
                "refused": self.refused}


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
    b.pilot_rollout_ids = list(event.payload["rollout_ids"])
    b.pair_yield = event.payload["pair_yield"]


@on("budget.cap_set")
def _cap(state: CampaignState, event: StoredEvent) -> None:
    b: BudgetState = state.part(BUDGET)
    b.cap_usd, b.cap_set_by = event.payload["cap_usd"], event.actor
    b.plan_cap_baseline = event.payload["cap_usd"] if event.actor == "plan" else b.plan_cap_seen


@on("budget.stage_refused")
def _refused(state: CampaignState, event: StoredEvent) -> None:
    state.part(BUDGET).refused.append(dict(event.payload))


@on("plan.recorded")
def _plan_cap(state: CampaignState, event: StoredEvent) -> None:
    b: BudgetState = state.part(BUDGET)
    b.plan_cap_seen = (event.payload["plan"].get("budget") or {}).get("cap_usd")
    if b.cap_usd is not None and b.plan_cap_baseline is None:
        b.plan_cap_baseline = b.plan_cap_seen  # the first plan value seen after an operator's cap is no change


def plan_cap_applies(b: BudgetState, plan_cap_usd: float) -> bool:
    """The one rule for the cap in force: the operator's latest cap stands until the plan's
    own `budget.cap_usd` changes after it; the first plan value seen after an operator's cap
    (init, then cap, then run --plan) is not a change. Without any cap, the plan's applies."""
    if b.cap_usd is None:
        return True
    if b.cap_set_by == "plan":
        return plan_cap_usd != b.cap_usd
    return b.plan_cap_baseline is not None and plan_cap_usd != b.plan_cap_baseline
