"""Anchors: the head of a log, written down somewhere the operator cannot quietly edit.

A keyed checkpoint cannot notice a missing tail: delete the newest events back to a
checkpoint and what is left verifies. An anchor kept elsewhere (a ticket, a git commit,
an email) can: `dpo-tui audit --anchor FILE` fails unless the log still holds the anchored
prefix, i.e. the event at the anchor's seq still has the anchor's hash. A log that grew
past the anchor passes. One line of JSON:

    {"campaign_id": ..., "seq": N, "head_hash": <hash of event N>,
     "checkpoint_mac": <HMAC of that head under the audit key, when the key is at hand>,
     "ts": <when the anchor was made, UTC>}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dpo_tui.errors import InputError
from dpo_tui.events import checkpoint as checkpoints
from dpo_tui.events.store import EventStore, format_ts, utc_now

_HASH = re.compile(r"^[0-9a-f]{64}$")


def make_anchor(store: EventStore, key: bytes | None) -> dict[str, Any]:
    seq, head = store.head()
    anchor: dict[str, Any] = {"campaign_id": store.campaign_id, "seq": seq, "head_hash": head}
    if key is not None:
        anchor["checkpoint_mac"] = checkpoints.checkpoint_mac(key, store.campaign_id, seq, head)
    anchor["ts"] = format_ts(utc_now())
    return anchor


def anchor_line(anchor: dict[str, Any]) -> str:
    return json.dumps(anchor, separators=(", ", ": "))


def read_anchor(path: str | Path) -> dict[str, Any]:
    """A parsed anchor file; InputError naming the file and the problem otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the anchor ({exc.strerror or exc})") from None
    try:
        anchor = json.loads(text)
    except ValueError:
        raise InputError(f"{path}: not an anchor (not JSON)") from None
    if not isinstance(anchor, dict):
        raise InputError(f"{path}: not an anchor (not a JSON object)")
    if not isinstance(anchor.get("campaign_id"), str) or not anchor["campaign_id"]:
        raise InputError(f"{path}: anchor has no campaign_id")
    if not isinstance(anchor.get("seq"), int) or isinstance(anchor["seq"], bool) or anchor["seq"] < 1:
        raise InputError(f"{path}: anchor seq must be a whole number >= 1")
    if not isinstance(anchor.get("head_hash"), str) or not _HASH.match(anchor["head_hash"]):
        raise InputError(f"{path}: anchor head_hash must be 64 lowercase hex digits")
    mac = anchor.get("checkpoint_mac")
    if mac is not None and (not isinstance(mac, str) or not _HASH.match(mac)):
        raise InputError(f"{path}: anchor checkpoint_mac must be 64 lowercase hex digits")
    return anchor
