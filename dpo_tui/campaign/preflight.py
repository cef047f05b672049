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
from dpo_tui.provider.retry import backend_problem

ATTEMPTS = 3          # a refused or dropped connection is tried again twice, 0.5 s apart: a blip is not an outage
RETRY_PAUSE_S = 0.5
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0


def check(settings: Settings, *, sleep: Any = time.sleep) -> None:
    """Raise BackendUnavailable when the backend cannot be reached or refuses the key.

    Any other answer (a 5xx, a 429, an unreadable body) proves the backend is there: the
    stage's own retry policy deals with those, call by call, and logs each attempt."""
    client = sync_client(settings).with_options(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=min(
        CONNECT_TIMEOUT_S, settings.connect_timeout_s)), max_retries=0)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            client.whoami()
            return
        except together.APIError as exc:
            problem = backend_problem(exc, settings.base_url)
            if problem is None:  # it answered
                return
            again = isinstance(exc, together.APIConnectionError) and not isinstance(exc, together.APITimeoutError)
            if not again or attempt == ATTEMPTS:
                raise BackendUnavailable(problem) from None
            sleep(RETRY_PAUSE_S)
        except (ValueError, TypeError):  # a 2xx body that is not the JSON promised: still an answer
            return


async def before_stage(ctx: Any, specs: Sequence[Any] | None = None) -> None:
    """The runner's hook before a stage that spends through the API. With `specs` (rollout
    stages), only when one of them is still to run: a finished stage makes no call."""
    import asyncio

    from dpo_tui.campaign.state.rollouts import ROLLOUTS

    if ctx.backend == "simulated" or ctx.settings is None:
        return
    if specs is not None:
        by_id = ctx.campaign.state.part(ROLLOUTS).by_id
        if all(by_id.get(s.rollout_id) is not None and by_id[s.rollout_id].finished is not None for s in specs):
            return
    await asyncio.to_thread(check, ctx.settings)
