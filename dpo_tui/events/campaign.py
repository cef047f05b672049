"""A campaign opened for work: the store plus its live state, folded as events append."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dpo_tui.events.fold import CampaignState, apply, fold
from dpo_tui.events.store import EventStore, NewEvent, StoredEvent, create_campaign, open_store
from dpo_tui.events.types import Payload


class Campaign:
    """Open with `Campaign.open(path)`; `state` is always the fold of every committed event."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state: CampaignState = fold(store.read(verify=True))
        store.subscribe(self._folded)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Campaign:
        return cls(open_store(path, readonly=readonly))

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, name: str, actor: str, force: bool = False) -> Campaign:
        return cls(create_campaign(path, name=name, actor=actor, force=force))

    def _folded(self, events: list[StoredEvent]) -> None:
        for event in events:
            apply(self.state, event)

    def append(self, type_: str, payload: Payload | dict[str, Any], *, actor: str) -> StoredEvent:
        return self.store.append(type_, payload, actor=actor)

    def append_batch(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        return self.store.append_batch(events)

    def seal(self, reason: str = "stage") -> StoredEvent | None:
        """A keyed checkpoint of the head now (a stage's end), unless the head is one already."""
        return self.store.seal(reason)

    def refresh(self) -> list[StoredEvent]:
        """Fold events another process appended since (a read-only view of a live run)."""
        new = list(self.store.read(self.state.last_seq, prev=(self.state.last_seq, self.state.head_hash)))
        for event in new:
            apply(self.state, event)
        return new

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
