"""Qwen token counting (exact with Qwen's ranks, labelled approximate without) and the price table."""

from __future__ import annotations

import pytest

from dpo_tui.errors import InputError
from dpo_tui.provider import tokenizer as tk
from dpo_tui.provider.prices import load_prices

QWEN = "Qwen/Qwen2.5-7B-Instruct"


def _exact() -> tk.QwenTokenizer:
    tok = tk.QwenTokenizer()
    if not tok.exact:
        pytest.fail("Qwen ranks not found: install the qwen extra (dashscope) or set DPO_TUI_QWEN_TIKTOKEN")
    return tok


def test_exact_ids_match_qwen():
    tok = _exact()
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.encode("<|im_start|>user") == [151644, 872]
    assert tk.count_text(QWEN, "Hello world") == tk.TokenCount(2, True)


def test_chat_template_overhead():
    tok = _exact()
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hello world"}]
    rendered = tok.render_chat(msgs)
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHello world<|im_end|>\n" \
                       "<|im_start|>assistant\n"
    n = tk.count_chat(QWEN, msgs)
    assert n.exact and n.n == tok.count_text(rendered).n
    # no system message: Qwen2.5's template adds its default one
    assert tk.QWEN25_DEFAULT_SYSTEM in tok.render_chat(msgs[1:])
    info = tk.tokenizer_info(QWEN)
    assert info["exact"] and info["special_tokens"]["<|im_end|>"] == 151645


def test_approximate_without_ranks_is_labelled(monkeypatch):
    monkeypatch.setattr(tk, "_dashscope_ranks", lambda: None)
    monkeypatch.delenv(tk.ENV_RANKS, raising=False)
    tok = tk.QwenTokenizer()
    c = tok.count_text("def f(x):\n    return x + 1\n")
    assert c.exact is False and 8 <= c.n <= 20
    assert tok.count_chat([{"role": "user", "content": "hi"}]).exact is False
    with pytest.raises(RuntimeError):
        tok.encode("x")


def test_ranks_path_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(tk.ENV_RANKS, str(tmp_path / "missing.tiktoken"))
    with pytest.raises(FileNotFoundError):
        tk.QwenTokenizer()
    with pytest.raises(ValueError):
        tk.count_text("meta-llama/Llama-3-8b", "x")


def test_price_table():
    t = load_prices()
    assert t.date and t.source
    # the July 2026 snapshot: 72B-Turbo left the serverless catalogue (dedicated on 2x H100 only)
    assert t.chat_cost("Qwen/Qwen2.5-72B-Instruct-Turbo", 1_000_000, 0) is None
    assert t.instances[t.dedicated["Qwen/Qwen2.5-72B-Instruct-Turbo"]].price_cents_per_hour == 2 * 549
    assert {n: i.price_cents_per_hour for n, i in t.instances.items() if i.gpu_count == 1} == {
        "1xnvidia-h100-80gb": 549, "1xnvidia-h200-141gb": 665, "1xnvidia-b200-180gb": 899}
    assert t.chat_cost("Qwen/Qwen2.5-7B-Instruct-Turbo", 0, 1_000_000) == pytest.approx(0.30)
    assert t.training["Qwen/Qwen2.5-7B-Instruct"].assumption is True
    assert t.training_cost(QWEN, 500_000, 2) == pytest.approx(1.20)
    inst = t.instances[t.dedicated[QWEN]]
    assert isinstance(inst.price_cents_per_hour, int)
    assert t.endpoint_cost(inst.name, 61) == pytest.approx(2 * inst.price_cents_per_hour / 100 / 60)


def test_bad_price_table(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('source = "x"\n')
    with pytest.raises(InputError, match="date"):
        load_prices(p)
