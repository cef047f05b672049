"""The API key given in the environment appears nowhere: not in the database file (nor its
-wal), not in exports (events --jsonl, replay --json, audit --json), not in logs, not on the
screen (doctor) -- checked by grepping the bytes."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import pytest

from dpo_tui.config import load_settings
from dpo_tui.provider.provider import CallGaveUp, CallKey
from dpo_tui.provider.secrets import MASK, Redactor

from .conftest import FAST, MODEL, events_of, make_provider


def _bytes_of(*paths: Path) -> bytes:
    return b"".join(p.read_bytes() for p in paths if p.exists())


def test_env_key_never_reaches_db_exports_logs_or_screen(sim, tmp_path, monkeypatch, cli):
    key = "tgp_v1_" + secrets.token_urlsafe(32)
    monkeypatch.setenv("TOGETHER_API_KEY", key)
    settings = load_settings(None, base_url=sim.base_url, **FAST)
    assert settings.api_key_source == "env:TOGETHER_API_KEY" and settings.key_value() == key
    assert key not in repr(settings) and key not in str(settings.model_dump())

    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        db = tmp_path / "c.db"
        campaign, provider = make_provider(db, settings)
        leaky = [{"role": "user", "content": f"my key is {key}; header Authorization: Bearer {key}"}]

        async def calls():
            await provider.chat(CallKey("s/1"), stage="rollouts", model=MODEL, messages=leaky, max_tokens=32)
            sim.set_faults("429=0.5")
            for i in range(5):
                await provider.chat(CallKey(f"s/{i + 2}"), stage="rollouts", model=MODEL,
                                    messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=16)
            sim.set_faults("")
            with pytest.raises(CallGaveUp):
                await provider.chat(CallKey("s/bad"), stage="rollouts", model=MODEL, messages=leaky,
                                    temperature=9.0, max_tokens=16)

        asyncio.run(calls())
        assert events_of(campaign, "call.attempt_failed"), "the run exercised error paths"
        started = events_of(campaign, "call.started")[0]
        assert MASK in started.payload["messages"][0]["content"]
        wal = Path(f"{db}-wal")
        assert wal.exists() and wal.stat().st_size > 0
        live_bytes = _bytes_of(db, wal, Path(f"{db}-shm"))
        campaign.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()

    outputs = []
    for args in (("events", "--db", db, "--jsonl"), ("replay", "--db", db, "--json"), ("audit", "--db", db, "--json")):
        code, out, err = cli(*args)
        assert code == 0, err
        outputs.append(out + err)
    code, out, err = cli("doctor", "--base-url", sim.base_url, "--live", "--json")
    assert code == 0, out + err
    outputs.append(out + err)

    sources = {"database while open (db, -wal, -shm)": live_bytes, "database after close": _bytes_of(db, Path(f"{db}-wal")),
               "debug log of the SDK, httpx and httpcore": log_file.read_bytes(),
               "exports and screen output": "".join(outputs).encode()}
    assert log_file.stat().st_size > 0, "the debug log captured the SDK's and httpx's records"
    assert b"Request options" in sources["debug log of the SDK, httpx and httpcore"], "the SDK logged the requests"
    for where, blob in sources.items():
        assert key.encode() not in blob, f"the API key leaked into the {where}"
        assert key[7:].encode() not in blob, f"the API key (without its prefix) leaked into the {where}"


def test_redactor_patterns():
    r = Redactor(["s3cr3t-value-123"])
    text = ('use s3cr3t-value-123 and Authorization: Bearer abcdefghijklmnop and tgp_v1_ABCDEFGHijklmnop123 '
            'or {"api_key": "0123456789abcdef0123"} sk-ABCDEFGHIJKLMNOPQRST')
    out = r.redact(text)
    for leaked in ("s3cr3t-value-123", "abcdefghijklmnop", "tgp_v1_ABCDEFGHijklmnop123", "0123456789abcdef0123",
                   "sk-ABCDEFGHIJKLMNOPQRST"):
        assert leaked not in out
    assert r.redact_obj({"a": [text], "n": 3})["n"] == 3
    assert r.redact("def add(a, b):\n    return a + b") == "def add(a, b):\n    return a + b"


def test_a_key_pasted_into_an_operator_note_is_masked(tmp_path, monkeypatch, cli):
    key = "tgp_v1_" + secrets.token_urlsafe(32)
    monkeypatch.setenv("TOGETHER_API_KEY", key)
    db = tmp_path / "c.db"
    assert cli("init", "--db", db, "--name", "n")[0] == 0
    code, _out, _err = cli("note", "--db", db, "--text", f"rotated the key {key}; old one sk-{'x' * 20} revoked")
    assert code == 0
    assert key.encode() not in _bytes_of(db, Path(f"{db}-wal"))
    code, out, _err = cli("events", "--db", db, "--jsonl")
    assert f"rotated the key {MASK}; old one {MASK} revoked" in out
