"""The API key given in the environment appears nowhere: not in the database file (nor its
-wal), not in exports (events --jsonl, replay --json, audit --json), not in logs, not on the
screen (doctor) -- checked by grepping the bytes."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path

import pytest
import together

from dpo_tui.config import load_settings
from dpo_tui.provider.provider import CallGaveUp, CallKey
from dpo_tui.provider.secrets import MASK, Redactor

from .conftest import FAST, MODEL, events_of, fast_settings, make_provider


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
            'or sk-ABCDEFGHIJKLMNOPQRST')
    out = r.redact(text)
    for leaked in ("s3cr3t-value-123", "abcdefghijklmnop", "tgp_v1_ABCDEFGHijklmnop123", "sk-ABCDEFGHIJKLMNOPQRST"):
        assert leaked not in out
    assert r.redact_obj({"a": [text], "n": 3})["n"] == 3
    assert r.redact("def add(a, b):\n    return a + b") == "def add(a, b):\n    return a + b"


CODE = ("secret = compute_value(x)", "api_key = load_key(path)", 'token = "not-a-key-just-text"',
        "headers = {'Authorization': auth_header}", "Bearer authentication is described in RFC 6750")


def test_redaction_is_by_value_not_by_word():
    """Code and prose that name secrets stay exactly as written; only values are masked."""
    r = Redactor(["s3cr3t-value-123"])
    for line in CODE:
        assert r.redact(line) == line
    assert r.redact("secret = 's3cr3t-value-123'") == f"secret = '{MASK}'"


NAMES_SECRETS = ("def fetch(x):\n    secret = compute_value(x)\n    api_key = load_key(x)\n"
                 "    if secret > api_key:\n        return secret - 1\n    return secret + 1\n")


def test_code_naming_secrets_survives_in_the_logged_prompt_and_reply_and_resume_restores_it(sim, tmp_path):
    settings = fast_settings(sim.base_url)
    msgs = [{"role": "user", "content": f"Fix the bug.\n```python\n{NAMES_SECRETS}```\nFAIL test_fetch\n"
                                        "  File \"fetch.py\", line 5, in fetch\nAssertionError"}]
    campaign, provider = make_provider(tmp_path / "c.db", settings)
    live = asyncio.run(provider.chat(CallKey("s/1"), stage="rollouts", model=MODEL, messages=msgs, seed=3,
                                     temperature=0.7, max_tokens=400))
    direct = together.Together(api_key="sim-dummy-key", base_url=sim.base_url, max_retries=0).chat.completions.create(
        model=MODEL, messages=msgs, seed=3, temperature=0.7, max_tokens=400).choices[0].message.content
    started, completed = events_of(campaign, "call.started")[0], events_of(campaign, "call.completed")[0]
    assert started.payload["messages"] == msgs, "the logged prompt is exactly what was sent"
    assert completed.payload["text"] == direct == live.text, "the logged reply is exactly what the model said"
    assert "secret = compute_value(x)" in started.payload["messages"][0]["content"] and MASK not in direct
    campaign.close()
    campaign, provider = make_provider(tmp_path / "c.db", settings)
    resumed = asyncio.run(provider.chat(CallKey("s/1"), stage="rollouts", model=MODEL, messages=msgs, seed=3,
                                        temperature=0.7, max_tokens=400))
    assert resumed.from_log and resumed.text == direct
    campaign.close()


def test_a_known_key_and_a_key_shaped_token_are_masked_in_prompt_reply_error_and_note(sim, tmp_path, monkeypatch,
                                                                                    cli):
    from dpo_tui.events.campaign import Campaign
    from dpo_tui.provider.catalog import build_price_book
    from dpo_tui.provider.provider import Provider
    from dpo_tui.provider.tokenizer import get_tokenizer

    key = "tgp_v1_" + secrets.token_urlsafe(32)
    other = "sk-" + secrets.token_hex(16)
    known = "plain" + secrets.token_hex(16)  # a known value of no key shape
    monkeypatch.setenv("TOGETHER_API_KEY", known)
    settings = fast_settings(sim.base_url)
    db = tmp_path / "c.db"
    book = build_price_book(None)
    bad_model = f"acme/{other}"
    book.prices[bad_model] = book.prices[MODEL]
    campaign = Campaign.create(db, name="t", actor="system")
    provider = Provider(settings, campaign, book, get_tokenizer())
    program = f'KEY = "{key}"\nOLD = "{known}"\ndef f(x):\n    return x - 1\n'
    msgs = [{"role": "user", "content": f"Fix it.\n```python\n{program}```\nFAIL test_f\nAssertionError"}]

    async def calls():
        await provider.chat(CallKey("s/1"), stage="rollouts", model=MODEL, messages=msgs, seed=1, max_tokens=400)
        with pytest.raises(CallGaveUp):
            await provider.chat(CallKey("s/2"), stage="rollouts", model=bad_model, messages=msgs, max_tokens=16)

    asyncio.run(calls())
    prompt_text = events_of(campaign, "call.started")[0].payload["messages"][0]["content"]
    reply = events_of(campaign, "call.completed")[0].payload["text"]
    errors = [e.payload["message"] for e in events_of(campaign, "call.attempt_failed")] + \
             [e.payload["reason"] for e in events_of(campaign, "call.failed")]
    assert errors and any("Unable to access model" in e for e in errors), errors
    campaign.close()
    code, _out, _err = cli("note", "--db", db, "--text", f"rotated {key} and {known}; {other} too")
    assert code == 0
    code, out, _err = cli("events", "--db", db, "--type", "note.added", "--jsonl")
    note = json.loads(out.splitlines()[-1])["payload"]["text"]
    assert note == f"rotated {MASK} and {MASK}; {MASK} too"
    for where, text in (("prompt", prompt_text), ("reply", reply), ("note", note), *(("error", e) for e in errors)):
        for value in (key, known, other):
            assert value not in text, f"{value[:6]}... leaked into the {where}"
    assert f'KEY = "{MASK}"' in prompt_text and f'OLD = "{MASK}"' in reply and f"acme/{MASK}" in errors[-1]


def test_a_code_line_in_a_note_survives(tmp_path, cli):
    db = tmp_path / "c.db"
    assert cli("init", "--db", db, "--name", "n")[0] == 0
    text = "the fix keeps `secret = compute_value(x)`; api_key = load_key(path) stays too"
    assert cli("note", "--db", db, "--text", text)[0] == 0
    code, out, _err = cli("events", "--db", db, "--type", "note.added", "--jsonl")
    assert json.loads(out.splitlines()[-1])["payload"]["text"] == text


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
