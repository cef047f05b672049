"""The core event types and state parts: the campaign itself, operator notes, spend.

Spend is here because every stage feeds it; a stage that pays for something registers a
handler that calls `add_spend(state, stage, usd)`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

RECENT_NOTES = 50


@event_type("campaign.created", version=1)
class CampaignCreated(Payload):
    campaign_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    created_at: str
    dpo_tui_version: str
    checkpointed: bool = False  # written by a version that checkpoints: audit then requires the checkpoints


@event_type("note.added", version=1)
class NoteAdded(Payload):
    text: str = Field(min_length=1, max_length=100_000)
    stage: str | None = None


@dataclass
class CampaignInfo:
    id: str | None = None
    name: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    dpo_tui_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at,
                "created_by": self.created_by, "dpo_tui_version": self.dpo_tui_version}


@dataclass
class Notes:
    """Notes are counted in full; the last few are kept for display (all stay in the log)."""

    count: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_NOTES))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "recent": list(self.recent)}


@dataclass
class Spend:
    total_usd: float = 0.0
    by_stage: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"total_usd": self.total_usd, "by_stage": dict(sorted(self.by_stage.items()))}


CAMPAIGN = state_part("campaign", factory=CampaignInfo, to_json=CampaignInfo.to_json)
NOTES = state_part("notes", factory=Notes, to_json=Notes.to_json)
SPEND = state_part("spend", factory=Spend, to_json=Spend.to_json)


def add_spend(state: CampaignState, stage: str, usd: float) -> None:
    spend: Spend = state.part(SPEND)
    spend.total_usd += usd
    spend.by_stage[stage] = spend.by_stage.get(stage, 0.0) + usd


@on("campaign.created")
def _campaign_created(state: CampaignState, event: StoredEvent) -> None:
    info: CampaignInfo = state.part(CAMPAIGN)
    p = event.payload
    info.id, info.name, info.created_at = p["campaign_id"], p["name"], p["created_at"]
    info.created_by, info.dpo_tui_version = event.actor, p["dpo_tui_version"]


@on("note.added")
def _note_added(state: CampaignState, event: StoredEvent) -> None:
    notes: Notes = state.part(NOTES)
    notes.count += 1
    notes.recent.append({"seq": event.seq, "actor": event.actor, "ts": event.ts,
                         "stage": event.payload.get("stage"), "text": event.payload["text"]})


@invariant("single-campaign", "campaign.created")
def _created_once(state: CampaignState, event: StoredEvent) -> str | None:
    if event.seq != 1:
        return f"a second campaign.created at seq {event.seq}"
    if event.payload["campaign_id"] != event.campaign_id:
        return "campaign.created names another campaign id than its row"
    return None
