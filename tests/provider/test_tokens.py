"""Qwen token counts from Qwen's own BPE ranks match published token ids; the approximate
fallback's error is measured and shown, and it is labelled approximate wherever it is used.

Sources of the expected ids (each published next to the text it encodes):
  [A] A public Qwen2 port's test that asserts `AutoTokenizer.from_pretrained(repo)` output for
      "Qwen/Qwen2-0.5B-Instruct" and "Qwen/Qwen2.5-0.5B-Instruct" (`_helper_test_qwen2_inputs`:
      `assert input_ids == inputs_target`), for the chat "You are a helpful and truthful
      assistant. You should think step-by-step." / "How many r in strawberry.", and the
      decoded continuations `outputs_target_trunc` / `completion_target_trunc` of both models.
  [B] Alibaba's llumnix tests (`generate_engine_core_request`, "tokenizer by Qwen2.5-7B"):
      system "You are a helpful assistant.", user "您好, 请从 1 数到 10000000.".
  [C] The Qwen2 chat prefix seen in Qwen2-VL / vLLM examples: "What is 2+2?".
  Special tokens: Qwen2.5 tokenizer_config.json (<|endoftext|> 151643, <|im_start|> 151644,
  <|im_end|> 151645).
"""

from __future__ import annotations

import asyncio
import statistics

import pytest

from dpo_tui.provider.events import CALLS
from dpo_tui.provider.provider import CallKey, Provider
from dpo_tui.provider.catalog import build_price_book
from dpo_tui.provider.tokenizer import QwenTokenizer, get_tokenizer
from tests.conftest import SHARED

from .conftest import MODEL, events_of, fast_settings

SYS_A = "You are a helpful and truthful assistant. You should think step-by-step."
IDS_A = [151644, 8948, 198, 2610, 525, 264, 10950, 323, 89867, 17847, 13, 1446, 1265, 1744, 3019, 14319, 29208, 13,
         151645, 198, 151644, 872, 198, 4340, 1657, 435, 304, 72600, 13, 151645, 198, 151644, 77091, 198]
TEXT_A2 = 'The number of "r" in the word "strawberry" is 2.'
IDS_A2 = [785, 1372, 315, 330, 81, 1, 304, 279, 3409, 330, 495, 672, 15357, 1, 374, 220, 17, 13]
TEXT_A25 = ('To determine how many "r"s are in the word "strawberry," we need to count each individual "r" in the '
            'given word.\n\nLet\'s break it down:\n\n1. **First \'r\':** The first letter of "strawberry" is "s."\n'
            '   - Count: 1\n\n2. **Second \'r\':**\n   - The second letter of "strawberry" is "w."\n   - Count: 1\n\n')
IDS_A25 = [1249, 8253, 1246, 1657, 330, 81, 40787, 525, 304, 279, 3409, 330, 495, 672, 15357, 1335, 582, 1184, 311,
           1760, 1817, 3842, 330, 81, 1, 304, 279, 2661, 3409, 382, 10061, 594, 1438, 432, 1495, 1447, 16, 13, 3070,
           5338, 364, 81, 1210, 334, 576, 1156, 6524, 315, 330, 495, 672, 15357, 1, 374, 330, 82, 10040, 256, 481,
           4504, 25, 220, 16, 271, 17, 13, 3070, 15666, 364, 81, 1210, 1019, 256, 481, 576, 2086, 6524, 315, 330,
           495, 672, 15357, 1, 374, 330, 86, 10040, 256, 481, 4504, 25, 220, 16, 271]
IDS_B = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 111308, 11, 220, 14880,
         45181, 220, 16, 47685, 26939, 220, 16, 15, 15, 15, 15, 15, 15, 15, 13, 151645, 198, 151644, 77091, 198]
IDS_C = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 3838, 374, 220, 17, 10,
         17, 30, 151645, 198, 151644, 77091, 198]


@pytest.fixture(scope="module")
def exact() -> QwenTokenizer:
    tok = get_tokenizer()
    assert tok.exact, "Qwen's BPE ranks (dashscope's qwen.tiktoken, the [qwen] extra) are needed for this test"
    return tok


def approximate() -> QwenTokenizer:
    tok = QwenTokenizer()
    tok.ranks_path, tok.exact = None, False  # as on a machine without the ranks file
    return tok


@pytest.mark.parametrize("messages, ids", [
    ([{"role": "system", "content": SYS_A}, {"role": "user", "content": "How many r in strawberry."}], IDS_A),
    ([{"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "您好, 请从 1 数到 10000000."}], IDS_B),
    ([{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is 2+2?"}], IDS_C),
], ids=["A-qwen2-chat", "B-qwen2.5-7b-chinese", "C-qwen2-chat"])
def test_chat_ids_match_published(exact, messages, ids):
    assert exact.encode(exact.render_chat(messages)) == ids
    assert exact.count_chat(messages).n == len(ids) and exact.count_chat(messages).exact


@pytest.mark.parametrize("text, ids", [(TEXT_A2, IDS_A2), (TEXT_A25, IDS_A25)], ids=["A-qwen2-answer", "A-qwen2.5-answer"])
def test_text_ids_match_published(exact, text, ids):
    assert exact.encode(text) == ids
    assert exact.count_completion(text).n == len(ids) + 1  # + the closing <|im_end|>


def test_approximation_error_is_measured_and_shown(exact, capsys):
    corpus = {p.name: p.read_text() for p in sorted((SHARED / "benchmarks/quixbugs/python_programs").glob("*.py"))}
    corpus.update({"A25": TEXT_A25, "A2": TEXT_A2, "design-prose": "Every API call is logged with its idempotency "
                   "key, model, parameters, seed, request, response, usage tokens, latency and cost. " * 20})
    assert len(corpus) > 20, "the QuixBugs programs are in ../shared/benchmarks"
    approx = approximate()
    errors = []
    for text in corpus.values():
        e, a = exact.count_text(text), approx.count_text(text)
        assert e.exact and not a.exact, "an approximate count is never labelled exact"
        errors.append((a.n - e.n) / e.n)
    mean_abs = statistics.mean(abs(x) for x in errors)
    worst = max(errors, key=abs)
    with capsys.disabled():
        print(f"\n[tokenizer] approximate vs exact Qwen BPE over {len(errors)} texts: mean |error| "
              f"{mean_abs:.1%}, mean signed {statistics.mean(errors):+.1%}, worst {worst:+.1%}")
    assert mean_abs < 0.15 and abs(worst) < 0.35


def test_approximate_estimates_are_labelled_in_the_log_and_padded(sim, tmp_path):
    from dpo_tui.events.campaign import Campaign

    campaign = Campaign.create(tmp_path / "c.db", name="approx", actor="system")
    provider = Provider(fast_settings(sim.base_url), campaign, build_price_book(None), approximate())
    msgs = [{"role": "user", "content": "def f(x):\n    return x + 1\n"}]
    asyncio.run(provider.chat(CallKey("a/1"), stage="rollouts", model=MODEL, messages=msgs, max_tokens=10))
    (started,) = events_of(campaign, "call.started")
    (done,) = events_of(campaign, "call.completed")
    assert started.payload["est_exact"] is False and done.payload["est_exact"] is False
    est = started.payload["est_prompt_tokens"]
    price = started.payload["price"]["input_usd_per_mtok"]
    assert started.payload["reserved_usd"] > (est + 10) * price / 1e6, "an approximate estimate is padded"
    calib = campaign.state.to_json()["calls"]["estimate_calibration"]
    assert calib["approximate_estimates"] == 1
    assert calib["usage_over_estimate"] == pytest.approx(done.payload["usage"]["prompt_tokens"] / est)
    assert campaign.state.part(CALLS).est_approximate == 1
    campaign.close()
