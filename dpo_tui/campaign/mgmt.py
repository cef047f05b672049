"""Management calls (files, fine-tunes, endpoints) under the provider's retry policy.

The SDK's own retries are off (tenacity owns them, as for chat), so that each failed attempt
is an `api.attempt_failed` event and a malformed 2xx body is retried like a 5xx. A create
that is not idempotent (an upload, a job, an endpoint, a deployment) may have succeeded on
the server although its reply was lost: before retrying it, `recover()` looks the object up
(by file name, job suffix, endpoint name), so a lost reply never makes a second one.

Every call that succeeds is an `api.completed` event: what was called, the HTTP method,
resource path (no host, no query), status and request id of its last HTTP request (seen by
an httpx response hook on the SDK's own client), the ids it named and returned, its latency
and attempts. Polls are logged one event each, like any other call (nothing is coalesced)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import together
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from dpo_tui.campaign.state.api import ApiAttemptFailed, ApiCompleted  # noqa: F401 - appended here
from dpo_tui.config import Settings
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.retry import RetryWait, describe, is_retryable
from dpo_tui.provider.secrets import Redactor

T = TypeVar("T")


REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-together-request-id")


def _call_ids(args: tuple, kwargs: dict, result: Any) -> dict[str, str]:
    ids = {f"arg{i}": a for i, a in enumerate(args) if isinstance(a, str) and len(a) <= 200}
    ids |= {k: v for k, v in kwargs.items() if isinstance(v, str) and (k == "id" or k.endswith("_id") or k == "name")
            and len(v) <= 200}
    rid = getattr(result, "id", None)
    if isinstance(rid, str):
        ids["result"] = rid
    return ids


class _Seen(threading.local):
    def __init__(self) -> None:
        self.responses: list[tuple[str, str, int, str | None]] = []
        self.depth = 0


class Mgmt:
    def __init__(self, client: together.Together, campaign: Campaign, settings: Settings) -> None:
        self.client, self.campaign, self.settings = client, campaign, settings
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.redactor = Redactor([key])
        self._wait = RetryWait(settings)
        self._seen = _Seen()

    def on_response(self, response: httpx.Response) -> None:
        """httpx response hook: each HTTP request a management call makes, as it returns."""
        rid = next((response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None)
        self._seen.responses.append((response.request.method, response.request.url.path, response.status_code, rid))

    def _completed(self, what: str, first: int, attempt: int, started: float, args: tuple, kwargs: dict,
                   result: Any) -> None:
        seen = self._seen.responses[first:]
        method, path, status, rid = seen[-1] if seen else (None, None, None, None)
        status_attr = getattr(result, "status", None)
        self.campaign.append("api.completed", {
            "what": what, "method": method, "resource": self.redactor.redact(path) if path else None,
            "status": status, "request_id": rid,
            "ids": {k: self.redactor.redact(v) for k, v in _call_ids(args, kwargs, result).items()},
            "result_status": str(getattr(status_attr, "value", status_attr)) if status_attr is not None else None,
            "requests": len(seen), "attempts": attempt, "latency_s": max(0.0, time.monotonic() - started)},
            actor="system")

    def call(self, what: str, fn: Callable[..., T], *args: Any, recover: Callable[[], T | None] | None = None,
             **kwargs: Any) -> T:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            info = describe(exc)
            self.campaign.append("api.attempt_failed", {
                "what": what, "attempt": state.attempt_number, "status": info["status"], "error": info["error"],
                "message": self.redactor.redact(info["message"]), "retry_in_s": float(self._wait.delay(state)[0])},
                actor="system")

        seen = self._seen
        seen.depth += 1
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.settings.max_attempts), wait=self._wait,
                                    retry=retry_if_exception(is_retryable), before_sleep=before_sleep, reraise=True):
                with attempt:
                    n = attempt.retry_state.attempt_number
                    if n > 1 and recover is not None:
                        found = recover()
                        if found is not None:
                            return found
                    first, started = len(seen.responses), time.monotonic()
                    result = fn(*args, **kwargs)
                    self._completed(what, first, n, started, args, kwargs, result)
                    return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            seen.depth -= 1
            if seen.depth == 0:
                seen.responses.clear()


def mgmt_client(settings: Settings, campaign: Campaign) -> Mgmt:
    """The SDK for management calls, its retries off, and the project id it needs."""
    kw: dict[str, Any] = {"api_key": settings.key_value(), "max_retries": 0, "timeout": settings.timeout_s}
    if settings.base_url:
        kw["base_url"] = settings.base_url
    m = Mgmt(None, campaign, settings)  # type: ignore[arg-type]  # its client follows, hooked to it
    # the SDK's own client, with a response hook so each call's HTTP status and request id are logged
    bare = together.Together(**kw, http_client=together.DefaultHttpxClient(event_hooks={"response": [m.on_response]}))
    m.client = bare
    project = settings.project_id or m.call("whoami", bare.whoami).project.id
    m.client = bare.with_options(project_id=project)
    return m
