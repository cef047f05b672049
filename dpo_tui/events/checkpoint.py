"""Keyed checkpoints: an HMAC of the chain's head under a key kept outside the campaign file.

The hash chain (chain.py) catches accidents: anyone can recompute it, so whoever can write
the file can also rewrite a row and re-hash everything after it. A checkpoint is the layer
that catches intent: a `chain.checkpoint` event carries

    mac = HMAC-SHA256(key, "dpo-tui.checkpoint.v1" 0x1f campaign_id 0x1f seq 0x1f head_hash)

of the event just before it (`seq`, `head_hash`), under the operator's secret key, and the
key's id (the first 16 hex digits of sha256(key)) so `audit` can say which key it needs.
Without the key nobody can make a checkpoint that verifies, so a history rewritten before
the last checkpoint fails at the first checkpoint after the change.

The key: 32 random bytes as 64 hex digits in the file named by DPO_TUI_AUDIT_KEY_FILE, by
default $XDG_CONFIG_HOME/dpo-tui/audit.key (~/.config/dpo-tui/audit.key). The first command
that appends creates it (mode 0600, its folder 0700); `audit` and `anchor` only read it.
The key itself is never logged, printed or exported: only its id is.

The store appends a checkpoint, in the same transaction as the events it covers, after any
`decision.*` event or stage-end event, and whenever `every` events (DPO_TUI_CHECKPOINT_EVERY,
default 1000) have passed since the last one; the runner also seals each stage's end.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field

from dpo_tui.errors import InputError, StoreError
from dpo_tui.events.types import Payload, event_type

KEY_ENV = "DPO_TUI_AUDIT_KEY_FILE"
EVERY_ENV = "DPO_TUI_CHECKPOINT_EVERY"
DEFAULT_EVERY = 1000
CHECKPOINT_TYPE = "chain.checkpoint"
MAC_DOMAIN = "dpo-tui.checkpoint.v1"
# Events that end a stage: each is followed by a checkpoint in its own transaction.
STAGE_END_TYPES = frozenset({"budget.estimated", "budget.pilot_calibrated", "split.approved", "split.unfrozen",
                             "pairs.exported", "train.job_finished", "eval.results", "endpoint.stopped"})
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


@event_type(CHECKPOINT_TYPE, version=1)
class ChainCheckpoint(Payload):
    seq: int = Field(ge=1, description="the event this checkpoint covers: the one just before it")
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="that event's hash")
    mac: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 under the operator's key")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="sha256(key)[:16]: which key made it")
    every: int = Field(ge=1, description="the writer's interval: at most this many events between checkpoints")
    reason: Literal["decision", "stage", "interval", "seal"]


def needs_checkpoint(type_: str) -> str | None:
    """The reason an event of this type is checkpointed at once, or None."""
    if type_.startswith("decision."):
        return "decision"
    if type_ in STAGE_END_TYPES:
        return "stage"
    return None


def checkpoint_every() -> int:
    raw = os.environ.get(EVERY_ENV)
    if raw is None or raw == "":
        return DEFAULT_EVERY
    try:
        every = int(raw)
    except ValueError:
        every = 0
    if every < 1:
        raise InputError(f"{EVERY_ENV}={raw!r}: a whole number of events, at least 1")
    return every


def key_path() -> Path:
    raw = os.environ.get(KEY_ENV)
    if raw:
        return Path(raw).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "dpo-tui" / "audit.key"


def _parse(path: Path, text: str) -> bytes:
    value = text.strip()
    if not _KEY_RE.match(value):
        raise StoreError(f"{path}: not a dpo-tui audit key (64 lowercase hex digits expected)")
    return bytes.fromhex(value)


def load_key(path: Path | None = None) -> bytes | None:
    """The operator's key, or None when there is none at its path (never creates one)."""
    path = path or key_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the audit key ({exc.strerror or exc})") from None
    return _parse(path, text)


def load_or_create_key(path: Path | None = None) -> bytes:
    """The operator's key, created (mode 0600) when there is none yet."""
    path = path or key_path()
    key = load_key(path)
    if key is not None:
        return key
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now
        return load_key(path) or _parse(path, "")
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the audit key ({exc.strerror or exc}); set {KEY_ENV} "
                         "to a writable path kept outside the campaign") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return load_key(path) or _parse(path, "")


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def checkpoint_mac(key: bytes, campaign_id: str, seq: int, head_hash: str) -> str:
    material = f"{MAC_DOMAIN}\x1f{campaign_id}\x1f{seq}\x1f{head_hash}".encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()


def verify_mac(key: bytes, campaign_id: str, seq: int, head_hash: str, mac: str) -> bool:
    return hmac.compare_digest(checkpoint_mac(key, campaign_id, seq, head_hash), mac)


def checkpoint_payload(key: bytes, campaign_id: str, seq: int, head_hash: str, *, every: int,
                       reason: str) -> dict:
    return {"seq": seq, "head_hash": head_hash, "mac": checkpoint_mac(key, campaign_id, seq, head_hash),
            "key_id": key_id(key), "every": every, "reason": reason}
