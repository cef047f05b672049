"""Canonical encoding and the hash chain.

Each event's hash is sha256 over its predecessor's hash and every stored field, joined by
the ASCII unit separator (0x1f). The payload enters as its stored canonical JSON text,
in which a raw 0x1f cannot occur (JSON escapes control characters), and the other
fields are checked to be free of control characters, so the encoding is unambiguous.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS_HASH = "0" * 64
# PRAGMA application_id of every campaign file: 'DPOT' in ASCII. Lets dpo-tui tell its
# own files from other programs' SQLite databases before reading anything else.
APPLICATION_ID = 0x44504F54
_sha256 = hashlib.sha256


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(payload: Any) -> str:
    """The one text form of a payload: sorted keys, no spaces, UTF-8, no NaN."""
    return _CANONICAL.encode(payload)


def event_hash(
    prev_hash: str,
    seq: int,
    campaign_id: str,
    type_: str,
    schema_version: int,
    actor: str,
    ts: str,
    payload_text: str,
) -> str:
    material = f"{prev_hash}\x1f{seq}\x1f{campaign_id}\x1f{type_}\x1f{schema_version}\x1f{actor}\x1f{ts}\x1f{payload_text}"
    return _sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def has_control_chars(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)
