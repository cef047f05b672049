"""Redaction of secrets from anything that may reach the log, the screen or an export.

By value, not by word: every string is masked for the exact values of the secrets this
process knows (the configured API key, `TOGETHER_API_KEY` of the environment, and every
key handed to a Redactor or to `install_log_redaction`) and for tokens shaped like API
keys (`tgp_v1_...`, `sk-...`, the token of an `Authorization: Bearer ...` header), and for
nothing else: `secret = compute_value(x)` in a model's program stays as written, so the
log holds exactly what was said, minus secrets. Applied to request messages, response
text, error messages and operator notes before they become event payloads.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
_KEY_SHAPED = re.compile(
    r"\btgp_v\d+_[A-Za-z0-9_-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|(?i:(?<=authorization: bearer )|(?<=authorization:bearer ))[A-Za-z0-9._~+/=-]{8,}")
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()


def remember_secrets(secrets: Iterable[str | None]) -> None:
    """Secret values every Redactor of this process masks from now on."""
    with _KNOWN_LOCK:
        _KNOWN.update(s for s in secrets if s and len(s) >= 8)


def known_secrets() -> set[str]:
    env = os.environ.get("TOGETHER_API_KEY")
    with _KNOWN_LOCK:
        return _KNOWN | ({env} if env and len(env) >= 8 else set())


class Redactor:
    """`redact(text)` and `redact_obj(json_like)`: `secrets` (remembered for the whole
    process) and every other known secret value masked, and key-shaped tokens."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.own = {s for s in secrets if s and len(s) >= 8}
        remember_secrets(self.own)

    @property
    def secrets(self) -> list[str]:
        # Longest first, so a secret that contains another is masked whole.
        return sorted(self.own | known_secrets(), key=len, reverse=True)

    def redact(self, text: str) -> str:
        if not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _KEY_SHAPED.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {k: self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v) for v in obj]
        return obj


# The loggers the SDK stack emits from. Their DEBUG records include request options (the
# messages, which may quote a secret); a filter on each emitting logger redacts the record
# before any handler sees it. Records are only built when a level is enabled: no cost otherwise.
SDK_LOGGERS = ("together", "together._base_client", "httpx", "httpcore.http11", "httpcore.connection",
               "httpcore.proxy")


class RedactingFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()

    def add(self, secrets: Iterable[str | None]) -> None:
        self.redactor = Redactor([*self.redactor.secrets, *secrets])

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        record.msg, record.args = self.redactor.redact(message), None
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        return True


_LOG_FILTER = RedactingFilter()


def install_log_redaction(secrets: Iterable[str | None]) -> None:
    """Redact `secrets` (and key-like strings) from every record the SDK stack logs."""
    _LOG_FILTER.add(secrets)
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def operator_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Free text an operator typed (a reason, a note) as it may be logged: the API key of the
    environment, every secret value the process knows and any key-shaped token masked, like
    everything else that reaches the log."""
    return Redactor([os.environ.get("TOGETHER_API_KEY"), *secrets]).redact(text)
