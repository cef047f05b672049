"""The management calls' events (`campaign/mgmt.py` appends them): a module of their own,
without the SDK, so that reading a log registers them without importing `together`."""

from __future__ import annotations

from pydantic import Field

from dpo_tui.events.types import Payload, event_type


@event_type("api.attempt_failed", version=1)
class ApiAttemptFailed(Payload):
    what: str  # e.g. fine_tuning.create
    attempt: int = Field(ge=1)
    status: int | None
    error: str
    message: str
    retry_in_s: float


@event_type("api.completed", version=1)
class ApiCompleted(Payload):
    what: str  # e.g. fine_tuning.retrieve
    method: str | None  # HTTP method of the call's last request (None: no request seen)
    resource: str | None  # its URL path, e.g. /fine-tunes/ft-1 (no host, no query string)
    status: int | None  # its HTTP status
    request_id: str | None  # the server's request id header, when it sends one
    ids: dict[str, str]  # ids the call named (args) and returned (result.id)
    result_status: str | None = None  # the returned object's own status (a job's "running")
    requests: int = Field(ge=0)  # HTTP requests the call made (the 3-step upload makes 3)
    attempts: int = Field(ge=1)
    latency_s: float = Field(ge=0)
