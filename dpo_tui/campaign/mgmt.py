"""Management calls (files, fine-tunes, endpoints) under the provider's retry policy.

The SDK's own retries are off (tenacity owns them, as for chat), so that each failed attempt
is an `api.attempt_failed` event and a malformed 2xx body is retried like a 5xx. A create
that is not idempotent (an upload, a job, an endpoint, a deployment) may have succeeded on
the server although its reply was lost: before retrying it, `recover()` looks the object up
(by file name, job suffix, endpoint name), so a lost reply never makes a second one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import together
from pydantic import Field
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from dpo_tui.config import Settings
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.types import Payload, event_type
from dpo_tui.provider.retry import RetryWait, describe, is_retryable
from dpo_tui.provider.secrets import Redactor

T = TypeVar("T")


@event_type("api.attempt_failed", version=1)
class ApiAttemptFailed(Payload):
    what: str  # e.g. fine_tuning.create
    attempt: int = Field(ge=1)
    status: int | None
    error: str
    message: str
    retry_in_s: float


class Mgmt:
    def __init__(self, client: together.Together, campaign: Campaign, settings: Settings) -> None:
        self.client, self.campaign, self.settings = client, campaign, settings
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.redactor = Redactor([key])
        self._wait = RetryWait(settings)

    def call(self, what: str, fn: Callable[..., T], *args: Any, recover: Callable[[], T | None] | None = None,
             **kwargs: Any) -> T:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            info = describe(exc)
            self.campaign.append("api.attempt_failed", {
                "what": what, "attempt": state.attempt_number, "status": info["status"], "error": info["error"],
                "message": self.redactor.redact(info["message"]), "retry_in_s": float(self._wait.delay(state)[0])},
                actor="system")

        for attempt in Retrying(stop=stop_after_attempt(self.settings.max_attempts), wait=self._wait,
                                retry=retry_if_exception(is_retryable), before_sleep=before_sleep, reraise=True):
            with attempt:
                if attempt.retry_state.attempt_number > 1 and recover is not None:
                    found = recover()
                    if found is not None:
                        return found
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover


def mgmt_client(settings: Settings, campaign: Campaign) -> Mgmt:
    """The SDK for management calls, its retries off, and the project id it needs."""
    kw: dict[str, Any] = {"api_key": settings.key_value(), "max_retries": 0, "timeout": settings.timeout_s}
    if settings.base_url:
        kw["base_url"] = settings.base_url
    bare = together.Together(**kw)
    m = Mgmt(bare, campaign, settings)
    project = settings.project_id or m.call("whoami", bare.whoami).project.id
    m.client = bare.with_options(project_id=project)
    return m
