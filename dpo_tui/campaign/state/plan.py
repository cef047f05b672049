"""The plan a campaign runs under, and operator/plan decisions that are not a stage's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent


@event_type("plan.recorded", version=1)
class PlanRecorded(Payload):
    """The whole validated plan and its hash; a changed plan is recorded again, never edited."""

    hash: str = Field(min_length=64, max_length=64)
    path: str
    plan: dict[str, Any]
    previous_hash: str | None = None
    backend: str
    changed: list[str] = []  # the dotted fields that differ from the previous plan (empty for the first)


@event_type("decision.recorded", version=1)
class DecisionRecorded(Payload):
    """A go/no-go an operator (or the plan, under --yes) took, with its reason and what it cost."""

    decision: str  # e.g. approve_rollouts
    stage: str
    reason: str = ""
    estimate_usd: float | None = None


@dataclass
class PlanState:
    hash: str | None = None
    plan: dict[str, Any] | None = None
    backend: str | None = None
    versions: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan hash -> gate_protocol(plan)

    def has(self, decision: str) -> bool:
        return any(d["decision"] == decision for d in self.decisions)

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "backend": "simulated" if self.backend == "simulator" else self.backend,
                "versions": self.versions, "decisions": list(self.decisions)}


PLAN = state_part("plan", factory=PlanState, to_json=PlanState.to_json)


@on("plan.recorded")
def _recorded(state: CampaignState, event: StoredEvent) -> None:
    p: PlanState = state.part(PLAN)
    p.hash, p.plan, p.backend = event.payload["hash"], event.payload["plan"], event.payload["backend"]
    p.versions += 1
    p.protocols[p.hash] = gate_protocol(p.plan)


def gate_protocol(plan: dict[str, Any]) -> dict[str, Any]:
    """What must not change between training and the gate: the rollback criteria and the eval
    protocol (seeds, suites, k, the held-out suites, the design and its looks). Any other plan field may change."""
    ev, suites = plan.get("eval") or {}, plan.get("suites") or {}
    design = ev.get("design", "fixed")  # (plans recorded before the field: fixed)
    return {"rollback": plan.get("rollback"), "seeds": ev.get("seeds"), "suites": ev.get("suites"), "k": ev.get("k"),
            "heldout": suites.get("heldout"), "heldout_limit": suites.get("heldout_limit"), "design": design,
            "looks": ev.get("looks") if design == "sequential" else None}


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two plans (as recorded)."""
    if old is None:
        return []
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


@on("decision.recorded")
def _decided(state: CampaignState, event: StoredEvent) -> None:
    state.part(PLAN).decisions.append({**event.payload, "actor": event.actor, "seq": event.seq, "ts": event.ts})
