"""Audit's `spend-by-stage` rule: spend by stage recomputed from the calls and the endpoint
billing, compared with every figure the log states about spend.

The recomputation, kept apart from the `spend` fold the cap, `replay` and `report` read:
  pilot       the completed calls of the rollouts `budget.pilot_calibrated` names (part of rollouts);
              its stated figures are checked on the rollouts it was calibrated on (`cost_rollout_ids`)
  rollouts,   each completed call's usage x its logged price (its idempotency key counted once),
  eval        plus each orphaned call's reservation, under the call's stage
  training    each finished job's price (and its nanodollars, where logged)
  endpoint    each eval endpoint's booked minutes (the most its `endpoint.billed` / `endpoint.stopped`
              name) x its logged price per hour; a dedicated generator's count under rollouts
  management  the API's management calls (whoami, upload, fine-tune, endpoints): 0, not billed

Compared at:
  budget.pilot_calibrated  the pilot's rollouts, calls, tokens per call and cost per rollout
  train.price_estimated    remaining_budget_usd = cap - spend - calls in flight
  budget.stage_refused     remaining_usd, the same
  budget.cap_reached       committed_usd = spend
  chain.checkpoint         the spend fold by stage (what `report` prints as actual) = the
                           recomputation; at a stage's checkpoint, every endpoint that served
                           a call has booked at least the minutes from its start to that call
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dpo_tui.campaign.rederive import DERIVATION, _same
from dpo_tui.campaign.state.train import endpoint_stage
from dpo_tui.events.core import SPEND
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.store import StoredEvent

METER_LAG_S = 30.0  # the meter books a minute within one tick (0.5 s) of its start; a kill or a busy loop may delay it
STAGES = ("pilot", "rollouts", "eval", "training", "endpoint", "management")


@dataclass
class SpendDerivation:
    calls: dict[str, float] = field(default_factory=dict)  # call stage (+ training) -> USD
    completed: set[str] = field(default_factory=set)
    pilot_usd: float = 0.0
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> price, start, booked, served
    # minutes of endpoints whose id started again later (a resumed eval may be given the same
    # id): what they booked stays spent
    earlier_endpoint_usd: dict[str, float] = field(default_factory=dict)  # spend stage -> USD

    def endpoint_usd(self, stage: str = "endpoint") -> float:
        return math.fsum([self.earlier_endpoint_usd.get(stage, 0.0),
                          *(_booked_usd(e) for e in self.endpoints.values() if e["stage"] == stage)])

    def spend_by_stage(self) -> dict[str, float]:
        out = {s: 0.0 for s in STAGES}
        out.update(self.calls)
        out["pilot"], out["endpoint"] = self.pilot_usd, self.endpoint_usd()
        generator = self.endpoint_usd("rollouts")
        if generator:
            out["rollouts"] = math.fsum([out["rollouts"], generator])
        return out

    def total_usd(self) -> float:
        return math.fsum(v for k, v in self.spend_by_stage().items() if k != "pilot")  # the pilot is in rollouts

    def to_json(self) -> dict[str, Any]:
        return {"by_stage": self.spend_by_stage(), "total_usd": self.total_usd()}


SPEND_DERIVATION = state_part("spend_derivation", factory=SpendDerivation, to_json=SpendDerivation.to_json)


def _ts(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _add(d: SpendDerivation, stage: str, usd: float) -> None:
    d.calls[stage] = d.calls.get(stage, 0.0) + usd


@on("call.completed")
def _completed(state: CampaignState, event: StoredEvent) -> None:
    from dpo_tui.provider.events import cost_usd

    d: SpendDerivation = state.part(SPEND_DERIVATION)
    p = event.payload
    if p["idempotency_key"] in d.completed:
        return
    d.completed.add(p["idempotency_key"])
    _add(d, p["stage"], cost_usd(p["usage"], p["price"]))
    for ep in d.endpoints.values():  # the endpoint that served it: its chat model, running
        if ep["chat_model"] == p["model"] and not ep["stopped"]:
            ep["served"] = event.ts


@on("call.orphaned")
def _orphaned(state: CampaignState, event: StoredEvent) -> None:
    _add(state.part(SPEND_DERIVATION), event.payload["stage"], event.payload["reserved_usd"])


@on("train.job_finished")
def _trained(state: CampaignState, event: StoredEvent) -> None:
    _add(state.part(SPEND_DERIVATION), "training", event.payload["price_usd"])


@on("budget.pilot_calibrated")
def _pilot(state: CampaignState, event: StoredEvent) -> None:
    by_rollout = state.part(DERIVATION).by_rollout
    state.part(SPEND_DERIVATION).pilot_usd = math.fsum(by_rollout.get(r, [0, 0, 0, 0.0])[3]
                                                       for r in event.payload["rollout_ids"])


def _booked_usd(ep: dict[str, Any]) -> float:
    return ep["booked"] * ep["price_cents_per_hour"] / 100 / 60


@on("endpoint.started")
def _ep_started(state: CampaignState, event: StoredEvent) -> None:
    p = event.payload
    part = state.part(SPEND_DERIVATION)
    if p["endpoint_id"] in part.endpoints:
        earlier = part.endpoints[p["endpoint_id"]]
        part.earlier_endpoint_usd[earlier["stage"]] = part.earlier_endpoint_usd.get(earlier["stage"], 0.0) + \
            _booked_usd(earlier)
    part.endpoints[p["endpoint_id"]] = {
        "chat_model": p.get("chat_model"), "started_at": p["started_at"], "booked": 0, "served": None,
        "price_cents_per_hour": p["price_cents_per_hour"], "stopped": False, "stage": endpoint_stage(p.get("role"))}


@on("endpoint.billed", "endpoint.stopped")
def _ep_booked(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(SPEND_DERIVATION).endpoints.get(event.payload["endpoint_id"])
    if ep is not None and not ep["stopped"]:
        ep["booked"] = max(ep["booked"], event.payload["minutes"])
        ep["stopped"] = event.type == "endpoint.stopped"


# -- the rule -------------------------------------------------------------------------------


@invariant("spend-by-stage", "budget.pilot_calibrated")
def _pilot_stated(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    calibrated_on = p.get("cost_rollout_ids") or p["rollout_ids"]
    if not set(calibrated_on) <= set(p["rollout_ids"]):
        return "the pilot says it was calibrated on rollouts that are not among its rollouts"
    sums = [state.part(DERIVATION).by_rollout.get(r, [0, 0, 0, 0.0]) for r in calibrated_on]
    n, calls = len(sums), sum(s[0] for s in sums)
    if not n:
        return "a pilot calibrated on no rollouts"
    again = {"rollouts": n, "calls": calls, "cost_per_rollout": math.fsum(s[3] for s in sums) / n,
             "prompt_tokens_per_call": sum(s[1] for s in sums) / max(calls, 1),
             "completion_tokens_per_call": sum(s[2] for s in sums) / max(calls, 1)}
    logged = {k: p["pilot"].get(k) for k in again}
    if not _same(logged, again):
        bad = sorted(k for k in again if not _same(logged[k], again[k]))
        return (f"the pilot's {', '.join(bad)} {[logged[k] for k in bad]} are not what its rollouts' calls in the "
                f"log give {[again[k] for k in bad]}")
    return None


def _left(state: CampaignState) -> float:
    """What the cap in force left by the recomputed spend (campaign/cap.py's formula)."""
    cap = state.part("budget_guard").cap_usd
    spent = state.part(SPEND_DERIVATION).total_usd()
    return -spent if cap is None else cap - spent - state.part("calls").in_flight_usd()


@invariant("spend-by-stage", "train.price_estimated", "budget.stage_refused", "budget.cap_reached")
def _stated_left(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    if event.type == "budget.cap_reached":
        stated, again, what = p["committed_usd"], state.part(SPEND_DERIVATION).total_usd(), "committed spend"
    else:
        key = "remaining_budget_usd" if event.type == "train.price_estimated" else "remaining_usd"
        stated, again, what = p[key], _left(state), "budget left"
    if not _same(round(stated, 9), round(again, 9)):
        return (f"{event.type} states {what} ${stated:.6f}, but the calls and billing in the log before it give "
                f"${again:.6f}")
    return None


@invariant("spend-by-stage", "chain.checkpoint")
def _spend_matches(state: CampaignState, event: StoredEvent) -> str | None:
    d: SpendDerivation = state.part(SPEND_DERIVATION)
    again, folded = d.spend_by_stage(), state.part(SPEND).by_stage
    bad = sorted(s for s in set(folded) | {k for k, v in again.items() if v and k != "pilot"}
                 if abs(folded.get(s, 0.0) - again.get(s, 0.0)) > 1e-9)
    if bad:
        return (f"spend by stage {', '.join(f'{s} ${folded.get(s, 0.0):.6f}' for s in bad)} is not what the calls and "
                f"billing give ({', '.join(f'{s} ${again.get(s, 0.0):.6f}' for s in bad)})")
    if event.payload.get("reason") != "stage":
        return None
    for eid, ep in d.endpoints.items():
        if ep["served"] is None:
            continue
        seconds = (_ts(ep["served"]) - _ts(ep["started_at"])).total_seconds() - METER_LAG_S
        proven = max(1, math.ceil(seconds / 60))
        if ep["booked"] < proven:
            return (f"endpoint {eid} served calls until {ep['served']}: at least {proven} minute(s) are billable, "
                    f"but its billing in the log books {ep['booked']}")
    return None
