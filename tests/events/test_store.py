from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading

import pytest

from dpo_tui.errors import InputError, StoreError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.chain import GENESIS_HASH, event_hash
from dpo_tui.events.fold import fold
from dpo_tui.events.store import NewEvent, create_campaign, open_store


@pytest.fixture
def store(tmp_path):
    s = create_campaign(tmp_path / "c.db", name="t", actor="operator:alice")
    yield s
    s.close()


def test_created_file_is_wal_with_a_chained_first_event(store):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (first,) = list(store.read())
    assert first.seq == 1 and first.type == "campaign.created" and first.prev_hash == GENESIS_HASH
    assert first.actor == "operator:alice" and first.ts.endswith("Z")
    assert first.hash == event_hash(GENESIS_HASH, 1, store.campaign_id, "campaign.created", 1, "operator:alice",
                                    first.ts, store._conn.execute("SELECT payload FROM event").fetchone()[0])


def test_batch_is_atomic_when_one_event_is_invalid(store):
    with pytest.raises(InputError, match="note.added payload invalid: text"):
        store.append_batch([NewEvent("note.added", {"text": "ok"}, "system"),
                            NewEvent("note.added", {"text": ""}, "system")])
    assert store.count() == 1


def test_batch_rolls_back_when_the_insert_fails(store):
    store._conn.execute("CREATE TRIGGER boom BEFORE INSERT ON event WHEN NEW.seq = 3 "
                        "BEGIN SELECT RAISE(ABORT, 'injected'); END")
    with pytest.raises(StoreError, match="injected"):
        store.append_batch([NewEvent("note.added", {"text": f"n{i}"}, "system") for i in range(3)])
    assert store.count() == 1 and store.head()[0] == 1


def test_unknown_type_and_bad_actor_are_refused(store):
    with pytest.raises(InputError, match="unknown event type 'no.such'"):
        store.append("no.such", {}, actor="system")
    with pytest.raises(InputError, match="actor 'bob'"):
        store.append("note.added", {"text": "x"}, actor="bob")
    with pytest.raises(InputError, match="secret: Extra inputs"):
        store.append("note.added", {"text": "x", "secret": 1}, actor="system")


def test_triggers_refuse_update_and_delete(store):
    store.append("note.added", {"text": "keep me"}, actor="system")
    conn = sqlite3.connect(store.path)
    for sql in ("UPDATE event SET payload = '{}'", "DELETE FROM event WHERE seq = 2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert [e.payload.get("text") for e in store.read()][1] == "keep me"


def test_sqlite3_command_line_update_fails(store):
    assert shutil.which("sqlite3"), "the sqlite3 command is a test requirement (.ci/run installs it)"
    res = subprocess.run(["sqlite3", str(store.path), "update event set payload='{}'"], capture_output=True, text=True)
    assert res.returncode != 0 and "append-only" in res.stderr


def test_concurrent_appends_from_threads_keep_one_chain(store):
    def work(n: int) -> None:
        for i in range(25):
            store.append_batch([NewEvent("note.added", {"text": f"{n}-{i}-{j}"}, "system") for j in range(3)])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = list(store.read(verify=True))
    assert [e.seq for e in events] == list(range(1, 302))


def test_two_processes_appending_share_the_chain(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    a, b = open_store(path), open_store(path)
    for i in range(10):
        (a if i % 2 else b).append("note.added", {"text": str(i)}, actor="system")
    assert a.count() == 11 and [e.seq for e in a.read()] == list(range(1, 12))


def test_readonly_store_refuses_appends(store):
    ro = open_store(store.path, readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        ro.append("note.added", {"text": "x"}, actor="system")


def test_live_campaign_state_follows_appends_and_refresh_sees_other_writers(tmp_path):
    path = tmp_path / "c.db"
    with Campaign.create(path, name="live", actor="operator:a") as writer, Campaign.open(path, readonly=True) as viewer:
        writer.append("note.added", {"text": "one"}, actor="operator:a")
        assert writer.state.part("notes").count == 1
        assert viewer.state.part("notes").count == 0
        assert [e.seq for e in viewer.refresh()] == [2]
        assert viewer.state.to_json() == writer.state.to_json() == fold(writer.store.read()).to_json()


def test_create_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="first", actor="system").close()
    with pytest.raises(InputError, match="already exists"):
        create_campaign(path, name="second", actor="system")
    with Campaign.create(path, name="second", actor="system", force=True) as c:
        assert c.state.part("campaign").name == "second" and c.state.events == 1
    assert not list(tmp_path.glob(".*creating*"))
