"""The console's chain check runs `dpo-tui audit --json` in a child process (issue 20: at a
million events the audit would share the console's interpreter lock for tens of seconds):
it reports what the audit command reports, names a tampered log's first bad event, says
why when it could not run, and a console quitting mid-audit leaves no child behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dpo_tui.events.audit_process import AuditNotRun, audit_in_child
from dpo_tui.tui.screens.log import chain_line
from tests.tui.conftest import copy_campaign


def _cli_json(db: Path) -> str:
    return subprocess.run([sys.executable, "-m", "dpo_tui", "audit", "--db", str(db), "--json"],
                          capture_output=True, text=True).stdout


def test_the_child_reports_what_the_audit_command_reports(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    report = audit_in_child(db)
    import json

    assert report == json.loads(_cli_json(db))
    assert report["ok"] and chain_line(report).startswith(f"chain: ok - {report['events']:,} events verified")


def test_a_tampered_log_names_its_first_bad_event(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    seq = conn.execute("SELECT min(seq) FROM event WHERE type = 'note.added' OR type = 'split.approved'").fetchone()[0]
    conn.execute("UPDATE event SET actor = 'operator:forger' WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()
    report = audit_in_child(db)
    assert not report["ok"] and report["first_bad_seq"] == seq
    line = chain_line(report)
    assert line.startswith(f"chain: FAILED - first bad event seq {seq}: hash")


def test_a_log_it_cannot_open_is_said_not_reported_as_checked(tmp_path):
    with pytest.raises(AuditNotRun, match="nope.db"):
        audit_in_child(tmp_path / "nope.db")


def _audits_of(db: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"audit" in cmd and str(db).encode() in cmd:
            found.append(int(pid))
    return found


def test_cancelled_it_kills_the_child_and_returns_nothing(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    asked = []

    def cancelled() -> bool:
        asked.append(_audits_of(db))  # the child is there while it is asked
        return True

    assert audit_in_child(db, cancelled=cancelled, poll_s=0.001) is None
    assert asked and asked[0], "the child was never seen running"
    assert _audits_of(db) == []
