"""The real Together SDK clients, configured from Settings, with the SDK's own retries off
(tenacity owns the retry policy so that every attempt becomes an event)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import together

from dpo_tui.config import DEFAULT_BASE_URL, Settings
from dpo_tui.provider.secrets import install_log_redaction


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)


def _base_url(settings: Settings) -> str | None:
    # Left unset for Together itself, so the SDK keeps sending chat to its inference host.
    return None if settings.base_url == DEFAULT_BASE_URL else settings.base_url


def async_client(settings: Settings, *, pool: int | None = None,
                 on_response: Callable[[httpx.Response], Awaitable[None]] | None = None) -> together.AsyncTogether:
    """An AsyncTogether whose connection pool keeps `pool` (default: the concurrency
    ceiling) connections alive, so a full window of calls never reconnects; `on_response`
    sees every reply's headers (the rate limiter reads `x-ratelimit-*` there)."""
    install_log_redaction([settings.key_value()])
    size = max(pool or settings.concurrency, 1)
    http = together.DefaultAsyncHttpxClient(
        timeout=_timeout(settings),
        limits=httpx.Limits(max_connections=max(100, size), max_keepalive_connections=max(20, size)),
        event_hooks={"response": [on_response]} if on_response is not None else None)
    return together.AsyncTogether(api_key=settings.key_value(), base_url=_base_url(settings), max_retries=0,
                                  timeout=_timeout(settings), project_id=settings.project_id, http_client=http)


def sync_client(settings: Settings) -> together.Together:
    install_log_redaction([settings.key_value()])
    return together.Together(api_key=settings.key_value(), base_url=_base_url(settings), max_retries=0,
                             timeout=_timeout(settings), project_id=settings.project_id)
