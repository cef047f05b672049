from __future__ import annotations

import json

import pytest

from dpo_tui.cli import build_parser
from tests.conftest import run_dpo_tui


def test_init_note_replay_audit_events_round_trip(cli, tmp_path):
    db = tmp_path / "c.db"
    code, out, _ = cli("init", "--db", db, "--name", "Spring campaign", "--actor", "alice")
    assert code == 0 and "Spring campaign" in out
    assert cli("note", "--db", db, "--text", "pilot looks cheap", "--stage", "budget", "--actor", "bob")[0] == 0

    code, out, _ = cli("replay", "--db", db, "--json")
    state = json.loads(out)
    assert code == 0 and state["events"] == 2 and len(state["head_hash"]) == 64
    assert state["campaign"]["name"] == "Spring campaign" and state["campaign"]["created_by"] == "operator:alice"
    assert set(state["campaign"]) >= {"id", "name", "created_at"}
    assert state["spend"] == {"total_usd": 0.0, "by_stage": {}}
    assert state["notes"]["recent"][0]["actor"] == "operator:bob"

    code, out, _ = cli("audit", "--db", db, "--json")
    assert code == 0 and json.loads(out) | {} == {**json.loads(out), "ok": True, "first_bad_seq": None, "problems": []}

    code, out, _ = cli("events", "--db", db, "--jsonl", "--type", "note.added")
    (line,) = out.strip().splitlines()
    row = json.loads(line)
    assert set(row) == {"seq", "type", "actor", "ts", "schema_version", "payload", "prev_hash", "hash"}
    assert row["payload"] == {"text": "pilot looks cheap", "stage": "budget"} and row["seq"] == 2
    assert row["hash"] == state["head_hash"]


def test_human_replay_shows_the_campaign_and_notes(cli, tmp_path):
    db = tmp_path / "c.db"
    cli("init", "--db", db, "--name", "n")
    cli("note", "--db", db, "--text", "why we paused")
    code, out, _ = cli("replay", "--db", db)
    assert code == 0 and "why we paused" in out and "events     2" in out


def test_init_refuses_to_overwrite(cli, tmp_path):
    db = tmp_path / "c.db"
    cli("init", "--db", db, "--name", "a")
    code, _, err = cli("init", "--db", db, "--name", "b")
    assert code == 2 and "refusing to overwrite" in err and "--force" in err
    assert cli("init", "--db", db, "--name", "b", "--force")[0] == 0


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_has_help(command, cli):
    with pytest.raises(SystemExit) as exc:
        cli(command, "--help")
    assert exc.value.code == 0


def test_no_arguments_prints_help_and_exits_2():
    res = run_dpo_tui()
    assert res.returncode == 2 and "usage: dpo-tui" in res.stderr
