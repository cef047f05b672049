"""The yield allocation's events and its part of the state (domain/allocation.py decides).

Each `rollouts.allocated` is one task's decision in one round: the rollouts it is given
(floor, yield), or why it gets no more (stopped, ceiling). A round's events are appended in
one batch before any rollout they allocate starts. The fold records, at each round's first
event, the finished paid rollouts the round was decided on (its basis) and the allocation
before it, so that audit re-derives the round from exactly those (campaign/rederive_alloc.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:
    from dpo_tui.events.store import StoredEvent


@event_type("rollouts.allocated", version=1)
class RolloutsAllocated(Payload):
    round: int = Field(ge=1)
    decisions: int = Field(ge=1)  # how many decisions the round has (this is one of them)
    task_id: str
    rollouts: int = Field(ge=0)  # given in this round
    allocated: int = Field(ge=0)  # the task's rollouts in all after this round
    expected_gain: float  # expected new kept pairs from those given (stopped, ceiling: from one more)
    expected_pairs: float  # expected kept pairs of the task with `allocated` rollouts
    usd_per_rollout: float
    reason: Literal["floor", "yield", "stopped", "ceiling"]


@dataclass
class AllocationState:
    rounds: int = 0
    allocated: dict[str, int] = field(default_factory=dict)  # task -> rollouts allocated in all
    closed: dict[str, str] = field(default_factory=dict)  # task -> stopped | ceiling
    by_round: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # round -> its decisions (payloads)
    basis: dict[int, list[str]] = field(default_factory=dict)  # round -> finished paid rollouts it was decided on
    before: dict[int, tuple[dict[str, int], dict[str, str]]] = field(default_factory=dict)  # round -> (allocated, closed)
    heads: dict[int, str] = field(default_factory=dict)  # round -> hash of its first event (names the log before it)

    def total(self) -> int:
        return sum(self.allocated.values())

    def complete(self, total: int) -> bool:
        """Nothing more to allocate: the total is spent or every task is closed."""
        return self.rounds >= 1 and (self.total() >= total or all(t in self.closed for t in self.allocated))

    def to_json(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "allocated": dict(sorted(self.allocated.items())), "total": self.total(),
                "closed": dict(sorted(self.closed.items())),
                "by_round": {str(r): [{k: d[k] for k in ("task_id", "rollouts", "allocated", "expected_gain",
                                                          "reason")} for d in ds]
                             for r, ds in sorted(self.by_round.items())}}


ALLOCATION = state_part("allocation", factory=AllocationState, to_json=AllocationState.to_json)


def finished_paid(state: CampaignState) -> list[str]:
    """The paid (train) rollouts finished now, by id."""
    return sorted(rid for rid, rec in state.part(ROLLOUTS).by_id.items()
                  if rec.stage == "rollouts" and rec.finished is not None)


@on("rollouts.allocated")
def _allocated(state: CampaignState, event: StoredEvent) -> None:
    a: AllocationState = state.part(ALLOCATION)
    p = event.payload
    r = p["round"]
    if r not in a.by_round:
        a.by_round[r] = []
        a.basis[r] = finished_paid(state)
        a.before[r] = (dict(a.allocated), dict(a.closed))
        a.heads[r] = event.hash
        a.rounds = max(a.rounds, r)
    a.by_round[r].append(dict(p) | {"seq": event.seq})
    a.allocated[p["task_id"]] = p["allocated"]
    if p["reason"] in ("stopped", "ceiling"):
        a.closed[p["task_id"]] = p["reason"]


def planned_rollouts(state: CampaignState, allocation: str, train: int, rollouts_per_task: int) -> int:
    """The paid rollouts the stage runs: train x rollouts_per_task, or under yield allocation
    once it is complete, what it allocated (a task stopped early leaves its share unspent)."""
    total = train * rollouts_per_task
    a: AllocationState = state.part(ALLOCATION)
    if allocation == "yield" and a.complete(total):
        return a.total()
    return total
