"""The preflight: before the first paid call of a stage, prove the backend answers.

One authenticated, cheap call (`GET /v3/whoami`, the call the management client makes
first anyway) with a short timeout and one quick retry at most. A backend that cannot be
reached, or that refuses the key, stops the stage within seconds with BackendUnavailable
(exit 5) and the cause in words:

    cannot connect to backend https://api.together.ai: name resolution failed for ...
    backend https://api.together.ai refused the API key (401)

instead of the retry policy spending minutes on every rollout's calls. Nothing is logged:
the preflight spends nothing and changes nothing, so a failed one leaves the campaign as it
was. The embedded simulator (started in this process) needs none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import together

from dpo_tui.config import Settings
from dpo_tui.errors import BackendUnavailable
from dpo_tui.provider.client import sync_client
from dpo_tui.provider.retry import backend_problem, is_retryable
from dpo_tui.provider.secrets import Redactor

ATTEMPTS = 2          # one quick retry at most: a blip is not an outage, a storm is not a preflight
RETRY_PAUSE_S = 0.5
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0


def check(settings: Settings, *, sleep: Any = time.sleep) -> None:
    """Raise BackendUnavailable unless the backend answers an authenticated call."""
    client = sync_client(settings).with_options(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=min(
        CONNECT_TIMEOUT_S, settings.connect_timeout_s)), max_retries=0)
    url = settings.base_url
    redactor = Redactor([settings.key_value()])
    for attempt in range(1, ATTEMPTS + 1):
        try:
            client.whoami()
            return
        except together.APIError as exc:
            problem = backend_problem(exc, url)
            timed_out = isinstance(exc, together.APITimeoutError)
            last = attempt == ATTEMPTS or timed_out or not is_retryable(exc)
            if not last:
                sleep(RETRY_PAUSE_S)
                continue
            if problem is None:  # it answered, but not as an API that works for this key
                status = getattr(exc, "status_code", None)
                detail = redactor.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
                problem = f"backend {url} does not answer the API ({status or type(exc).__name__}): {detail}"
            raise BackendUnavailable(problem) from None
        except (ValueError, TypeError) as exc:  # a 2xx body that is not the JSON promised
            raise BackendUnavailable(f"backend {url} does not answer like the Together API "
                                     f"({type(exc).__name__} reading /v3/whoami)") from None


async def before_stage(ctx: Any, specs: Sequence[Any] | None = None) -> None:
    """The runner's hook before a stage that spends through the API. With `specs` (rollout
    stages), only when one of them is still to run: a finished stage makes no call."""
    import asyncio

    from dpo_tui.campaign.state_rollouts import ROLLOUTS

    if ctx.backend == "simulated" or ctx.settings is None:
        return
    if specs is not None:
        by_id = ctx.campaign.state.part(ROLLOUTS).by_id
        if all(by_id.get(s.rollout_id) is not None and by_id[s.rollout_id].finished is not None for s in specs):
            return
    await asyncio.to_thread(check, ctx.settings)
