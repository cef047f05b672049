"""Campaign state as a fold over the event log: `apply(state, event) -> state`.

`apply` reads nothing but its arguments: no clock, no randomness, no I/O. Everything
non-deterministic entered the log as payload. The same function folds each event as the
live app appends it and every event from seq 1 on replay, so the two agree by
construction (a property test checks it).

For speed on long logs the fold updates the state object it is given and returns it
(thousands of rollouts times their events would make copy-on-write quadratic). Callers
own their state; `snapshot()` gives an independent copy, `to_json()` the printable form.

Stages add their own parts of the state without touching the store or this module:

    PART = state_part("budget", factory=BudgetState, to_json=BudgetState.to_json)

    @on("budget.estimated")
    def _estimated(state: CampaignState, event: StoredEvent) -> None:
        state.part(PART).latest = event.payload

and their module is listed in `dpo_tui.events.types.PLUGIN_MODULES`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dpo_tui.events.chain import GENESIS_HASH
from dpo_tui.events.types import load_plugins, spec_for

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

Handler = Callable[["CampaignState", "StoredEvent"], None]
# An invariant sees the state after `event` was folded; it returns a problem or None
# (or a `Note`: something audit could not check, reported as a warning, not a failure).
Invariant = Callable[["CampaignState", "StoredEvent"], "str | None"]


class Note(str):
    """An invariant's finding that is a warning, not a failure (e.g. a file it could not read)."""


@dataclass(frozen=True)
class PartSpec:
    key: str
    factory: Callable[[], Any]
    to_json: Callable[[Any], Any]


_PARTS: dict[str, PartSpec] = {}
_HANDLERS: dict[str, list[Handler]] = {}
_INVARIANTS: dict[str, list[tuple[str, Invariant]]] = {}


def state_part(key: str, *, factory: Callable[[], Any], to_json: Callable[[Any], Any]) -> str:
    if key in _PARTS and _PARTS[key].factory is not factory:
        raise RuntimeError(f"state part {key!r} registered twice")
    _PARTS[key] = PartSpec(key, factory, to_json)
    return key


def on(*event_types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in event_types:
            _HANDLERS.setdefault(name, []).append(fn)
        return fn

    return register


def invariant(rule: str, *event_types: str) -> Callable[[Invariant], Invariant]:
    """Register an audit rule checked after each event of the given types is folded."""

    def register(fn: Invariant) -> Invariant:
        for name in event_types:
            _INVARIANTS.setdefault(name, []).append((rule, fn))
        return fn

    return register


def invariants_for(event_type: str) -> list[tuple[str, Invariant]]:
    load_plugins()
    return _INVARIANTS.get(event_type, [])


@dataclass
class CampaignState:
    events: int = 0
    last_seq: int = 0
    head_hash: str = GENESIS_HASH
    unknown_types: dict[str, int] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)

    def part(self, key: str) -> Any:
        return self.parts[key]

    def snapshot(self) -> CampaignState:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"events": self.events, "last_seq": self.last_seq, "head_hash": self.head_hash}
        for key, spec in _PARTS.items():
            out[key] = spec.to_json(self.parts[key])
        out["unknown_types"] = dict(sorted(self.unknown_types.items()))
        return out


def new_state() -> CampaignState:
    load_plugins()
    return CampaignState(parts={key: spec.factory() for key, spec in _PARTS.items()})


def apply(state: CampaignState, event: StoredEvent) -> CampaignState:
    state.events += 1
    state.last_seq = event.seq
    state.head_hash = event.hash
    handlers = _HANDLERS.get(event.type)
    if handlers:
        for handler in handlers:
            handler(state, event)
    elif spec_for(event.type) is None:
        state.unknown_types[event.type] = state.unknown_types.get(event.type, 0) + 1
    return state


def fold(events: Iterable[StoredEvent], state: CampaignState | None = None) -> CampaignState:
    state = state if state is not None else new_state()
    for event in events:
        apply(state, event)
    return state
