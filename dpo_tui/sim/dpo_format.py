"""Server-side checks of the DPO preference format (reference §3.8), line by line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
KEYS = {"input", "preferred_output", "non_preferred_output"}


@dataclass(frozen=True)
class Verdict:
    valid: bool
    nlines: int
    error: str = ""
    line: int = 0
    rule: str = ""


def _fail(line: int, rule: str, msg: str, nlines: int) -> Verdict:
    return Verdict(False, nlines, f"Line {line}: {msg} (rule: {rule})", line, rule)


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
    if "weight" in m and m["weight"] not in (0, 1):
        return "message_weight", f"{where}.weight must be 0 or 1"
    return None


def validate_dpo(content: bytes) -> Verdict:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return Verdict(False, 0, "File is not UTF-8 encoded (rule: utf8)", 0, "utf8")
    n = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        n += 1
        try:
            obj = json.loads(raw)
        except ValueError:
            return _fail(lineno, "json", "is not valid JSON", n)
        bad = check_line(obj)
        if bad:
            return _fail(lineno, bad[0], bad[1], n)
    if n == 0:
        return Verdict(False, 0, "File has no samples; the minimum is 1 (rule: min_samples)", 0, "min_samples")
    return Verdict(True, n)


def looks_like_dpo(content: bytes) -> bool:
    """Whether the first non-blank line has any preference key (else it is SFT-style data)."""
    for raw in content.decode("utf-8", "replace").splitlines():
        if raw.strip():
            try:
                obj = json.loads(raw)
            except ValueError:
                return False
            return isinstance(obj, dict) and bool(KEYS & obj.keys() - {"input"})
    return False


def read_pairs(content: bytes) -> list[dict]:
    return [json.loads(r) for r in content.decode("utf-8").splitlines() if r.strip()]
