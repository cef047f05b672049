"""Pair events and their part of the campaign state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from dpo_tui.campaign.state_split import SPLIT
from dpo_tui.domain.pairs import FILTERS
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.store import StoredEvent
from dpo_tui.events.types import Payload, event_type


class PairInfo(Payload):
    pair_id: str
    task_id: str
    chosen: str  # rollout ids
    rejected: str
    chosen_score: float
    rejected_score: float
    tokens: int
    dropped_by: str | None = None  # the filter that dropped it, None when kept


@event_type("pairs.built", version=1)
class PairsBuilt(Payload):
    split_hash: str
    filters: dict[str, Any]
    token_rule: str
    funnel: dict[str, int]
    pairs: list[PairInfo]


@event_type("pairs.decided", version=1)
class PairDecided(Payload):
    pair_id: str
    decision: Literal["accept", "reject"]
    reason: str = ""


@event_type("pairs.exported", version=1)
class PairsExported(Payload):
    split_hash: str
    pairs: int = Field(ge=1)
    together_path: str
    together_sha256: str
    trl_path: str
    trl_sha256: str
    manifest_path: str
    manifest_sha256: str
    funnel: dict[str, int]
    report: dict[str, Any]
    label_swap: bool = False  # a control export: preferred and non-preferred exchanged


@dataclass
class PairsState:
    built: dict[str, Any] | None = None  # the latest pairs.built payload
    decisions: dict[str, str] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def export(self) -> dict[str, Any] | None:
        """The latest real export (label-swap controls are kept apart)."""
        real = [x for x in self.exports if not x.get("label_swap")]
        return real[-1] if real else None

    @property
    def control_export(self) -> dict[str, Any] | None:
        swapped = [x for x in self.exports if x.get("label_swap")]
        return swapped[-1] if swapped else None

    def to_json(self) -> dict[str, Any]:
        b, x = self.built, self.export
        kept = sum(1 for p in b["pairs"] if p["dropped_by"] is None) if b else 0
        return {"built": len(b["pairs"]) if b else 0, "kept": kept,
                "exported": x["pairs"] if x else 0, "funnel": ordered_funnel(b["funnel"]) if b else {},
                "decisions": len(self.decisions), "export_path": x["together_path"] if x else None,
                "export_trl_path": x["trl_path"] if x else None, "manifest_path": x["manifest_path"] if x else None,
                "export_sha256": x["together_sha256"] if x else None, "exports": len(self.exports)}


def ordered_funnel(funnel: dict[str, int]) -> dict[str, int]:
    """The funnel in filter order (payloads are stored with sorted keys)."""
    return {k: funnel[k] for k in ("built", *FILTERS) if k in funnel}


PAIRS = state_part("pairs", factory=PairsState, to_json=PairsState.to_json)


@on("pairs.built")
def _built(state: CampaignState, event: StoredEvent) -> None:
    state.part(PAIRS).built = event.payload


@on("pairs.decided")
def _decided(state: CampaignState, event: StoredEvent) -> None:
    state.part(PAIRS).decisions[event.payload["pair_id"]] = event.payload["decision"]


@on("pairs.exported")
def _exported(state: CampaignState, event: StoredEvent) -> None:
    state.part(PAIRS).exports.append({**event.payload, "seq": event.seq})


@invariant("pairs-frozen-split", "pairs.built", "pairs.exported")
def _frozen_split(state: CampaignState, event: StoredEvent) -> str | None:
    split = state.part(SPLIT)
    if not split.frozen:
        return f"{event.type} while the split is not frozen"
    if event.payload["split_hash"] != split.frozen_hash:
        return f"{event.type} used split {event.payload['split_hash'][:12]}, not the frozen {split.frozen_hash[:12]}"
    if event.type == "pairs.built":
        test = set(split.split.test) if split.split else set()
        leaked = [p["pair_id"] for p in event.payload["pairs"] if p["dropped_by"] is None and p["task_id"] in test]
        if leaked:
            return f"kept pairs from test-split tasks: {leaked[:3]}"
    return None
