"""`dpo-tui report` reads a big log once (issue 20): the audit's own fold serves the report
and its decisions table comes through the type index, not a decode of every payload."""

from __future__ import annotations

import re

import pytest

from dpo_tui.campaign import report
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import EventStore


def _log(path, notes: int) -> None:
    with Campaign.create(path, name="t", actor="operator:t") as c:
        for i in range(notes):
            c.append("note.added", {"text": f"note {i}", "stage": "rollouts"}, actor="operator:t")
        c.append("budget.cap_set", {"cap_usd": 3.0, "reason": "the decision the report lists"}, actor="operator:t")


def _without_anchor_time(text: str) -> str:
    return re.sub(r'"ts": "[^"]+"', '"ts": -', text)


def test_report_decodes_only_decision_events_and_matches_the_campaign_fold(tmp_path, monkeypatch) -> None:
    db = tmp_path / "c.db"
    _log(db, notes=300)
    with Campaign.open(db, readonly=True) as c:
        want = report.to_markdown(report.build(c))
        events = c.state.events
    decoded = []
    real = EventStore._decode
    monkeypatch.setattr(EventStore, "_decode", lambda self, *row: decoded.append(row[2]) or real(self, *row))
    got = report.to_markdown(report.build_for(db))
    assert _without_anchor_time(got) == _without_anchor_time(want)
    assert "the decision the report lists" in got and f"{events} events" in got
    assert decoded == ["budget.cap_set"]  # the store decoded no note (the audit's pass folded them)


def test_report_of_a_broken_chain_still_refuses(tmp_path) -> None:
    import sqlite3

    db = tmp_path / "c.db"
    _log(db, notes=5)
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE event SET payload = '{\"text\": \"forged\", \"stage\": \"rollouts\"}' WHERE seq = 3")
    conn.commit()
    conn.close()
    from dpo_tui.errors import IntegrityError

    with pytest.raises(IntegrityError, match="hash mismatch"):
        report.build_for(db)


def test_read_by_type_cannot_verify(tmp_path) -> None:
    db = tmp_path / "c.db"
    _log(db, notes=2)
    with Campaign.open(db, readonly=True) as c:
        with pytest.raises(ValueError, match="verify=False"):
            list(c.store.read(types=["note.added"]))
        assert [e.type for e in c.store.read(verify=False, types=["budget.cap_set"])] == ["budget.cap_set"]
