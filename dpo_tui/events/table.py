"""The event table's SQLModel definition.

The schema is created by Alembic (migrations/versions/), never by `create_all()`; this
class is the typed description of the same table, and a test checks that the two agree.
Hot paths (append, replay) go through the stdlib sqlite3 driver on this same table for
speed (see tests/perf/bench_event_store.py for the figures).
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel

from dpo_tui.events.chain import APPLICATION_ID  # noqa: F401 - where it used to be defined


class Event(SQLModel, table=True):
    __tablename__ = "event"

    seq: int = Field(primary_key=True, description="global order, 1, 2, 3, ... without gaps")
    campaign_id: str = Field(description="the campaign this log belongs to")
    type: str = Field(index=True, description="stable type name, e.g. note.added")
    schema_version: int = Field(description="payload schema version when written")
    actor: str = Field(description="operator:<name>, plan or system")
    ts: str = Field(description="UTC timestamp, ISO 8601 with microseconds and Z")
    payload: str = Field(description="canonical JSON object")
    prev_hash: str = Field(description="hash of the previous event (64 zeros for the first)")
    hash: str = Field(description="sha256 over prev_hash and this event's fields")
