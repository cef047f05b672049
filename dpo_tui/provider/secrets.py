"""Redaction of secrets from anything that may reach the log, the screen or an export.

Three nets, applied to every string: the exact values of the configured secrets (the
API key), `Bearer <token>` headers, and key-like strings (`tgp_v1_...`, `sk-...`,
`key=...`/`"api_key": "..."` assignments). Redaction is applied to request messages,
response text and error messages before they become event payloads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
# One pass over the text: key-like tokens are masked whole; for `name = value` assignments the
# name and separator are kept and only the value is masked.
_SECRETISH = re.compile(
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{8,})"
    r"|\btgp_v\d+_[A-Za-z0-9_-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|(?i:\b(?P<name>api[_-]?key|together[_-]api[_-]key|authorization|access[_-]?token|secret)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?!bearer\s)[^\s\"',}]{8,})")


def _mask(match: re.Match[str]) -> str:
    name = match.group("name")
    return f"{name}{match.group('sep')}{MASK}" if name else MASK


class Redactor:
    """`redact(text)` and `redact_obj(json_like)`; `secrets` are exact values to mask."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        if not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _SECRETISH.sub(_mask, text)

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
    environment and any key-like string masked, like everything else that reaches the log."""
    import os

    return Redactor([os.environ.get("TOGETHER_API_KEY"), *secrets]).redact(text)
