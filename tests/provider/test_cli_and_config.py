"""`dpo-tui models / tokens / doctor` through the real program, settings precedence and the
/v1 trap, and the adaptive limiter's AIMD behaviour."""

from __future__ import annotations

import asyncio
import json

import pytest

from dpo_tui.config import load_settings
from dpo_tui.errors import InputError
from dpo_tui.provider.retry import AdaptiveLimiter

from .conftest import MODEL


def test_models_json_against_the_simulator(cli):
    code, out, err = cli("models", "--sim", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["simulated"] is True
    by = {m["model"]: m for m in data["models"]}
    assert by[MODEL]["served_as"] == ["serverless"] and by[MODEL]["price"]["input_usd_per_mtok"] == 0.30
    assert "catalogue http://127.0.0.1:" in by[MODEL]["price"]["source"]
    base = by["Qwen/Qwen2.5-7B-Instruct"]
    assert base["served_as"] == ["dedicated", "fine_tuning"] and base["price"] is None


def test_models_says_what_to_do_when_serving_does_not_fit(cli):
    code, out, err = cli("models", "--sim", "--need", "serverless", "--need", "lora",
                         "Qwen/Qwen2.5-7B-Instruct", MODEL, "Qwen/Qwen2.5-7B-Instrct")
    assert code == 1
    assert "Qwen/Qwen2.5-7B-Instruct is not served serverless: start a dedicated endpoint" in out
    assert f"a LoRA on {MODEL} needs a dedicated endpoint that hosts adapters" in out
    assert "NOT IN CATALOGUE" in out and "did you mean Qwen/Qwen2.5-7B-Instruct" in out
    assert "a LoRA on Qwen/Qwen2.5-7B-Instruct needs a dedicated endpoint ($" not in out
    assert "a LoRA on Qwen/Qwen2.5-7B-Instruct needs a dedicated endpoint (dedicated endpoint 1xnvidia-h100-80gb" in out
    code, out, err = cli("models", "--sim", "--need", "fine_tuning", "Qwen/Qwen2.5-7B-Instruct")
    assert code == 0, out + err


def test_models_unreachable_is_one_line_and_exit_1(cli):
    code, out, err = cli("models", "--base-url", "http://127.0.0.1:9", MODEL)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("dpo-tui: error: model catalogue unreachable at http://127.0.0.1:9")
    assert "unknown (catalogue unreachable)" in out


def test_tokens_counts_text_and_chat(cli, tmp_path):
    text = tmp_path / "p.py"
    text.write_text("def add(a, b):\n    return a + b\n")
    code, out, err = cli("tokens", "--model", MODEL, text, "--json")
    assert code == 0 and json.loads(out)["exact"] is True and json.loads(out)["kind"] == "text"
    chat = tmp_path / "m.json"
    chat.write_text(json.dumps({"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                             {"role": "user", "content": "What is 2+2?"}]}))
    code, out, err = cli("tokens", "--model", MODEL, chat)
    assert code == 0 and out.startswith("26 tokens, chat (ChatML template")  # = len(IDS_C) in test_tokens
    code, out, err = cli("tokens", "--model", "meta-llama/Llama-3-8b-chat-hf", chat)
    assert code == 2 and err.strip() == "dpo-tui: error: no tokenizer known for model 'meta-llama/Llama-3-8b-chat-hf' (only the Qwen2.5 family)"
    code, out, err = cli("tokens", "--model", MODEL, tmp_path / "missing.txt")
    assert code == 2 and "missing.txt: no such file" in err


def test_doctor_live_against_the_simulator(cli):
    code, out, err = cli("doctor", "--sim", "--live")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("(simulated")
    assert any(line.startswith("live call: Qwen/Qwen2.5-7B-Instruct-Turbo") and "costs at most $" in line for line in lines)
    cost_line = next(i for i, line in enumerate(lines) if line.startswith("live call:"))
    made_line = next(i for i, line in enumerate(lines) if line.startswith("ok    live call:"))
    assert cost_line < made_line, "the cost is shown before the call is made"
    for name in ("api key", "base url", "key accepted", "prices", "tokenizer", "sandbox"):
        assert any(line.startswith(f"ok    {name}:") for line in lines), name


def test_doctor_without_a_key_fails_plainly(cli):
    code, out, err = cli("doctor", "--base-url", "https://api.together.ai")
    assert code == 1
    assert "FAIL  api key: missing: set TOGETHER_API_KEY" in out


def test_base_url_with_v1_is_refused_in_one_line(dpo_tui_proc):
    res = dpo_tui_proc("models", "--base-url", "http://127.0.0.1:8080/v1")
    assert res.returncode == 2
    assert res.stderr.strip() == ("dpo-tui: error: base_url 'http://127.0.0.1:8080/v1' ends in /v1; the Together SDK "
                                  "adds /v1 itself (requests would go to /v1/v1/...): use http://127.0.0.1:8080")
    assert "Traceback" not in res.stderr


def test_settings_precedence_and_secret(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('api_key = "from-config-123"\nbase_url = "http://127.0.0.1:7000/"\nconcurrency = 7\n')
    s = load_settings(cfg, env={})
    assert s.key_value() == "from-config-123" and s.api_key_source == f"config:{cfg}"
    assert s.base_url == "http://127.0.0.1:7000" and s.concurrency == 7
    assert "from-config-123" not in repr(s)
    s = load_settings(cfg, env={"TOGETHER_API_KEY": "from-env-456", "TOGETHER_BASE_URL": "http://localhost:1"})
    assert s.key_value() == "from-env-456" and s.api_key_source == "env:TOGETHER_API_KEY"
    assert s.base_url == "http://localhost:1"
    assert load_settings(cfg, env={}, concurrency=3, base_url=None).concurrency == 3
    xdg = tmp_path / "xdg"
    (xdg / "dpo-tui").mkdir(parents=True)
    (xdg / "dpo-tui" / "config.toml").write_text("[provider]\nmax_attempts = 9\n")
    assert load_settings(None, env={"XDG_CONFIG_HOME": str(xdg)}).max_attempts == 9
    with pytest.raises(InputError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(InputError, match="concurrency"):
        load_settings(cfg, env={}, concurrency=0)
    with pytest.raises(InputError, match="no Together API key"):
        load_settings(None, env={}).key_value()


def test_limiter_halves_on_429_and_creeps_back():
    clock = [0.0]
    lim = AdaptiveLimiter(32, cooldown_s=1.0, clock=lambda: clock[0])

    async def scenario():
        for _ in range(3):  # a burst of 429s inside one cooldown window halves once
            await lim.acquire()
            lim.release(rate_limited=True)
        assert lim.limit == 16
        clock[0] = 2.0
        await lim.acquire()
        lim.release(rate_limited=True)
        assert lim.limit == 8
        for _ in range(200):
            await lim.acquire()
            lim.release(ok=True)
        assert 8 < lim.limit <= 32
        # the window is enforced: only int(limit) attempts hold slots at once
        lim.limit = 2.0
        await lim.acquire()
        await lim.acquire()
        third = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0.01)
        assert not third.done()
        lim.release(ok=True)
        await asyncio.wait_for(third, 1)

    asyncio.run(scenario())
    assert lim.stats().decreases == 2


def test_stage_availability_check_names_every_problem(sim):
    from dpo_tui.provider.catalog import ensure_available, fetch_catalogue, load_price_book
    from dpo_tui.provider.client import sync_client

    from .conftest import fast_settings

    settings = fast_settings(sim.base_url)
    book = load_price_book(settings)
    assert book.source.startswith(f"catalogue {sim.base_url}/v2/supported-models")
    assert book.prices[MODEL].source == f"catalogue {sim.base_url}/v2/supported-models"
    catalogue = fetch_catalogue(sync_client(settings))
    ok = ensure_available(catalogue, {MODEL: ("serverless",), "Qwen/Qwen2.5-7B-Instruct": ("fine_tuning", "lora")},
                          book)
    assert [r.ok for r in ok] == [True, True]
    with pytest.raises(InputError) as info:
        ensure_available(catalogue, {"Qwen/Qwen2.5-7B-Instruct": ("serverless",), MODEL: ("fine_tuning",)}, book)
    assert "is not served serverless: start a dedicated endpoint" in info.value.message
    assert f"{MODEL} is not a fine-tunable base" in info.value.message
    offline = load_price_book(fast_settings("http://127.0.0.1:9", connect_timeout_s=0.2))
    assert offline.source == "shipped table" and "live catalogue unreachable" in offline.notes[0]
