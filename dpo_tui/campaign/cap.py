"""The budget cap held against every stage that can spend, before it starts and while it runs.

Before a stage: its point estimate must fit what the cap leaves (`hold_stage`); a stage that
does not fit is refused (a `budget.stage_refused` event, then BudgetCapReached: exit 3), and
the operator raises the cap (`dpo-tui cap`, or `c` on Budget) to go on.

While endpoints run: `EndpointMeter.tick` books every started minute as it begins
(`endpoint.billed`, so live spend, `$/min` and the chat guard see it) and says when the
next minute of the running endpoints would no longer fit: within the next 60 s every
running endpoint starts at most one more billed minute, so stopping when those minutes do
not fit leaves most of a minute to stop them before the cap is crossed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dpo_tui.errors import BudgetCapReached
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import format_ts
from dpo_tui.campaign.state.budget import StageRefused


def cap_usd(campaign: Campaign) -> float | None:
    return campaign.state.part("budget_guard").cap_usd


def remaining_usd(campaign: Campaign) -> float:
    """What the cap in force leaves: cap - spend (calls, training, billed endpoint minutes) - calls in flight."""
    cap = cap_usd(campaign)
    if cap is None:
        return math.inf
    return cap - campaign.state.part("spend").total_usd - campaign.state.part("calls").in_flight_usd()


def refusal(stage: str, what: str, estimate: float, remaining: float, cap: float, *, console: bool = False) -> str:
    how = ("c on Budget raises it, with a reason" if console else
           "raise the cap with `dpo-tui cap --db D --usd X --reason ...` or `c` on Budget, then run again")
    return (f"budget cap ${cap:.4f}: {what} is estimated at ${estimate:.4f} but only ${max(remaining, 0):.4f} of the "
            f"cap remains; nothing was started ({how})")


def hold_stage(campaign: Campaign, stage: str, estimate_usd: float, what: str, *, actor: str = "system") -> None:
    """Refuse (log, then raise BudgetCapReached) a stage whose point estimate does not fit the cap."""
    cap, remaining = cap_usd(campaign), remaining_usd(campaign)
    if cap is None or estimate_usd <= remaining + 1e-9:
        return
    campaign.append("budget.stage_refused", StageRefused(stage=stage, what=what, estimate_usd=max(0.0, estimate_usd),
                                                         remaining_usd=remaining, cap_usd=cap), actor=actor)
    raise BudgetCapReached(refusal(stage, what, estimate_usd, remaining, cap),
                           console=refusal(stage, what, estimate_usd, remaining, cap, console=True))


def cap_warning(total_estimate_usd: float, cap: float | None) -> str | None:
    """A warning when the whole campaign's point estimate is above the cap in force."""
    if cap is None or total_estimate_usd <= cap:
        return None
    return (f"warning: the campaign is estimated at ${total_estimate_usd:.2f} but the cap is ${cap:.2f}: "
            f"a stage that does not fit what the cap leaves will be refused before it starts")


# -- endpoint minutes ---------------------------------------------------------------------


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def started_minutes(started_at: str, now: datetime) -> int:
    """Billed minutes of a replica running since `started_at`: every started minute."""
    seconds = (now - _parse(started_at)).total_seconds()
    return max(1, math.ceil(seconds / 60))


def per_minute_usd(ep: dict[str, Any]) -> float:
    return ep["price_cents_per_hour"] / 100 / 60


def running_endpoints(campaign: Campaign) -> list[dict[str, Any]]:
    """Endpoints deployed and not stopped: each bills its next minute unless stopped first."""
    return [e for e in campaign.state.part("endpoint").by_id.values()
            if e["state"] != "stopped" and e.get("deployment_id")]


def committed_usd(campaign: Campaign) -> dict[str, float]:
    """What no cap can undo any more: the spend, the reservations of calls in flight (they may
    complete), and the next minute of every running endpoint (it may start before the meter
    can stop it); `total` is their sum."""
    spent = campaign.state.part("spend").total_usd
    in_flight = campaign.state.part("calls").in_flight_usd()
    minute = sum(per_minute_usd(ep) for ep in running_endpoints(campaign))
    return {"spent": spent, "in_flight": in_flight, "next_minute": minute, "total": spent + in_flight + minute}


class EndpointMeter:
    """Books endpoint minutes as they start and tells when the next ones would cross the cap."""

    def __init__(self, campaign: Campaign, *, clock=lambda: datetime.now(UTC)) -> None:  # noqa: ANN001
        self.campaign, self.clock = campaign, clock

    def running(self) -> list[dict[str, Any]]:
        return running_endpoints(self.campaign)

    def start_refusal(self, price_cents_per_hour: int) -> str | None:
        """None when another endpoint may start: its first minute and the next minute of every
        running one fit what the cap leaves (so its start never crosses the cap); else why not."""
        running = self.running()
        need = price_cents_per_hour / 100 / 60 + sum(per_minute_usd(ep) for ep in running)
        remaining = remaining_usd(self.campaign)
        if need <= remaining + 1e-9:
            return None
        return (f"budget cap ${cap_usd(self.campaign) or 0:.4f}: another endpoint's first minute and the next minute "
                f"of {len(running)} running (${need:.4f}) do not fit the ${max(remaining, 0):.4f} left; it was not "
                f"started (raise the cap, then run again)")

    def tick(self) -> str | None:
        """Book the minutes started since the last tick; a message when the next minute of
        the running endpoints would not fit what the cap leaves (None while it does)."""
        now = self.clock()
        for ep in self.running():
            minutes = started_minutes(ep["started_at"], now)
            if minutes > ep.get("billed_minutes", 0):
                self.campaign.append("endpoint.billed", {
                    "endpoint_id": ep["endpoint_id"], "minutes": minutes, "cost_usd": minutes * per_minute_usd(ep),
                    "at": format_ts(now)}, actor="system")
        running = self.running()
        next_minute = sum(per_minute_usd(ep) for ep in running)
        remaining = remaining_usd(self.campaign)
        if running and next_minute > remaining + 1e-9:
            cap = cap_usd(self.campaign) or 0.0
            return (f"budget cap ${cap:.4f}: the next minute of {len(running)} running endpoint(s) "
                    f"(${next_minute:.4f}) does not fit the ${max(remaining, 0):.4f} left; the eval stopped and its "
                    f"endpoints were stopped (raise the cap, then run again: finished samples are kept)")
        return None


async def meter_loop(meter: EndpointMeter, on_cap: Callable[[str], None], *, interval_s: float = 0.5) -> None:
    """Tick the meter until cancelled; call `on_cap` once when the next minute would not fit."""
    told = False
    while True:
        message = meter.tick()
        if message is not None and not told:
            told = True
            on_cap(message)
        await asyncio.sleep(interval_s)
