"""Pair events and their part of the campaign state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.domain.pairs import FILTERS
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type, upcaster

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent


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


@event_type("pairs.thresholds_set", version=1)
class PairThresholdsSet(Payload):
    """The operator's pair thresholds, in force from here on over the plan's: every later
    pairs.built uses them (the funnel is rebuilt with this event)."""

    min_margin: float = Field(ge=0, le=1)
    per_task_cap: int = Field(ge=1)
    reason: str = ""


@event_type("pairs.exported", version=2)
class PairsExported(Payload):
    """An export and the pair decisions it reflects: a later accept or reject makes it stale
    (training refuses a stale export)."""

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
    # the operator decisions it reflects: sha256 of the decisions in force, and the seq of the last one
    decisions_sha256: str | None = None  # None in version-1 logs (the fold knows them anyway)
    decisions_seq: int | None = None
    pair_ids: list[str] | None = None  # the manifest's pair ids, line by line
    supersedes: str | None = None  # the together_sha256 of the stale export this one replaces
    reason: str = ""


@upcaster("pairs.exported", 1)
def _exported_v1(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "decisions_sha256": None, "decisions_seq": None, "pair_ids": None, "supersedes": None,
            "reason": ""}


def decisions_sha256(decisions: dict[str, str]) -> str:
    """The digest of the operator's pair decisions in force (pair id -> accept | reject)."""
    return hashlib.sha256(json.dumps(dict(sorted(decisions.items())), separators=(",", ":")).encode()).hexdigest()


@dataclass
class PairsState:
    built: dict[str, Any] | None = None  # the latest pairs.built payload
    decisions: dict[str, str] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)
    decided: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, pair id, decision), in log order
    thresholds: dict[str, Any] | None = None  # the operator's pairs.thresholds_set in force (None: the plan's)
    thresholds_seq: int | None = None

    @property
    def export(self) -> dict[str, Any] | None:
        """The latest real export (label-swap controls are kept apart)."""
        real = [x for x in self.exports if not x.get("label_swap")]
        return real[-1] if real else None

    @property
    def control_export(self) -> dict[str, Any] | None:
        swapped = [x for x in self.exports if x.get("label_swap")]
        return swapped[-1] if swapped else None

    def staleness(self, x: dict[str, Any] | None) -> str | None:
        """Why export `x` no longer reflects the pair decisions or thresholds in force (None when it does)."""
        if x is None:
            return None
        if x.get("thresholds_in_force") != self.thresholds:
            return (f"the export {x['together_sha256'][:12]} (seq {x['seq']}) was built before the pair thresholds "
                    f"set at seq {self.thresholds_seq}")
        if x["decisions_in_force"] == self.decisions:
            return None
        changed = []
        for seq, pair_id, decision in self.decided:
            if seq > x["seq"] and x["decisions_in_force"].get(pair_id) != self.decisions.get(pair_id) \
                    and self.decisions.get(pair_id) == decision:
                changed.append(f"pair {pair_id} {decision}ed at seq {seq}")
        changed = list(dict.fromkeys(changed))
        return (f"the export {x['together_sha256'][:12]} (seq {x['seq']}) reflects the pair decisions before "
                f"{'; '.join(changed[:3]) or 'later decisions'}{f' (+{len(changed) - 3} more)' if len(changed) > 3 else ''}")

    @property
    def stale(self) -> bool:
        """Whether the latest real export misses a later accept or reject."""
        return self.staleness(self.export) is not None

    @property
    def stale_reason(self) -> str | None:
        return self.staleness(self.export)

    def export_of(self, together_sha256: str) -> dict[str, Any] | None:
        """The latest export whose Together file has this sha256."""
        found = [x for x in self.exports if x["together_sha256"] == together_sha256]
        return found[-1] if found else None

    def to_json(self) -> dict[str, Any]:
        b, x = self.built, self.export
        kept = sum(1 for p in b["pairs"] if p["dropped_by"] is None) if b else 0
        return {"built": len(b["pairs"]) if b else 0, "kept": kept,
                "exported": x["pairs"] if x else 0, "funnel": ordered_funnel(b["funnel"]) if b else {},
                "decisions": len(self.decisions), "export_path": x["together_path"] if x else None,
                "export_trl_path": x["trl_path"] if x else None, "manifest_path": x["manifest_path"] if x else None,
                "export_sha256": x["together_sha256"] if x else None, "exports": len(self.exports),
                "export_stale": self.stale, "export_stale_reason": self.stale_reason,
                "thresholds": self.thresholds}


def ordered_funnel(funnel: dict[str, int]) -> dict[str, int]:
    """The funnel in filter order (payloads are stored with sorted keys)."""
    return {k: funnel[k] for k in ("built", *FILTERS) if k in funnel}


PAIRS = state_part("pairs", factory=PairsState, to_json=PairsState.to_json)


@on("pairs.built")
def _built(state: CampaignState, event: StoredEvent) -> None:
    state.part(PAIRS).built = event.payload


@on("pairs.decided")
def _decided(state: CampaignState, event: StoredEvent) -> None:
    p: PairsState = state.part(PAIRS)
    p.decisions[event.payload["pair_id"]] = event.payload["decision"]
    p.decided.append((event.seq, event.payload["pair_id"], event.payload["decision"]))


@on("pairs.exported")
def _exported(state: CampaignState, event: StoredEvent) -> None:
    p: PairsState = state.part(PAIRS)
    # what the export reflects, as the log has it when it was written (version-1 payloads say nothing)
    p.exports.append({**event.payload, "seq": event.seq, "decisions_in_force": dict(p.decisions),
                      "thresholds_in_force": p.thresholds})


@on("pairs.thresholds_set")
def _thresholds(state: CampaignState, event: StoredEvent) -> None:
    p: PairsState = state.part(PAIRS)
    p.thresholds = {"min_margin": event.payload["min_margin"], "per_task_cap": event.payload["per_task_cap"]}
    p.thresholds_seq = event.seq


@invariant("pairs-built-thresholds", "pairs.built")
def _built_with_thresholds(state: CampaignState, event: StoredEvent) -> str | None:
    """A build after the operator set thresholds used them (audit proves the funnel is the one decided)."""
    t = state.part(PAIRS).thresholds
    if t is None:
        return None
    used = {k: event.payload["filters"].get(k) for k in t}
    return None if used == t else f"pairs.built used thresholds {used}, not the operator's {t} in force"


@invariant("pairs-export-decisions", "pairs.exported")
def _export_reflects_decisions(state: CampaignState, event: StoredEvent) -> str | None:
    p: PairsState = state.part(PAIRS)
    recorded = event.payload.get("decisions_sha256")
    if recorded is not None and recorded != decisions_sha256(p.decisions):
        return "the export says it reflects pair decisions that are not the ones in force when it was written"
    rejected = [pid for pid in event.payload.get("pair_ids") or [] if p.decisions.get(pid) == "reject"]
    if rejected:
        return f"the export holds pairs the operator rejected: {rejected[:3]}"
    return None


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
