"""Concurrency changes of engine runs on dedicated serving (domain/concurrency.py's rule,
applied by the engine): each change an event, folded per stage and run so a resume starts at
the concurrency last measured and `replay --json` shows what the endpoint was found to serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent


@event_type("engine.concurrency_set", version=1)
class ConcurrencySet(Payload):
    stage: str  # the engine run's stage (eval)
    run_id: str | None = None
    before: int = Field(ge=1)
    after: int = Field(ge=1)
    calls: int = Field(ge=1)  # the window of answered calls that decided it
    latency_ms_per_token: float = Field(ge=0)  # the window's median
    baseline_ms_per_token: float = Field(ge=0)  # the lowest window median (no queue)
    tokens_per_s: float = Field(ge=0)  # completion tokens served per wall second in the window
    reason: str


@dataclass
class ConcurrencyState:
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "stage/run" -> payloads

    def last(self, stage: str, run_id: str | None) -> dict[str, Any] | None:
        """The run's last change (its `after` and `baseline_ms_per_token`), None before any."""
        got = self.changes.get(f"{stage}/{run_id or '-'}")
        return got[-1] if got else None

    def to_json(self) -> dict[str, Any]:
        return {k: {"concurrency": v[-1]["after"], "changes": len(v), "tokens_per_s": v[-1]["tokens_per_s"],
                    "path": [v[0]["before"], *(c["after"] for c in v)]} for k, v in self.changes.items()}


CONCURRENCY = state_part("concurrency", factory=ConcurrencyState, to_json=ConcurrencyState.to_json)


@on("engine.concurrency_set")
def _set(state: CampaignState, event: StoredEvent) -> None:
    p = event.payload
    state.part(CONCURRENCY).changes.setdefault(f"{p['stage']}/{p.get('run_id') or '-'}", []).append(dict(p))
