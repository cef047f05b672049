"""Together's DPO preference format, line by line: the one set of rules the product's
pre-upload check (domain/export.py, campaign/train.py) and the simulator's server-side
check (sim/dpo_format.py) both import (../shared/reference/together-api.md §3.8).

File-level checks (UTF-8, one JSON object per line, at least one sample, size) are the
SDK's own `together.lib.utils.files.check_file`, which the product runs before every
upload; what it does not cover is here (the format) and in `pair_problem` (the product's
own: chosen != rejected, the DPO context both answers share).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
KEYS = {"input", "preferred_output", "non_preferred_output"}


def check_line(obj: Any) -> tuple[str, str] | None:
    """(rule, message) of the first rule the line breaks, or None when it is a valid pair."""
    if not isinstance(obj, dict):
        return "line_is_object", "each line must be a JSON object"
    missing = sorted(KEYS - obj.keys())
    if missing:
        return "required_columns", f"missing column(s) {', '.join(missing)}; a preference line has exactly " \
                                   "input, preferred_output and non_preferred_output"
    extra = sorted(obj.keys() - KEYS)
    if extra:
        return "extra_column", f"found extra column(s) {', '.join(extra)}"
    inp = obj["input"]
    if not isinstance(inp, dict) or "messages" not in inp:
        return "input_messages", "input must be an object with a messages list"
    msgs = inp["messages"]
    if not isinstance(msgs, list) or not msgs:
        return "input_messages", "input.messages must be a non-empty list"
    for i, m in enumerate(msgs):
        bad = _check_message(m, f"input.messages[{i}]")
        if bad:
            return bad
    if msgs[-1].get("role") == "assistant":
        return "last_message_not_assistant", "the last input.messages entry must not have role assistant"
    for key in ("preferred_output", "non_preferred_output"):
        out = obj[key]
        if not isinstance(out, list) or len(out) != 1:
            return f"{key}_one_message", f"{key} must be a list of exactly one message"
        bad = _check_message(out[0], f"{key}[0]")
        if bad:
            return bad
        if out[0].get("role") != "assistant":
            return f"{key}_role", f"{key}[0].role must be assistant"
    return None


def _check_message(m: Any, where: str) -> tuple[str, str] | None:
    if not isinstance(m, dict):
        return "message_object", f"{where} must be an object with role and content"
    if m.get("role") not in ROLES:
        return "message_role", f"{where}.role must be one of {', '.join(ROLES)}"
    content = m.get("content")
    if not isinstance(content, (str, list)):
        return "message_content", f"{where}.content must be a string (or a list of content parts)"
    extra = sorted(set(m) - {"role", "content", "weight"})
    if extra:
        return "message_keys", f"{where} has unexpected key(s) {', '.join(extra)}"
    if "weight" in m and m["weight"] not in (0, 1):
        return "message_weight", f"{where}.weight must be 0 or 1"
    return None


def pair_problem(obj: dict[str, Any], *, max_seq_length: int | None = None,
                 count: Callable[[dict[str, Any]], int] | None = None) -> tuple[str, str] | None:
    """The product's own checks of a valid line, beyond Together's format: the two answers
    differ, and prompt + chosen + rejected fit the DPO context (`count` gives the tokens)."""
    chosen, rejected = obj["preferred_output"][0].get("content"), obj["non_preferred_output"][0].get("content")
    if chosen == rejected:
        return "chosen_equals_rejected", "preferred and non-preferred answers are the same: the pair teaches nothing"
    if max_seq_length is not None and count is not None:
        tokens = count(obj)
        if tokens > max_seq_length:
            return "dpo_context", (f"prompt + chosen + rejected is {tokens} tokens, over training.max_seq_length "
                                   f"{max_seq_length} (the DPO context both answers share)")
    return None
