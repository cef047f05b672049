"""Go/no-go decisions (`decision.recorded`): one service for the headless runner (actor
`plan`, under --yes) and the TUI (actor `operator:<name>`, after a confirmation)."""

from __future__ import annotations

from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.events.campaign import Campaign


def has_decision(campaign: Campaign, decision: str) -> bool:
    return campaign.state.part(PLAN).has(decision)


def record_decision(campaign: Campaign, decision: str, stage: str, *, reason: str, actor: str,
                    estimate_usd: float | None = None) -> bool:
    """Record `decision` once; False when it was already recorded (nothing appended)."""
    if has_decision(campaign, decision):
        return False
    campaign.append("decision.recorded", {"decision": decision, "stage": stage, "estimate_usd": estimate_usd,
                                          "reason": reason}, actor=actor)
    return True
