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


def add_note(campaign: Campaign, text: str, *, stage: str | None, actor: str) -> int:
    """An operator's note for auditors (`note.added`, secrets masked): `dpo-tui note` and the
    console's notes on a running stage (pause, resume, cancel, concurrency). Returns its seq."""
    from dpo_tui.provider.secrets import operator_text

    return campaign.append("note.added", {"text": operator_text(check_note(text)), "stage": stage}, actor=actor).seq


def check_note(text: str) -> str:
    """A note's text, refused (InputError) when empty."""
    from dpo_tui.errors import InputError

    if not text.strip():
        raise InputError("--text is empty: a note needs text")
    return text
