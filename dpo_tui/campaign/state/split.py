"""Split events and their part of the campaign state.

The split is proposed (seeded), edited by the operator (move, exclude), then approved:
approval freezes it and logs its hash. Any change after that needs an explicit
`split.unfrozen` decision with a reason; audit flags edits to a frozen split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from dpo_tui.domain.split import Split, exclude, move
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent


class TaskInfo(Payload):
    id: str
    suite: str
    name: str
    tests: int
    content_hash: str


@event_type("split.proposed", version=1)
class SplitProposed(Payload):
    seed: int
    test_fraction: float
    stratify_by_suite: bool
    tasks: list[TaskInfo]
    train: list[str]
    test: list[str]
    heldout: list[TaskInfo] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(default_factory=list)


@event_type("split.task_moved", version=1)
class TaskMoved(Payload):
    task_id: str
    to: Literal["train", "test"]
    reason: str = ""
    findings: list[dict[str, Any]] = Field(default_factory=list)


@event_type("split.task_excluded", version=1)
class TaskExcluded(Payload):
    task_id: str
    reason: str = Field(min_length=1)
    findings: list[dict[str, Any]] = Field(default_factory=list)


@event_type("split.approved", version=1)
class SplitApproved(Payload):
    hash: str = Field(min_length=64, max_length=64)
    train: list[str]
    test: list[str]
    excluded: dict[str, str]
    open_findings: int = 0


@event_type("split.unfrozen", version=1)
class SplitUnfrozen(Payload):
    reason: str = Field(min_length=1)
    previous_hash: str


@dataclass
class SplitState:
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    split: Split | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    frozen: bool = False
    frozen_hash: str | None = None
    approvals: int = 0
    changed_while_frozen: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        s = self.split
        return {"proposed": s is not None, "train": sorted(s.train) if s else [], "test": sorted(s.test) if s else [],
                "excluded": dict(sorted(s.excluded.items())) if s else {}, "frozen": self.frozen,
                "frozen_hash": self.frozen_hash, "hash": s.hash() if s else None,
                "findings": len(self.findings), "heldout": [t["id"] for t in self.heldout]}


SPLIT = state_part("split", factory=SplitState, to_json=SplitState.to_json)


@on("split.proposed")
def _proposed(state: CampaignState, event: StoredEvent) -> None:
    s: SplitState = state.part(SPLIT)
    p = event.payload
    s.tasks = {t["id"]: t for t in p["tasks"]}
    s.heldout = list(p.get("heldout", []))
    s.split = Split(tuple(p["train"]), tuple(p["test"]), {})
    s.findings = list(p.get("findings", []))


def _edited(state: CampaignState, event: StoredEvent, new: Split) -> None:
    s: SplitState = state.part(SPLIT)
    if s.frozen:
        s.changed_while_frozen.append(event.seq)
    s.split = new
    s.findings = list(event.payload.get("findings", s.findings))


@on("split.task_moved")
def _moved(state: CampaignState, event: StoredEvent) -> None:
    s: SplitState = state.part(SPLIT)
    if s.split is not None and event.payload["task_id"] in s.tasks:
        _edited(state, event, move(s.split, event.payload["task_id"], event.payload["to"]))


@on("split.task_excluded")
def _excluded(state: CampaignState, event: StoredEvent) -> None:
    s: SplitState = state.part(SPLIT)
    if s.split is not None and event.payload["task_id"] in s.tasks:
        _edited(state, event, exclude(s.split, event.payload["task_id"], event.payload["reason"]))


@on("split.approved")
def _approved(state: CampaignState, event: StoredEvent) -> None:
    s: SplitState = state.part(SPLIT)
    s.frozen, s.frozen_hash = True, event.payload["hash"]
    s.approvals += 1


@on("split.unfrozen")
def _unfrozen(state: CampaignState, event: StoredEvent) -> None:
    s: SplitState = state.part(SPLIT)
    s.frozen = False


@invariant("split-frozen", "split.task_moved", "split.task_excluded")
def _no_edit_while_frozen(state: CampaignState, event: StoredEvent) -> str | None:
    s: SplitState = state.part(SPLIT)
    if s.changed_while_frozen and s.changed_while_frozen[-1] == event.seq:
        return f"{event.type} changed the frozen split {s.frozen_hash[:12]} without a split.unfrozen decision"
    if event.payload["task_id"] not in s.tasks:
        return f"{event.type} names task {event.payload['task_id']!r}, which the proposed split does not have"
    return None


@invariant("split-hash", "split.approved")
def _approved_hash_matches(state: CampaignState, event: StoredEvent) -> str | None:
    s: SplitState = state.part(SPLIT)
    if s.split is None:
        return "split.approved without a proposed split"
    if s.split.hash() != event.payload["hash"]:
        return f"approved hash {event.payload['hash'][:12]} is not the hash of the split as folded ({s.split.hash()[:12]})"
    return None
