"""Server-side checks of the DPO preference format (reference §3.8), line by line, with the
rules the product's pre-upload check uses too (dpo_tui/domain/preference_format.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dpo_tui.domain.preference_format import KEYS, ROLES, check_line  # noqa: F401 - the one set of rules


@dataclass(frozen=True)
class Verdict:
    valid: bool
    nlines: int
    error: str = ""
    line: int = 0
    rule: str = ""


def _fail(line: int, rule: str, msg: str, nlines: int) -> Verdict:
    return Verdict(False, nlines, f"Line {line}: {msg} (rule: {rule})", line, rule)


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
