"""The provider: every chat call the product makes, logged with tokens, cost and retries.

    provider = Provider(settings, campaign, prices, tokenizer)   # records prices, recovers orphans
    provider.set_cap(5.0, reason="plan budget", actor="plan")
    result = await provider.chat(CallKey("task-3/r1", iteration=2, step="repair"), stage="rollouts",
                                 model="Qwen/Qwen2.5-7B-Instruct-Turbo", messages=[...],
                                 temperature=0.7, seed=11, max_tokens=512)

A circuit breaker stops the stage when the backend is out of reach: after
`settings.breaker_failures` calls in a row gave up on a connection failure or a refused key,
that give-up and every later call raise BackendUnavailable (exit 5, the cause in words)
instead of retrying each remaining call in turn. Any completed call closes it again.

Safe to call concurrently from asyncio tasks of one event loop (one writer per campaign).
Each decision is appended before the next await, so the budget check and its reservation
are atomic; every event is committed before `chat` returns.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import together
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from dpo_tui.config import Settings
from dpo_tui.errors import BackendUnavailable, BudgetCapReached, InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.core import SPEND
from dpo_tui.events.store import NewEvent, StoredEvent
from dpo_tui.provider import events as ev
from dpo_tui.provider.catalog import PriceBook
from dpo_tui.provider.client import async_client
from dpo_tui.provider.retry import (AdaptiveLimiter, RateLimitHeaders, RetryWait, backend_problem, is_retryable,
                                    possibly_billed,
                                    status_of)
from dpo_tui.provider.secrets import Redactor, install_log_redaction
from dpo_tui.provider.tokenizer import QwenTokenizer, TokenCount

# The reservation is a worst case: an approximate prompt estimate is padded by 30% + 16 tokens
# (the approximation's measured error is +8% on average, worst +15%), an exact one by a few
# tokens in case the server renders the template slightly differently.
APPROX_MARGIN, APPROX_PAD_TOKENS = 1.3, 16
EXACT_PAD_TOKENS = 8


@dataclass(frozen=True)
class CallKey:
    """Where a call sits in the campaign; with the campaign id and stage it is the idempotency key."""

    rollout: str
    iteration: int = 0
    step: str = "chat"

    def idempotency_key(self, campaign_id: str, stage: str) -> str:
        return f"{campaign_id}/{stage}/{self.rollout}/{self.iteration}/{self.step}"


@dataclass(frozen=True)
class ChatResult:
    idempotency_key: str
    text: str
    finish_reason: str | None
    usage: ev.Usage
    cost_usd: float
    from_log: bool          # True: a completed call returned from the log, not re-issued
    attempts: int
    latency_s: float

    @classmethod
    def from_payload(cls, p: Mapping[str, Any], *, from_log: bool) -> ChatResult:
        return cls(p["idempotency_key"], p["text"], p["finish_reason"], ev.Usage(**p["usage"]), p["cost_usd"],
                   from_log, p["attempts"], p["latency_s"])


def _ratelimit_of(exc: BaseException | None) -> dict[str, float] | None:
    if isinstance(exc, together.APIStatusError) and exc.response is not None:
        got = RateLimitHeaders.parse(exc.response.headers)
        return got.to_json() if got is not None else None
    return None


class CallGaveUp(Exception):
    """A call ended in `call.failed` (a non-retryable error, or retries exhausted)."""

    def __init__(self, idempotency_key: str, reason: str, status: int | None, *, connection: bool = False) -> None:
        super().__init__(reason)
        self.idempotency_key, self.reason, self.status = idempotency_key, reason, status
        self.connection = connection  # it gave up on a connection failure (the backend was not reached)


class CircuitBreaker:
    """Open after `threshold` calls in a row gave up because the backend was out of reach."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.failures = 0
        self.error: BackendUnavailable | None = None  # set once open

    def failed(self, problem: str | None) -> BackendUnavailable | None:
        """One call gave up; `problem` says why when the backend was out of reach."""
        if problem is None:  # the backend answered (e.g. a 400 or an exhausted 503): it is reachable
            self.failures = 0
            return None
        self.failures += 1
        if self.failures >= self.threshold and self.error is None:
            self.error = BackendUnavailable(f"{problem} ({self.failures} calls in a row gave up; the stage stopped: "
                                            "what finished is kept, a rerun resumes the rest)")
        return self.error

    def succeeded(self) -> None:
        self.failures = 0


@dataclass
class _Request:
    ikey: str
    stage: str
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    price: ev.Price
    est: TokenCount
    holds_slot: bool = True    # the first attempt runs in the slot taken before the reservation


class Provider:
    def __init__(self, settings: Settings, campaign: Campaign, prices: PriceBook, tokenizer: QwenTokenizer, *,
                 client: together.AsyncTogether | None = None, actor: str = "system",
                 recover: bool = True) -> None:
        self.settings, self.campaign, self.prices, self.tokenizer = settings, campaign, prices, tokenizer
        self.actor = actor
        self.limiter = AdaptiveLimiter(settings.concurrency, floor=settings.min_concurrency,
                                       cooldown_s=settings.limiter_cooldown_s)
        self.client = client if client is not None else async_client(settings, on_response=self._on_response)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.redactor = Redactor([key])
        install_log_redaction([key])
        self._wait = RetryWait(settings)
        self._running: dict[str, asyncio.Future[ChatResult]] = {}
        self._simulated: bool | None = None
        self.breaker = CircuitBreaker(settings.breaker_failures)
        self.record_prices()
        if recover:
            self.recover_orphans()

    async def aclose(self) -> None:
        """Close the HTTP client (the campaign stays open; its owner closes it)."""
        await self.client.close()

    # -- state views -----------------------------------------------------------------------

    @property
    def calls(self) -> ev.CallsState:
        return self.campaign.state.part(ev.CALLS)

    @property
    def guard(self) -> ev.GuardState:
        return self.campaign.state.part(ev.GUARD)

    def spend_usd(self) -> float:
        return self.campaign.state.part(SPEND).total_usd

    # -- decisions that are only events ----------------------------------------------------

    def record_prices(self) -> None:
        """Log the prices this campaign uses and their source (once per change)."""
        payload = ev.PricesRecorded.model_validate(self.prices.recorded_payload())
        if self.guard.prices != payload.model_dump(mode="json"):
            self.campaign.append("prices.recorded", payload, actor=self.actor)

    def price_endpoint_model(self, model: str, *, note: str) -> None:
        """A model served on a dedicated endpoint costs nothing per token (its minutes are
        billed under endpoint spend): give it an explicit $0 price whose source says so, and
        log the prices, so no chat call is ever priced at $0 silently."""
        self.prices.prices[model] = ev.Price(input_usd_per_mtok=0.0, output_usd_per_mtok=0.0,
                                             source=f"dedicated endpoint ({note}): billed per minute")
        self.record_prices()

    def set_cap(self, cap_usd: float, *, reason: str = "", actor: str | None = None) -> None:
        set_cap(self.campaign, cap_usd, reason=reason, actor=actor or self.actor)

    def recover_orphans(self) -> list[str]:
        """Mark every call started but never finished (the process died) as `call.orphaned`.

        Its reserved cost stays in spend as possibly billed; the key may then be re-issued.
        Only one process may run calls on a campaign, so at open nothing else is in flight."""
        calls = self.calls
        orphans = [ev.CallOrphaned(idempotency_key=k, stage=stage, started_seq=calls.started_seq[k],
                                   reserved_usd=reserved)
                   for k, (stage, reserved) in calls.in_flight.items() if k not in self._running]
        if orphans:
            self.campaign.append_batch([NewEvent("call.orphaned", o, self.actor) for o in orphans])
        return [o.idempotency_key for o in orphans]

    async def reissue_orphans(self) -> list[ChatResult]:
        """Re-issue every orphaned, never-completed call from its logged request, same key."""
        keys = [k for k, s in self.calls.status.items() if s == "orphaned"]
        tasks = []
        for k in keys:
            p = self._event_at(self.calls.started_seq[k]).payload
            params = p["params"]
            tasks.append(self.chat(CallKey(p["rollout"], p["iteration"], p["step"]), stage=p["stage"],
                                   model=p["model"], messages=p["messages"], temperature=params.get("temperature"),
                                   seed=params.get("seed"), max_tokens=params["max_tokens"]))
        return list(await asyncio.gather(*tasks))

    def _event_at(self, seq: int) -> StoredEvent:
        return next(iter(self.campaign.store.read(seq - 1, verify=False)))

    # -- the call ----------------------------------------------------------------------------

    async def chat(self, key: CallKey, *, stage: str, model: str, messages: Sequence[Mapping[str, Any]],
                   temperature: float | None = None, seed: int | None = None,
                   max_tokens: int) -> ChatResult:
        """One chat completion under the retry policy, the limiter and the budget guard.

        Returns the logged result for a key that already completed (`from_log=True`).
        Raises BudgetCapReached (nothing spent), CallGaveUp (call.failed logged),
        UnknownPriceError/InputError before any call."""
        ikey = key.idempotency_key(self.campaign.store.campaign_id, stage)
        if self.calls.status.get(ikey) == "completed":
            return self._logged_result(ikey, model)
        if self.breaker.error is not None:  # the backend is out of reach: make no more calls
            raise self.breaker.error
        running = self._running.get(ikey)
        if running is not None:
            return await asyncio.shield(running)
        if self.calls.status.get(ikey) == "started":
            raise InputError(f"call {ikey} is in flight elsewhere (another process, or not recovered): "
                             f"only one process may run calls on a campaign; reopen it to recover orphans")
        self.prices.price(model)  # an unknown price fails before anything is queued
        fut: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        self._running[ikey] = fut
        try:
            # The first attempt's slot is taken before the reservation, so calls queued behind the
            # limiter reserve nothing and the guard sees only what is really in flight.
            await self.limiter.acquire()
            try:
                req = self._prepare(ikey, key, stage, model, messages, temperature, seed, max_tokens)
            except BaseException:
                self.limiter.release()
                raise
            result = await self._run(req)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._running.pop(ikey, None)

    def _logged_result(self, ikey: str, model: str) -> ChatResult:
        p = self._event_at(self.calls.completed_seq[ikey]).payload
        if p["model"] != model:
            raise InputError(f"call {ikey} already completed with model {p['model']}, not {model}")
        return ChatResult.from_payload(p, from_log=True)

    def _prepare(self, ikey: str, key: CallKey, stage: str, model: str, messages: Sequence[Mapping[str, Any]],
                 temperature: float | None, seed: int | None, max_tokens: int) -> _Request:
        """Price, estimate, guard and `call.started`, with no await in between."""
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError(f"max_tokens must be a positive integer (the budget guard reserves it), not {max_tokens!r}")
        price = self.prices.price(model)
        msgs = [dict(m) for m in messages]
        est = self.tokenizer.count_chat(msgs)
        reserved = self._reservation(est, max_tokens, price)
        self._guard(ikey, stage, model, reserved)
        params = {"max_tokens": max_tokens, "seed": seed, "temperature": temperature}
        redacted = self.redactor.redact_obj(msgs)
        started = ev.CallStarted(
            idempotency_key=ikey, stage=stage, rollout=key.rollout, iteration=key.iteration, step=key.step,
            model=model, params=params, messages=redacted, est_prompt_tokens=est.n, est_exact=est.exact,
            price=price, reserved_usd=reserved, reissue=self.calls.status.get(ikey) == "orphaned")
        self.campaign.append("call.started", started, actor=self.actor)
        return _Request(ikey, stage, model, msgs, params, price, est)

    @staticmethod
    def _reservation(est: TokenCount, max_tokens: int, price: ev.Price) -> float:
        prompt = est.n + EXACT_PAD_TOKENS if est.exact else int(est.n * APPROX_MARGIN) + APPROX_PAD_TOKENS
        return ev.cost_usd({"prompt_tokens": prompt, "completion_tokens": max_tokens}, price)

    def _guard(self, ikey: str, stage: str, model: str, reserved: float) -> None:
        cap = self.guard.cap_usd
        if cap is None:
            return
        committed, in_flight = self.spend_usd(), self.calls.in_flight_usd()
        if committed + in_flight + reserved <= cap:
            return
        self.campaign.append("budget.cap_reached", ev.BudgetCapReached(
            cap_usd=cap, committed_usd=committed, in_flight_usd=in_flight, requested_usd=reserved,
            idempotency_key=ikey, stage=stage, model=model), actor=self.actor)
        raise BudgetCapReached(
            f"budget cap ${cap:.4f} reached: spent ${committed:.4f} + in flight ${in_flight:.4f} + this call's "
            f"worst case ${reserved:.4f} ({model}) would cross it; call {ikey} was not made "
            f"(raise the cap with a reasoned decision to go on)")

    async def _run(self, req: _Request) -> ChatResult:
        attempts = 0

        async def failed_attempt(state: RetryCallState) -> None:
            delay, source = getattr(state, "dpo_delay", (state.upcoming_sleep, "backoff"))
            self._append_attempt_failed(req, state.attempt_number, state.outcome.exception(), delay, source)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.settings.max_attempts), wait=self._wait_for,
                                 retry=retry_if_exception(is_retryable), before_sleep=failed_attempt, reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    response, simulated, latency = await self._attempt(req)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._append_orphaned(req)
            raise
        except Exception as exc:
            if not _is_api_failure(exc):
                self._append_orphaned(req)
                raise
            return self._give_up(req, attempts, exc)
        finally:
            if req.holds_slot:  # interrupted before the first attempt used its slot
                req.holds_slot = False
                self.limiter.release()
        try:
            return self._complete(req, response, simulated, latency, attempts)
        except BaseException:
            self._append_orphaned(req)  # answered (and billed) but not recorded: keep its reservation
            raise

    def _wait_for(self, state: RetryCallState) -> float:
        delay, source = self._wait.delay(state)
        state.dpo_delay = (delay, source)  # type: ignore[attr-defined]
        return delay

    async def _attempt(self, req: _Request) -> tuple[Any, bool, float]:
        if req.holds_slot:
            req.holds_slot = False
        else:
            await self.limiter.acquire()
        ok = rate_limited = overloaded = False
        start = time.monotonic()
        params = {k: v for k, v in req.params.items() if v is not None}
        try:
            if self._simulated is None:  # the first answer's X-Simulated header labels the server
                raw = await self.client.chat.completions.with_raw_response.create(
                    model=req.model, messages=req.messages, **params)
                response = await raw.parse()
                self._simulated = raw.headers.get("x-simulated") == "true"
            else:  # the plain call: the raw-response wrapper costs CPU on every call
                response = await self.client.chat.completions.create(model=req.model, messages=req.messages, **params)
            ok = True
            return response, self._simulated, time.monotonic() - start
        except together.APIStatusError as exc:
            rate_limited, overloaded = exc.status_code == 429, exc.status_code == 503
            if exc.response is not None:
                self.limiter.observe(RateLimitHeaders.parse(exc.response.headers))
            raise
        finally:
            self.limiter.release(rate_limited=rate_limited, overloaded=overloaded, ok=ok)

    # -- outcomes ----------------------------------------------------------------------------

    async def _on_response(self, response: httpx.Response) -> None:
        """httpx response hook: every reply's `x-ratelimit-*` headers feed the limiter."""
        self.limiter.observe(RateLimitHeaders.parse(response.headers))

    def _complete(self, req: _Request, response: Any, simulated: bool, latency: float, attempts: int) -> ChatResult:
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        usage = response.usage
        if usage is not None:
            u = ev.Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        else:  # the API promised usage; without it, count both sides ourselves and say so in the log
            u = ev.Usage(prompt_tokens=req.est.n, completion_tokens=self.tokenizer.count_completion(text).n)
        payload = ev.CallCompleted(
            idempotency_key=req.ikey, stage=req.stage, model=req.model, response_id=getattr(response, "id", None),
            text=self.redactor.redact(text), finish_reason=choice.finish_reason if choice else None, usage=u,
            est_prompt_tokens=req.est.n, est_exact=req.est.exact and usage is not None, latency_s=latency,
            attempts=attempts, price=req.price, cost_usd=ev.cost_usd(u, req.price), simulated=simulated)
        self.campaign.append("call.completed", payload, actor=self.actor)
        self.breaker.succeeded()
        return ChatResult.from_payload(payload.model_dump(), from_log=False)

    def _append_attempt_failed(self, req: _Request, attempt: int, exc: BaseException | None,
                               delay: float | None, source: str | None) -> NewEvent:
        payload = ev.CallAttemptFailed(
            idempotency_key=req.ikey, stage=req.stage, attempt=attempt, status=status_of(exc) if exc else None,
            error=type(exc).__name__, message=self.redactor.redact(str(exc))[:500],
            retryable=bool(exc is not None and is_retryable(exc)), retry_delay_s=delay,
            delay_source=source if delay is not None else None, possibly_billed=possibly_billed(exc),
            ratelimit=_ratelimit_of(exc))
        event = NewEvent("call.attempt_failed", payload, self.actor)
        if delay is not None:
            self.campaign.append_batch([event])
        return event

    def _give_up(self, req: _Request, attempts: int, exc: BaseException) -> ChatResult:
        last = self._append_attempt_failed(req, attempts, exc, None, None)
        status = status_of(exc)
        why = "retries exhausted" if is_retryable(exc) else "not retryable"
        reason = self.redactor.redact(f"{type(exc).__name__} ({why} after {attempts} attempt(s)): {exc}")[:500]
        failed = ev.CallFailed(idempotency_key=req.ikey, stage=req.stage, reason=reason, attempts=attempts,
                               status=status, error=type(exc).__name__)
        self.campaign.append_batch([last, NewEvent("call.failed", failed, self.actor)])
        problem = backend_problem(exc, self.settings.base_url)
        tripped = self.breaker.failed(problem)
        if tripped is not None:
            raise tripped from None
        raise CallGaveUp(req.ikey, reason, status, connection=isinstance(exc, together.APIConnectionError)) from None

    def _append_orphaned(self, req: _Request) -> None:
        """Interrupted mid-call: it may have been billed, so its reservation stays in spend."""
        stage_reserved = self.calls.in_flight.get(req.ikey)
        if stage_reserved is None:
            return
        self.campaign.append("call.orphaned", ev.CallOrphaned(
            idempotency_key=req.ikey, stage=req.stage, started_seq=self.calls.started_seq[req.ikey],
            reserved_usd=stage_reserved[1]), actor=self.actor)


def _is_api_failure(exc: BaseException) -> bool:
    return isinstance(exc, together.APIError) or is_retryable(exc)


def check_cap(cap_usd: object) -> float:
    """A budget cap as USD; InputError unless it is a positive, finite number."""
    if not (isinstance(cap_usd, int | float) and math.isfinite(cap_usd) and cap_usd > 0):
        raise InputError(f"budget cap must be a positive number of USD, not {cap_usd!r}")
    return float(cap_usd)


def set_cap(campaign: Campaign, cap_usd: float, *, reason: str, actor: str) -> None:
    """Set the budget cap every later call is held against (the plan's, or an operator's).
    A cap below what is already spent or committed (calls in flight, the next minute of a
    running endpoint: campaign.cap.committed_usd) is refused: spend can never be above the
    cap in force."""
    from dpo_tui.campaign.cap import committed_usd

    cap = check_cap(cap_usd)
    c = committed_usd(campaign)
    if cap < c["total"] - 1e-9:
        also = "".join(f", ${v:.4f} {what}" for what, v in (("for calls in flight", c["in_flight"]),
                                                            ("for the running endpoints' next minute",
                                                             c["next_minute"])) if v > 0)
        raise InputError(f"budget cap ${cap:.4f} is below the ${c['total']:.4f} already spent or committed "
                         f"(${c['spent']:.4f} spent{also}): a cap cannot undo spend (set at least "
                         f"${c['total']:.4f}{', or stop the endpoints first' if c['next_minute'] > 0 else ''})")
    campaign.append("budget.cap_set", ev.BudgetCapSet(cap_usd=cap, reason=reason), actor=actor)
