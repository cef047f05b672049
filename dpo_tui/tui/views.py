"""Read-only projections of the folded state for the screens: each stage's state in a word or
two (the header) and one rollout's conversation as the log holds it (the Rollouts pane).
Nothing here computes a domain result; it reads the state under the session's lock."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from dpo_tui.campaign.stage_progress import CampaignProgress, campaign_progress, fold_mode
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.campaign.state.pairs import PAIRS
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT

if TYPE_CHECKING:
    from dpo_tui.tui.session import Session


def progress(session: Session, mode: str | None = None) -> CampaignProgress:
    """The one progress model (campaign/stage_progress.py) of the session's campaign, under
    the plan the log recorded (call under session.lock)."""
    cp = campaign_progress(session.campaign.state, mode=mode)
    if mode is None and session.readonly:
        cp = dataclasses.replace(cp, mode=fold_mode(cp))  # another process writes: what the log shows
    return cp


def stage_states(session: Session, cp: CampaignProgress | None = None) -> dict[str, str]:
    """One word or two per stage, read from the folded state (call under session.lock); the
    rollouts' and the eval's counts are the progress model's (`cp`), as the panes show them."""
    st = session.campaign.state
    cp = cp or progress(session)
    b, sp, p = st.part(BUDGET), st.part(SPLIT), st.part(PAIRS)
    out = {"budget": "calibrated" if b.calibrated else ("estimated" if b.latest else "-"),
           "split": "frozen" if sp.frozen else ("proposed" if sp.split else "-")}
    out["rollouts"] = cp.rollouts_text()
    out["pairs"] = "exported" if p.export else ("built" if p.built else "-")
    train = st.parts.get("training")
    tj = train.to_json() if train is not None and hasattr(train, "to_json") else {}
    out["train"] = tj.get("status") or "-"
    out["eval"] = cp.eval_text()
    return out


def gate_overridden(session: Session) -> bool:
    """The decision in force is the operator's, not the gate's (call under session.lock)."""
    ev = session.campaign.state.parts.get("eval")
    return bool(ev is not None and hasattr(ev, "to_json") and ev.to_json().get("overridden"))


def conversation(session: Session, rollout_id: str) -> str:
    """A rollout's conversation as one plain text (the blocks below, joined)."""
    head, blocks = conversation_blocks(session, rollout_id)
    return "\n".join([*head, *(f"\n── {title}" + (f":\n{body}" if kind == "message" else f"\n{body}" if body else "")
                                for title, body, kind in blocks)])


def conversation_blocks(session: Session, rollout_id: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """A rollout as the log has it: its header lines, then (title, body, kind) blocks in
    order: the first prompt's messages and each reply (call.completed text), kind "message";
    each candidate's test output (rollout.iteration report), kind "output"; a call started
    and not completed, kind "note"."""
    from dpo_tui.provider.events import CALLS
    from dpo_tui.provider.provider import CallKey

    with session.lock:
        st = session.campaign.state
        rec = st.part(ROLLOUTS).by_id.get(rollout_id)
        if rec is None:
            return [f"no rollout {rollout_id}"], []
        calls = st.part(CALLS)
        cid = session.campaign.store.campaign_id
        iterations = {i["iteration"]: i["seq"] for i in rec.iterations}
        finished = dict(rec.finished) if rec.finished else None
        max_iter = max([*iterations, 1])
        steps = []
        for it in range(1, max_iter + 2):
            for step in ("repair", "reflect"):
                key = CallKey(rollout_id, it, step).idempotency_key(cid, rec.stage)
                steps.append((it, step, calls.started_seq.get(key), calls.completed_seq.get(key)))
            steps.append((it, "test", iterations.get(it), None))
    head = [f"rollout {rollout_id}  task {rec.task_id}  stage {rec.stage}  model {rec.model}  seed {rec.seed}"]
    if finished:
        head.append(f"outcome {finished['outcome']}: {finished['tests_passed']}/{finished['tests']} tests, "
                    f"{finished['iterations']} iterations, {finished['calls']} calls, ${finished['cost_usd']:.5f}")
    else:
        head.append("running (or stopped unfinished)")
    return head, _blocks(session, steps)


def _blocks(session: Session, steps: list[tuple[int, str, int | None, int | None]]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    shown_prompt = False
    for it, step, seq, done_seq in steps:
        if step == "test":
            if seq is None:
                continue
            rep = session.event_at(seq).payload
            report = rep.get("report") or {}
            out.append((f"iteration {it}: tests "
                        + (f"{report.get('tests_passed')}/{report.get('tests')} passed" if report else
                           f"not run ({rep.get('extract_problem') or 'no program'})"),
                        (report.get("output") or "").rstrip(), "output"))
            continue
        if seq is None:
            continue
        if not shown_prompt:
            for m in session.event_at(seq).payload.get("messages", []):
                out.append((str(m.get("role")), str(m.get("content", "")).rstrip(), "message"))
            shown_prompt = True
        if done_seq is not None:
            p = session.event_at(done_seq).payload
            out.append((f"assistant ({step}, iteration {it}, {p['usage']['completion_tokens']} tokens)",
                        p["text"].rstrip(), "message"))
        else:
            out.append((f"{step} call for iteration {it}: started, not completed", "", "note"))
    return out
