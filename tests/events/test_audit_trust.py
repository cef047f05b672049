"""A log an auditor can trust: keyed checkpoints, anchors and re-derivation, each shown
against the attack it answers, performed on a real finished campaign (the small demo on
the embedded simulator): rows edited with the triggers dropped, the whole chain re-hashed
with the published formula, the triggers recreated."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from dpo_tui.events import checkpoint as checkpoints
from dpo_tui.events.chain import GENESIS_HASH, canonical_json, event_hash
from dpo_tui.events.store import NewEvent, create_campaign, open_store
from tests.conftest import copy_campaign_file

ACTOR = "operator:auditor"


# -- the attacker's tools: what anyone who can write the file can do -------------------------

def _triggers(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'event'")]


def forge(db: Path, edit: Callable[[list[dict]], list[dict]], *, fix_checkpoints: bool = True) -> None:
    """Drop the triggers, let `edit` change the rows (payloads as dicts), renumber, re-hash
    the whole chain with the published formula, and recreate the triggers. With
    `fix_checkpoints` the attacker also points every checkpoint at the re-hashed head (it
    cannot recompute the MAC without the key)."""
    conn = sqlite3.connect(db, isolation_level=None)
    triggers = _triggers(conn)
    assert triggers, "the campaign should have its append-only triggers"
    rows = [dict(zip(("seq", "campaign_id", "type", "schema_version", "actor", "ts", "payload"), r, strict=True))
            for r in conn.execute("SELECT seq, campaign_id, type, schema_version, actor, ts, payload FROM event "
                                  "ORDER BY seq")]
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    rows = edit(rows)
    conn.execute("BEGIN")
    for name in ("event_no_update", "event_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("DELETE FROM event")
    prev = GENESIS_HASH
    for seq, r in enumerate(rows, start=1):
        if fix_checkpoints and r["type"] == "chain.checkpoint":
            r["payload"] = {**r["payload"], "seq": seq - 1, "head_hash": prev}
        text = canonical_json(r["payload"])
        digest = event_hash(prev, seq, r["campaign_id"], r["type"], r["schema_version"], r["actor"], r["ts"], text)
        conn.execute("INSERT INTO event (seq, campaign_id, type, schema_version, actor, ts, payload, prev_hash, hash) "
                      "VALUES (?,?,?,?,?,?,?,?,?)",
                      (seq, r["campaign_id"], r["type"], r["schema_version"], r["actor"], r["ts"], text, prev, digest))
        prev = digest
    for sql in triggers:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.close()


def last_index(rows: list[dict], type_: str) -> int:
    return max(i for i, r in enumerate(rows) if r["type"] == type_)


def audit_json(cli, db: Path, *more: str) -> tuple[int, dict]:
    code, out, _ = cli("audit", "--db", db, "--json", *more)
    return code, json.loads(out)


def rules(report: dict) -> set[str]:
    return {p["rule"] for p in report["problems"]}


@pytest.fixture
def finished(finished_demo_template: Path, tmp_path: Path) -> Path:
    return copy_campaign_file(finished_demo_template, tmp_path / "c.db")


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "audit.key"
    monkeypatch.setenv(checkpoints.KEY_ENV, str(path))
    return path


# -- the key and the checkpoints ------------------------------------------------------------

def test_the_first_append_creates_the_key_0600_and_audit_never_does(tmp_path, monkeypatch, cli):
    key = tmp_path / "cfg" / "dpo-tui" / "audit.key"
    monkeypatch.setenv(checkpoints.KEY_ENV, str(key))
    db = tmp_path / "c.db"
    code, _, _ = cli("init", "--db", db, "--name", "k")
    assert code == 0 and key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    secret = key.read_text().strip()
    assert cli("note", "--db", db, "--text", "hello")[0] == 0
    dump = cli("events", "--db", db, "--jsonl")[1] + cli("replay", "--db", db, "--json")[1]
    assert secret not in dump and secret not in db.read_bytes().decode("latin-1")  # never logged

    other = tmp_path / "none" / "audit.key"
    monkeypatch.setenv(checkpoints.KEY_ENV, str(other))
    code, report = audit_json(cli, db)
    assert not other.exists() and not other.parent.exists()  # audit only reads
    assert code == 0 and report["keyed"] is False and report["checkpoints"]["key_id"] is None
    assert any("cannot be ruled out" in line for line in report["cannot_rule_out"])
    code, out, _ = cli("audit", "--db", db)
    assert code == 0 and "not keyed (no audit key at its path)" in out and "cannot be ruled out" in out


def test_the_default_key_path_is_under_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoints.KEY_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert checkpoints.key_path() == tmp_path / "xdg" / "dpo-tui" / "audit.key"


def test_a_decision_is_checkpointed_in_its_own_transaction_and_every_n_events(tmp_path, monkeypatch, cli):
    monkeypatch.setenv(checkpoints.EVERY_ENV, "5")
    with create_campaign(tmp_path / "c.db", name="n", actor=ACTOR) as store:
        store.append_batch([NewEvent("note.added", {"text": f"n{i}"}, "system") for i in range(12)])
        store.append_batch([NewEvent("decision.recorded", {"decision": "go", "stage": "budget"}, ACTOR)])
        events = list(store.read())
    kinds = [(e.seq, e.type, e.payload.get("reason")) for e in events if e.type == "chain.checkpoint"]
    # event 1 + 4 notes, a checkpoint; 5 notes, a checkpoint; 3 notes and the decision, a checkpoint
    assert kinds == [(6, "chain.checkpoint", "interval"), (12, "chain.checkpoint", "interval"),
                     (17, "chain.checkpoint", "decision")]
    key = checkpoints.load_key()
    for e in events:
        if e.type == "chain.checkpoint":
            p = e.payload
            assert p["seq"] == e.seq - 1 and p["head_hash"] == e.prev_hash and p["every"] == 5
            assert p["key_id"] == checkpoints.key_id(key)
            assert checkpoints.verify_mac(key, e.campaign_id, p["seq"], p["head_hash"], p["mac"])
    code, report = audit_json(cli, tmp_path / "c.db")
    assert code == 0 and report["keyed"] is True and report["checkpoints"]["verified"] == 3


def test_the_finished_demo_audits_keyed_with_checkpoints_at_decisions_and_stage_ends(finished, cli):
    code, report = audit_json(cli, finished)
    assert code == 0, report["problems"]
    assert report["keyed"] is True and report["checkpoints"]["verified"] == report["checkpoints"]["count"] > 5
    with open_store(finished, readonly=True) as store:
        events = list(store.read())
    for i, e in enumerate(events):
        if e.type.startswith("decision."):  # the next checkpoint is in the same transaction (same ts)
            after = next(x for x in events[i:] if x.type == "chain.checkpoint")
            assert after.ts == e.ts
    assert events[-1].type == "chain.checkpoint"  # the run sealed its last stage


# -- the attacks ----------------------------------------------------------------------------

def _edit_early_call(rows: list[dict]) -> list[dict]:
    i = next(i for i, r in enumerate(rows) if r["type"] == "call.completed")
    rows[i]["payload"]["text"] = rows[i]["payload"]["text"] + "\n# edited later"
    return rows


def test_rewrite_and_rehash_before_the_last_checkpoint_fails_at_the_first_bad_checkpoint(finished, cli, no_key):
    edited_seq = next(i for i, r in enumerate(_rows(finished)) if r["type"] == "call.completed") + 1
    forge(finished, _edit_early_call)
    # without the key the rewrite passes: audit says so, in text and JSON
    code, report = audit_json(cli, finished)
    assert code == 0 and report["keyed"] is False
    assert any("re-hashed" in line and "cannot be ruled out" in line for line in report["cannot_rule_out"])
    # with the key it fails at the first checkpoint after the edited event
    no_key.parent.mkdir(parents=True, exist_ok=True)
    no_key.write_bytes((Path(os.environ["HOME"]) / ".config" / "dpo-tui" / "audit.key").read_bytes())
    code, report = audit_json(cli, finished)
    first_cp = next(i for i, r in enumerate(_rows(finished)) if r["type"] == "chain.checkpoint" and i + 1 > edited_seq) + 1
    assert code == 1 and report["first_bad_seq"] == first_cp
    assert rules(report) == {"checkpoint"} and "HMAC does not verify" in report["problems"][0]["message"]
    code, out, _ = cli("audit", "--db", finished)
    assert code == 1 and f"FAILED: first bad event seq {first_cp}: checkpoint" in out


def test_a_rewrite_that_leaves_the_checkpoints_alone_fails_even_without_the_key(finished, cli, no_key):
    forge(finished, _edit_early_call, fix_checkpoints=False)
    code, report = audit_json(cli, finished)
    assert code == 1 and "checkpoint" in rules(report) and not rules(report) & {"hash", "prev-hash"}


def test_removing_the_checkpoints_is_caught(finished, cli):
    forge(finished, lambda rows: [r for r in rows if r["type"] != "chain.checkpoint"])
    code, report = audit_json(cli, finished)
    assert code == 1 and rules(report) == {"checkpoint"}
    assert any("no checkpoint after it" in p["message"] for p in report["problems"])


def _rows(db: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = [{"type": t} for (t,) in conn.execute("SELECT type FROM event ORDER BY seq")]
    conn.close()
    return rows


def test_tail_truncation_passes_without_an_anchor_and_fails_with_one(finished, tmp_path, cli):
    anchor = tmp_path / "anchor.json"
    code, out, err = cli("anchor", "--db", finished, "--out", anchor)
    assert code == 0 and json.loads(out) == json.loads(anchor.read_text()) and "keep it" in err
    a = json.loads(anchor.read_text())
    assert set(a) == {"campaign_id", "seq", "head_hash", "checkpoint_mac", "ts"}
    assert audit_json(cli, finished, "--anchor", anchor)[0] == 0

    # the attack from the issue: delete the newest events (the gate, the endpoints' stops and
    # their spend) back to a checkpoint, recreate the triggers
    def truncate(rows: list[dict]) -> list[dict]:
        cut = last_index(rows[: last_index(rows, "endpoint.stopped")], "chain.checkpoint")
        return rows[: cut + 1]

    forge(finished, truncate)
    code, report = audit_json(cli, finished)
    assert code == 0 and report["keyed"] is True  # every checkpoint left verifies: only the anchor can tell
    assert any("missing tail" in line for line in report["cannot_rule_out"])
    code, report = audit_json(cli, finished, "--anchor", anchor)
    assert code == 1 and rules(report) == {"anchor"} and report["first_bad_seq"] == a["seq"]
    code, out, _ = cli("audit", "--db", finished, "--anchor", anchor)
    assert code == 1 and f"seq {a['seq']}: anchor" in out and "deleted" in out


def test_an_anchor_passes_a_log_that_grew_and_fails_one_rewritten_before_it(finished, tmp_path, cli):
    anchor = tmp_path / "a.json"
    assert cli("anchor", "--db", finished, "--out", anchor)[0] == 0
    assert cli("note", "--db", finished, "--text", "after the anchor")[0] == 0
    code, report = audit_json(cli, finished, "--anchor", anchor)
    assert code == 0 and report["anchor"]["mac_verified"] is True
    forge(finished, _edit_early_call)
    code, report = audit_json(cli, finished, "--anchor", anchor)
    assert code == 1 and "anchor" in rules(report)


def test_a_bad_anchor_file_is_one_line_and_exit_2(finished, tmp_path, cli):
    bad = tmp_path / "bad.json"
    bad.write_text('{"campaign_id": "x", "seq": "one"}')
    code, out, err = cli("audit", "--db", finished, "--anchor", bad)
    assert code == 2 and err.startswith("dpo-tui: error: ") and "seq" in err and "Traceback" not in err


def test_report_prints_the_anchor_line(finished, cli):
    code, out, _ = cli("report", "--db", finished)
    assert code == 0
    line = next(x for x in out.splitlines() if '"head_hash"' in x)
    anchor = json.loads(line[line.index("{"):line.rindex("}") + 1])
    with open_store(finished, readonly=True) as store:
        assert (anchor["seq"], anchor["head_hash"]) == store.head()


def _forge_gate(rows: list[dict]) -> list[dict]:
    i = last_index(rows, "decision.gate")
    p = rows[i]["payload"]
    p["decision"] = "rollback" if p["decision"] == "ship" else "ship"
    p["criterion"], p["reason"] = "min_improvement", "forged"
    return rows


def test_a_forged_gate_fails_without_the_key_under_its_own_rule(finished, cli, no_key):
    forge(finished, _forge_gate)
    code, report = audit_json(cli, finished)
    assert code == 1 and report["keyed"] is False
    assert rules(report) == {"gate-derivation"}
    assert "criteria fixed before training give" in report["problems"][0]["message"]


def test_criteria_loosened_after_the_fact_fail_without_the_key(finished, cli, no_key):
    def edit(rows):
        rows[last_index(rows, "decision.gate")]["payload"]["criteria"]["min_improvement"] = -0.5
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "gate-derivation" in rules(report)
    assert any("not the training plan's" in p["message"] for p in report["problems"])


def test_forged_eval_numbers_fail_without_the_key(finished, cli, no_key):
    def edit(rows):
        i = last_index(rows, "eval.results")
        c = rows[i]["payload"]["comparison"]
        c["ci_low"], c["delta"] = 0.2, 0.3
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "eval-derivation" in rules(report) and not rules(report) & {"hash", "prev-hash"}


def test_a_forged_funnel_and_forged_endpoint_spend_fail_without_the_key(finished, tmp_path, cli, no_key):
    other = copy_campaign_file(finished, tmp_path / "d.db")

    def funnel(rows):
        rows[last_index(rows, "pairs.built")]["payload"]["funnel"]["low_margin"] += 1
        return rows

    def endpoint(rows):
        rows[last_index(rows, "endpoint.stopped")]["payload"]["cost_usd"] = 0.0
        return rows

    forge(finished, funnel)
    forge(other, endpoint)
    assert "funnel-derivation" in rules(audit_json(cli, finished)[1])
    assert "spend-derivation" in rules(audit_json(cli, other)[1])


def test_dropped_calls_fail_the_rollouts_spend_without_the_key(finished, cli, no_key):
    def drop(rows):
        i = next(i for i, r in enumerate(rows) if r["type"] == "call.completed")
        key = rows[i]["payload"]["idempotency_key"]
        return [r for r in rows if r["payload"].get("idempotency_key") != key]

    forge(finished, drop)
    code, report = audit_json(cli, finished)
    assert code == 1 and "spend-derivation" in rules(report)


def test_an_export_file_changed_after_it_was_logged_fails(finished, cli):
    with open_store(finished, readonly=True) as store:
        x = next(e.payload for e in store.read() if e.type == "pairs.exported")
    path = Path(x["together_path"])
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"def ", b"def  ", 1))
        code, report = audit_json(cli, finished)
        assert code == 1 and rules(report) == {"export-derivation"}
    finally:
        path.write_bytes(original)
    assert audit_json(cli, finished)[0] == 0


# -- management calls ------------------------------------------------------------------------

def test_every_management_call_is_an_api_completed_event(finished):
    with open_store(finished, readonly=True) as store:
        done = [e.payload for e in store.read() if e.type == "api.completed"]
    whats = {p["what"] for p in done}
    assert {"whoami", "files.upload", "fine_tuning.create", "fine_tuning.retrieve", "fine_tuning.model_limits",
            "endpoints.create", "endpoints.delete", "deployments.create", "models.list_supported"} <= whats
    create = next(p for p in done if p["what"] == "fine_tuning.create")
    assert create["method"] == "POST" and create["status"] == 200 and create["resource"].endswith("/fine-tunes")
    assert create["ids"]["result"].startswith("ft-") and create["attempts"] == 1 and create["latency_s"] >= 0
    upload = next(p for p in done if p["what"] == "files.upload")
    assert upload["requests"] >= 2  # Together's multi-step upload, each request seen
    polled = [p for p in done if p["what"] == "fine_tuning.retrieve"]
    assert polled and all(p["ids"]["arg0"] == create["ids"]["result"] for p in polled)
    assert polled[-1]["result_status"] == "completed"


def test_a_log_written_before_checkpoints_existed_audits_clean_and_says_it_is_not_keyed(finished, cli):
    """An older campaign (its campaign.created does not say checkpointed, no checkpoint in it)
    is not failed for lacking what its writer never wrote; audit says rewrites cannot be ruled
    out. (The same rows with `checkpointed` left on are the removal attack above.)"""
    def as_old(rows: list[dict]) -> list[dict]:
        rows = [r for r in rows if r["type"] != "chain.checkpoint"]
        rows[0]["payload"] = {k: v for k, v in rows[0]["payload"].items() if k != "checkpointed"}
        return rows

    forge(finished, as_old)
    code, report = audit_json(cli, finished)
    assert code == 0, report["problems"]
    assert report["keyed"] is False and report["cannot_rule_out"]
