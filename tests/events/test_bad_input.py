"""Each bad input gets one line naming the problem and the place, exit 1 or 2, no
traceback, and nothing written."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time

import pytest

from dpo_tui.events.store import create_campaign
from tests.conftest import run_dpo_tui


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expect_one_line_error(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def campaign(tmp_path):
    path = tmp_path / "c.db"
    create_campaign(path, name="t", actor="system").close()
    return path


def test_not_a_sqlite_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n" * 10)
    before = _digest(path)
    for cmd in (["replay", "--db", path], ["note", "--db", path, "--text", "x"], ["audit", "--db", path]):
        _expect_one_line_error(run_dpo_tui(*cmd), 2, str(path), "not a SQLite database")
    assert _digest(path) == before


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    _expect_one_line_error(run_dpo_tui("replay", "--db", empty), 2, "an empty file")
    _expect_one_line_error(run_dpo_tui("replay", "--db", tmp_path / "nope.db"), 2, "no such campaign file", "dpo-tui init")
    assert not (tmp_path / "nope.db").exists()


def test_a_database_of_another_program(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    conn.commit()
    conn.close()
    before = _digest(path)
    _expect_one_line_error(run_dpo_tui("note", "--db", path, "--text", "x"), 2, "not a dpo-tui campaign", "moz_places")
    assert _digest(path) == before


def test_a_newer_schema_than_the_code_knows(campaign):
    conn = sqlite3.connect(campaign)
    conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    conn.commit()
    conn.close()
    before = _digest(campaign)
    line = _expect_one_line_error(run_dpo_tui("note", "--db", campaign, "--text", "x"), 2, "0099_from_the_future")
    assert "newer than this dpo-tui" in line and "upgrade dpo-tui" in line
    assert _digest(campaign) == before


def test_a_locked_database(campaign):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(campaign)!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        res = run_dpo_tui("note", "--db", campaign, "--text", "while locked")
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
        holder.wait()
    _expect_one_line_error(res, 2, str(campaign), "locked by another process")
    assert "while locked" not in run_dpo_tui("events", "--db", campaign).stdout


def test_a_tampered_row(campaign):
    for i in range(5):
        run_dpo_tui("note", "--db", campaign, "--text", f"note {i}")
    conn = sqlite3.connect(campaign)
    conn.execute("DROP TRIGGER event_no_update")
    conn.execute("""UPDATE event SET payload = '{"stage":null,"text":"forged"}' WHERE seq = 4""")
    conn.commit()
    conn.close()
    before = _digest(campaign)
    _expect_one_line_error(run_dpo_tui("replay", "--db", campaign), 1, "event 4", "hash mismatch")
    res = run_dpo_tui("audit", "--db", campaign)
    assert res.returncode == 1 and "first bad event seq 4: hash" in res.stdout
    res = run_dpo_tui("note", "--db", campaign, "--text", "on top of a forgery")
    _expect_one_line_error(res, 1, "event 4")
    assert _digest(campaign) == before


def test_a_truncated_database_file(campaign):
    run_dpo_tui("note", "--db", campaign, "--text", "x" * 50_000)
    data = campaign.read_bytes()
    campaign.write_bytes(data[: len(data) // 2])
    res = run_dpo_tui("audit", "--db", campaign)
    _expect_one_line_error(res, 2, str(campaign))
    assert "corrupt" in res.stderr or "malformed" in res.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path):
    res = run_dpo_tui("replay")
    assert res.returncode == 2 and "--db" in res.stderr and "Traceback" not in res.stderr
    res = run_dpo_tui("note", "--db", tmp_path / "x.db", "--text", "  ")
    _expect_one_line_error(res, 2, "--text is empty")
