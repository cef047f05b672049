"""A campaign opened for work: the store plus its live state, folded as events append."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

from dpo_tui.events.fold import CampaignState, apply, fold
from dpo_tui.events.store import EventStore, NewEvent, StoredEvent, create_campaign, open_store
from dpo_tui.events.types import Payload


class Campaign:
    """Open with `Campaign.open(path)`; `state` is always the fold of every committed event,
    except on a store opened with `fold_limit`: then it is the fold of the first `fold_limit`
    events, and `refresh()` folds the rest (a console's first frame on a big log need not wait
    for the whole fold). A writable store opened so refuses every append until `refresh()` has
    reached the head it had at open (nothing may be decided on a partial state; its writer
    holds the campaign's lock, so that head does not move)."""

    def __init__(self, store: EventStore, *, fold_limit: int | None = None, state: CampaignState | None = None) -> None:
        """`state`: the fold of every event in `store`, made already (a clean audit's: `report`
        needs one pass, not a fold and an audit)."""
        if fold_limit is not None and fold_limit < 1:
            raise ValueError("fold_limit: >= 1")
        self.store = store
        if state is not None:
            self.state: CampaignState = state
        else:
            events = store.read(verify=True)
            self.state = fold(events if fold_limit is None else itertools.islice(events, fold_limit))
        self._goal = store.head()[0] if fold_limit is not None and not store.readonly else 0
        store.subscribe(self._folded)

    @property
    def folding(self) -> bool:
        """A writable campaign opened partly folded, not yet folded to its head: appends refused."""
        return self.state.last_seq < self._goal

    def _writable_now(self) -> None:
        if self.folding:
            from dpo_tui.errors import StoreError

            raise StoreError(f"the log is still being read ({self.state.last_seq:,} of {self._goal:,} events "
                             "folded): nothing is written until it is read to the end")

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
        self._writable_now()
        return self.store.append(type_, payload, actor=actor)

    def append_batch(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        self._writable_now()
        return self.store.append_batch(events)

    def seal(self, reason: str = "stage") -> StoredEvent | None:
        """A keyed checkpoint of the head now (a stage's end), unless the head is one already."""
        self._writable_now()
        return self.store.seal(reason)

    def refresh(self, limit: int | None = None) -> list[StoredEvent]:
        """Fold events not folded yet (another process appended them: a read-only view of a
        live run; or the open folded only a prefix), at most `limit` of them."""
        reader = self.store.read(self.state.last_seq, prev=(self.state.last_seq, self.state.head_hash))
        new = list(reader if limit is None else itertools.islice(reader, limit))  # all read before any is folded
        for event in new:
            apply(self.state, event)
        return new

    def fold_more(self, limit: int) -> int:
        """Fold at most `limit` events not folded yet, each as it is read, keeping none (a big
        log catching up: refresh's read-then-fold of a chunk is ~1.5x slower per event, the
        decoded payloads gone cold by the time they are folded). Returns how many."""
        reader = self.store.read(self.state.last_seq, prev=(self.state.last_seq, self.state.head_hash))
        n = 0
        for event in itertools.islice(reader, limit):
            apply(self.state, event)
            n += 1
        return n

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
