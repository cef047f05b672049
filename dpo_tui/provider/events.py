"""Event types, state parts, fold handlers and audit rules of the provider layer.

Every API call leaves `call.started`, then zero or more `call.attempt_failed`, then one of
`call.completed` / `call.failed`; a call found started-but-unfinished at restart gets
`call.orphaned` (its reservation stays in spend as possibly billed) and may be re-issued
under the same idempotency key. No key ever has two `call.completed`.

Spend by stage (`add_spend`) takes each completed call's `cost_usd` and each orphan's
`reserved_usd`. An auditor recomputes every cost from `usage` x `price` in the log alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from dpo_tui.events.core import SPEND, Spend, add_spend
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.store import StoredEvent
from dpo_tui.events.types import Payload, event_type

COST_TOLERANCE_USD = 1e-9


class Price(Payload):
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    source: str = Field(min_length=1)


class Usage(Payload):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


def cost_usd(usage: Usage | dict[str, Any], price: Price | dict[str, Any]) -> float:
    """(prompt x input + completion x output) / 1e6, unrounded: the one cost formula."""
    u = usage if isinstance(usage, dict) else usage.model_dump()
    p = price if isinstance(price, dict) else price.model_dump()
    return (u["prompt_tokens"] * p["input_usd_per_mtok"] + u["completion_tokens"] * p["output_usd_per_mtok"]) / 1e6


@event_type("call.started", version=1)
class CallStarted(Payload):
    idempotency_key: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    rollout: str
    iteration: int
    step: str
    model: str = Field(min_length=1)
    params: dict[str, Any]                  # seed, temperature, max_tokens
    messages: list[dict[str, Any]]          # secrets redacted
    est_prompt_tokens: int = Field(ge=0)
    est_exact: bool                         # False: the approximate tokenizer (no Qwen ranks)
    price: Price
    reserved_usd: float = Field(ge=0)       # worst case: (est prompt [+ margin] + max_tokens) x price
    reissue: bool = False                   # re-issued after call.orphaned


@event_type("call.attempt_failed", version=1)
class CallAttemptFailed(Payload):
    idempotency_key: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    attempt: int = Field(ge=1)
    status: int | None                       # HTTP status, None for a transport failure
    error: str                               # exception class
    message: str                             # redacted, truncated
    retryable: bool
    retry_delay_s: float | None              # None when no retry follows
    delay_source: Literal["retry-after-ms", "retry-after", "backoff"] | None
    # The request reached the server and may have been billed although no usable answer came
    # back (a timeout, a dropped connection after sending, an unreadable 2xx). Shown, not spent:
    # state.calls.possibly_billed_attempts / possibly_billed_max_usd (worst case each).
    possibly_billed: bool = False
    # the reply's x-ratelimit-* / x-tokenlimit-* headers (limit, remaining, reset_s, ...), when it sent any
    ratelimit: dict[str, float] | None = None


@event_type("call.completed", version=1)
class CallCompleted(Payload):
    idempotency_key: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    model: str
    response_id: str | None
    text: str
    finish_reason: str | None
    usage: Usage
    est_prompt_tokens: int = Field(ge=0)     # calibration: estimated vs usage.prompt_tokens
    est_exact: bool
    latency_s: float = Field(ge=0)
    attempts: int = Field(ge=1)
    price: Price
    cost_usd: float = Field(ge=0)
    simulated: bool = False                  # the server labelled itself a simulation


@event_type("call.failed", version=1)
class CallFailed(Payload):
    idempotency_key: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    reason: str
    attempts: int = Field(ge=0)
    status: int | None
    error: str


@event_type("call.orphaned", version=1)
class CallOrphaned(Payload):
    idempotency_key: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    started_seq: int = Field(ge=1)
    reserved_usd: float = Field(ge=0)        # kept in spend: the call may have been billed


@event_type("budget.cap_set", version=1)
class BudgetCapSet(Payload):
    cap_usd: float = Field(gt=0)
    reason: str = ""


@event_type("budget.cap_reached", version=1)
class BudgetCapReached(Payload):
    cap_usd: float
    committed_usd: float
    in_flight_usd: float
    requested_usd: float
    idempotency_key: str
    stage: str
    model: str


@event_type("prices.recorded", version=1)
class PricesRecorded(Payload):
    source: str                              # where the table came from
    date: str | None
    models: dict[str, Price]                 # model -> price used


@dataclass
class CallsState:
    started: int = 0
    completed: int = 0
    failed: int = 0
    orphaned: int = 0
    attempts: int = 0                        # failed attempts
    status: dict[str, str] = field(default_factory=dict)          # key -> started|completed|failed|orphaned
    started_seq: dict[str, int] = field(default_factory=dict)     # key -> seq of its latest call.started
    completed_seq: dict[str, int] = field(default_factory=dict)   # key -> seq of its call.completed
    in_flight: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (stage, reserved_usd)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    est_prompt_tokens: int = 0               # over completed calls, for the calibration ratio
    est_approximate: int = 0                 # completed calls whose estimate was approximate
    orphaned_usd: float = 0.0
    possibly_billed_attempts: int = 0
    possibly_billed_max_usd: float = 0.0     # their reservations: an upper bound, not in spend

    def in_flight_usd(self) -> float:
        return math.fsum(r for _, r in self.in_flight.values())

    def to_json(self) -> dict[str, Any]:
        ratio = self.prompt_tokens / self.est_prompt_tokens if self.est_prompt_tokens else None
        return {"started": self.started, "completed": self.completed, "failed": self.failed,
                "orphaned": self.orphaned, "failed_attempts": self.attempts,
                # every attempt made: each failed one, plus the one that succeeded for each completed call
                "attempts": self.attempts + self.completed, "in_flight": len(self.in_flight),
                "in_flight_usd": self.in_flight_usd(), "orphaned_usd": self.orphaned_usd,
                "possibly_billed_attempts": self.possibly_billed_attempts,
                "possibly_billed_max_usd": self.possibly_billed_max_usd,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "estimate_calibration": {"est_prompt_tokens": self.est_prompt_tokens,
                                         "usage_over_estimate": ratio,
                                         "approximate_estimates": self.est_approximate}}


@dataclass
class GuardState:
    cap_usd: float | None = None
    cap_reached: int = 0
    last_reached: dict[str, Any] | None = None
    prices: dict[str, Any] | None = None     # the latest prices.recorded payload

    def to_json(self) -> dict[str, Any]:
        return {"cap_usd": self.cap_usd, "cap_reached": self.cap_reached, "last_reached": self.last_reached,
                "prices_source": (self.prices or {}).get("source")}


CALLS = state_part("calls", factory=CallsState, to_json=CallsState.to_json)
GUARD = state_part("budget_guard", factory=GuardState, to_json=GuardState.to_json)


@on("call.started")
def _started(state: CampaignState, event: StoredEvent) -> None:
    calls: CallsState = state.part(CALLS)
    p = event.payload
    calls.started += 1
    calls.status[p["idempotency_key"]] = "started"
    calls.started_seq[p["idempotency_key"]] = event.seq
    calls.in_flight[p["idempotency_key"]] = (p["stage"], p["reserved_usd"])


@on("call.attempt_failed")
def _attempt_failed(state: CampaignState, event: StoredEvent) -> None:
    calls: CallsState = state.part(CALLS)
    calls.attempts += 1
    if event.payload.get("possibly_billed"):
        calls.possibly_billed_attempts += 1
        flight = calls.in_flight.get(event.payload["idempotency_key"])
        calls.possibly_billed_max_usd += flight[1] if flight else 0.0


@on("call.completed")
def _completed(state: CampaignState, event: StoredEvent) -> None:
    calls: CallsState = state.part(CALLS)
    p = event.payload
    key = p["idempotency_key"]
    calls.in_flight.pop(key, None)
    if calls.status.get(key) != "completed":  # a duplicate is an audit problem, never double spend
        calls.completed += 1
        calls.completed_seq[key] = event.seq
        calls.prompt_tokens += p["usage"]["prompt_tokens"]
        calls.completion_tokens += p["usage"]["completion_tokens"]
        calls.est_prompt_tokens += p["est_prompt_tokens"]
        calls.est_approximate += 0 if p["est_exact"] else 1
        add_spend(state, p["stage"], p["cost_usd"])
    calls.status[key] = "completed"


@on("call.failed")
def _failed(state: CampaignState, event: StoredEvent) -> None:
    calls: CallsState = state.part(CALLS)
    key = event.payload["idempotency_key"]
    calls.failed += 1
    calls.in_flight.pop(key, None)
    if calls.status.get(key) != "completed":
        calls.status[key] = "failed"


@on("call.orphaned")
def _orphaned(state: CampaignState, event: StoredEvent) -> None:
    calls: CallsState = state.part(CALLS)
    p = event.payload
    calls.orphaned += 1
    calls.orphaned_usd += p["reserved_usd"]
    calls.in_flight.pop(p["idempotency_key"], None)
    calls.status[p["idempotency_key"]] = "orphaned"
    add_spend(state, p["stage"], p["reserved_usd"])


@on("budget.cap_set")
def _cap_set(state: CampaignState, event: StoredEvent) -> None:
    state.part(GUARD).cap_usd = event.payload["cap_usd"]


@on("budget.cap_reached")
def _cap_reached(state: CampaignState, event: StoredEvent) -> None:
    guard: GuardState = state.part(GUARD)
    guard.cap_reached += 1
    guard.last_reached = dict(event.payload)


@on("prices.recorded")
def _prices(state: CampaignState, event: StoredEvent) -> None:
    state.part(GUARD).prices = dict(event.payload)


# -- audit rules ----------------------------------------------------------------------------


@invariant("call-completed-once", "call.completed")
def _completed_once(state: CampaignState, event: StoredEvent) -> str | None:
    seq = state.part(CALLS).completed_seq.get(event.payload["idempotency_key"])
    if seq is not None and seq != event.seq:
        return f"idempotency key {event.payload['idempotency_key']} completed twice (first at seq {seq})"
    return None


@invariant("call-cost", "call.completed")
def _cost_recomputes(state: CampaignState, event: StoredEvent) -> str | None:
    p = event.payload
    expect = cost_usd(p["usage"], p["price"])
    if abs(expect - p["cost_usd"]) > COST_TOLERANCE_USD:
        return f"cost_usd {p['cost_usd']!r} of {p['idempotency_key']} is not usage x price = {expect!r}"
    return None


@invariant("call-follows-start", "call.completed", "call.failed", "call.orphaned", "call.attempt_failed")
def _follows_start(state: CampaignState, event: StoredEvent) -> str | None:
    if event.payload["idempotency_key"] not in state.part(CALLS).started_seq:
        return f"{event.type} for {event.payload['idempotency_key']} without a call.started"
    return None


@invariant("spend-within-cap", "call.completed", "call.orphaned", "endpoint.billed", "endpoint.stopped")
def _within_cap(state: CampaignState, event: StoredEvent) -> str | None:
    cap = state.part(GUARD).cap_usd
    spend: Spend = state.part(SPEND)
    if cap is not None and spend.total_usd > cap + COST_TOLERANCE_USD:
        return f"spend {spend.total_usd:.6f} USD crossed the cap {cap:.6f} USD"
    return None
