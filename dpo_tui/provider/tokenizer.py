"""Qwen token counting: tiktoken with Qwen's own BPE ranks, plus the ChatML template.

The ranks file (`qwen.tiktoken`, 151,643 merges) is looked up, in order, from an explicit
path, the env var DPO_TUI_QWEN_TIKTOKEN, and the copy shipped inside the optional `dashscope`
package (`pip install dpo-tui[qwen]`; found without importing dashscope). Without it the
counts fall back to an approximation from Qwen's pre-tokenizer, returned as
`TokenCount(n, exact=False)`: never silently exact. Nothing here touches the network
(tiktoken's own downloadable encodings are never used).
"""

from __future__ import annotations

import binascii
import importlib.util
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import regex

ENV_RANKS = "DPO_TUI_QWEN_TIKTOKEN"
# Qwen (1, 2, 2.5) pre-tokenizer, as in Qwen's tokenization_qwen.py / dashscope's qwen_tokenizer.py.
PAT_STR = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
           r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_START_ID = 151643
SPECIAL_TOKENS = {ENDOFTEXT: 151643, IM_START: 151644, IM_END: 151645}
# Qwen2.5's chat template inserts this system message when the conversation has none.
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Approximation: measured ratio of BPE tokens to pre-tokens on English prose and Python code.
_APPROX_TOKENS_PER_PRETOKEN = 1.15
_PRETOKEN_RE = regex.compile(PAT_STR)


@dataclass(frozen=True)
class TokenCount:
    n: int
    exact: bool

    def __int__(self) -> int:
        return self.n

    def __add__(self, other: "TokenCount") -> "TokenCount":
        return TokenCount(self.n + other.n, self.exact and other.exact)


def _dashscope_ranks() -> Path | None:
    try:
        spec = importlib.util.find_spec("dashscope")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "resources" / "qwen.tiktoken"
        if p.is_file():
            return p
    return None


def find_ranks(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Where Qwen's BPE ranks are, or None. An explicit or env path that is missing is an error."""
    for candidate in (path, os.environ.get(ENV_RANKS) or None):
        if candidate:
            p = Path(candidate)
            if not p.is_file():
                raise FileNotFoundError(f"Qwen ranks file not found: {p}")
            return p
    return _dashscope_ranks()


@lru_cache(maxsize=4)
def _encoding(ranks_path: str) -> Any:
    import tiktoken

    lines = (line.split() for line in Path(ranks_path).read_bytes().splitlines() if line)
    ranks = {binascii.a2b_base64(tok): int(rank) for tok, rank in lines}  # 151k lines, once per process
    special = {t: i for t, i in SPECIAL_TOKENS.items()}
    special.update({f"<|extra_{i}|>": SPECIAL_START_ID + 3 + i for i in range(205)})
    return tiktoken.Encoding("Qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=special)


class QwenTokenizer:
    """Counts tokens for the Qwen2.5 family (one vocabulary for every size)."""

    def __init__(self, ranks_path: str | os.PathLike[str] | None = None) -> None:
        self.ranks_path = find_ranks(ranks_path)
        self.exact = self.ranks_path is not None

    def encode(self, text: str) -> list[int]:
        if not self.exact:
            raise RuntimeError("Qwen ranks are not available; only approximate counts")
        enc = _encoding(str(self.ranks_path))
        return enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")

    def count_text(self, text: str) -> TokenCount:
        if self.exact:
            return TokenCount(len(self.encode(text)), True)
        n = 0
        for special in SPECIAL_TOKENS:  # specials are one token each even when approximating
            n += text.count(special)
            text = text.replace(special, " ")
        pre = len(_PRETOKEN_RE.findall(unicodedata.normalize("NFC", text)))
        return TokenCount(n + round(pre * _APPROX_TOKENS_PER_PRETOKEN), False)

    def render_chat(self, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The ChatML text Qwen2.5's template renders (tools and images not modelled)."""
        msgs = list(messages)
        parts: list[str] = []
        if not msgs or msgs[0].get("role") != "system":
            parts.append(f"{IM_START}system\n{QWEN25_DEFAULT_SYSTEM}{IM_END}\n")
        for m in msgs:
            parts.append(f"{IM_START}{m.get('role', 'user')}\n{_content_text(m.get('content'))}{IM_END}\n")
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)

    def count_chat(self, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool = True) -> TokenCount:
        return self.count_text(self.render_chat(messages, add_generation_prompt))

    def count_completion(self, text: str) -> TokenCount:
        """Tokens of a generated answer, including the closing <|im_end|>."""
        return self.count_text(text) + TokenCount(1, True)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts: count the text parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


@lru_cache(maxsize=8)
def get_tokenizer(ranks_path: str | None = None) -> QwenTokenizer:
    return QwenTokenizer(ranks_path)


def _check_model(model: str) -> None:
    if "qwen" not in model.lower():
        # Every model the product and the simulator use is Qwen2.5; say so rather than guess.
        raise ValueError(f"no tokenizer known for model {model!r} (only the Qwen2.5 family)")


def count_text(model: str, text: str, ranks_path: str | None = None) -> TokenCount:
    _check_model(model)
    return get_tokenizer(ranks_path).count_text(text)


def count_chat(model: str, messages: Iterable[Mapping[str, Any]], ranks_path: str | None = None) -> TokenCount:
    _check_model(model)
    return get_tokenizer(ranks_path).count_chat(messages)


def tokenizer_info(model: str, ranks_path: str | None = None) -> dict[str, Any]:
    _check_model(model)
    tok = get_tokenizer(ranks_path)
    return {"family": "qwen2.5", "exact": tok.exact, "ranks_path": str(tok.ranks_path) if tok.ranks_path else None,
            "template": "chatml", "default_system": QWEN25_DEFAULT_SYSTEM,
            "special_tokens": dict(SPECIAL_TOKENS), "pattern": PAT_STR}
