from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from dpo_tui.errors import StoreError
from dpo_tui.events import types as event_types
from dpo_tui.events.audit import audit
from dpo_tui.events.chain import canonical_json, event_hash
from dpo_tui.events.fold import fold, on
from dpo_tui.events.store import create_campaign, format_ts, open_store, utc_now
from dpo_tui.events.table import SQLModel
from dpo_tui.events.types import Payload, event_type, upcaster


@event_type("test.renamed", version=2)
class Renamed(Payload):
    full_name: str


@upcaster("test.renamed", from_version=1)
def _v1_to_v2(payload: dict) -> dict:
    return {"full_name": payload["name"]}


SEEN: list[dict] = []


@on("test.renamed")
def _seen(state, event) -> None:
    SEEN.append(event.payload)


def _raw_append(path, type_, version, payload) -> None:
    """Write a row as an older (or foreign) dpo-tui would have: correct chain, given version."""
    conn = sqlite3.connect(path)
    seq, prev = conn.execute("SELECT seq, hash FROM event ORDER BY seq DESC LIMIT 1").fetchone()
    cid = conn.execute("SELECT campaign_id FROM event WHERE seq = 1").fetchone()[0]
    ts, text = format_ts(utc_now()), canonical_json(payload)
    digest = event_hash(prev, seq + 1, cid, type_, version, "system", ts, text)
    conn.execute("INSERT INTO event VALUES (?,?,?,?,?,?,?,?,?)",
                 (seq + 1, cid, type_, version, "system", ts, text, prev, digest))
    conn.commit()
    conn.close()


def test_old_schema_versions_are_upcast_on_read_and_rows_stay_untouched(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    _raw_append(path, "test.renamed", 1, {"name": "Ada"})
    SEEN.clear()
    with open_store(path) as store:
        fold(store.read())
        assert SEEN == [{"full_name": "Ada"}]
        assert audit(store).ok
        store.append("test.renamed", {"full_name": "Bob"}, actor="system")
        rows = store._conn.execute("SELECT schema_version, payload FROM event WHERE seq > 1").fetchall()
    assert rows == [(1, '{"name":"Ada"}'), (2, '{"full_name":"Bob"}')]


def test_unknown_types_are_kept_counted_and_warned(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    _raw_append(path, "from.the.future", 1, {"x": 1})
    with open_store(path, readonly=True) as store:
        state = fold(store.read())
        report = audit(store)
    assert state.unknown_types == {"from.the.future": 1} and state.events == 2
    assert report.ok and [w.rule for w in report.warnings] == ["unknown-type"]


def test_a_newer_payload_version_is_refused_by_replay_and_flagged_by_audit(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    _raw_append(path, "note.added", 7, {"text": "from v7"})
    with open_store(path, readonly=True) as store:
        with pytest.raises(StoreError, match="event 2: note.added schema version 7 is newer"):
            fold(store.read())
        report = audit(store)
    assert report.first_bad_seq == 2 and report.problems[0].rule == "schema-version"


def test_sqlmodel_table_matches_the_migrated_schema(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diffs == []


def test_registry_lists_the_core_types():
    assert {"campaign.created", "note.added"} <= set(event_types.known_types())


def test_the_revisions_read_without_alembic_are_alembics():
    """Opening a campaign at head does not import Alembic: the migrations' revisions are read
    from their scripts, and must be what Alembic itself reads from them."""
    from dpo_tui.events import migrate

    assert migrate.known_revisions() == migrate.alembic_revisions()


def test_commands_on_a_campaign_at_head_start_without_alembic_or_the_sdk(tmp_path):
    """`--help`, `replay`, `events` and `audit` import neither Alembic, SQLAlchemy nor the
    together SDK (issue 19: a start that feels instant; every subprocess pays the imports)."""
    import subprocess
    import sys

    from dpo_tui.cli import main

    db = tmp_path / "c.db"
    assert main(["init", "--db", str(db), "--name", "lean"]) == 0
    probe = ("import sys\nfrom dpo_tui.cli import main\ntry:\n    code = main(sys.argv[1:])\nfinally:\n"
             "    heavy = sorted(m for m in ('alembic', 'sqlalchemy', 'sqlmodel', 'together', 'textual') if m in sys.modules)\n"
             "    print('HEAVY', heavy, file=sys.stderr)\nsys.exit(code)\n")
    for args in (["--help"], ["replay", "--db", str(db)], ["events", "--db", str(db)], ["audit", "--db", str(db)]):
        res = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (args, res.stderr)
        assert "HEAVY []" in res.stderr, (args, res.stderr[-500:])
