"""Train: what the log says about the DPO job (upload, price, status, its events) and the
dedicated endpoints. Nothing is shown that the log does not hold ("not run yet")."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from dpo_tui.tui.screens.base import StagePane


def part_json(session, key: str) -> dict[str, Any] | None:
    with session.lock:
        part = session.campaign.state.parts.get(key)
        return part.to_json() if part is not None and hasattr(part, "to_json") else None


class TrainPane(StagePane):
    stage = "train"
    BINDINGS = [Binding("t", "app.start_training", "Prepare/launch", id="train.start")]

    def compose(self) -> ComposeResult:
        yield Static("", id="train-body", markup=False)

    def on_mount(self) -> None:
        self.sync()

    def sync(self) -> None:
        t = part_json(self.session, "training")
        e = part_json(self.session, "endpoint")
        body = self.query_one("#train-body", Static)
        if t and not (t.get("job_id") or t.get("status")) and t.get("runs"):
            t = {**list(t["runs"].values())[-1], "runs": t["runs"]}  # prepared (uploaded, priced), not launched
        if not t or not (t.get("job_id") or t.get("file_id") or t.get("status") or t.get("estimated_usd")):
            body.update("Train: not run yet. No training file uploaded and no DPO job in this campaign's log.\n"
                        "t uploads the exported pairs and asks Together for the price (free), then t launches."
                        + ("" if t is not None else "\n(this dpo-tui has no training stage)"))
            return
        hp = t.get("hyperparameters") or {}
        lines = [f"Train: job {t.get('job_id') or '- (not launched: t asks, then launches)'}   "
                 f"status {t.get('status') or '-'}",
                 f"file {t.get('file_id') or '-'}   base {t.get('base_model') or '-'}",
                 f"output model {t.get('model') or '-'}",
                 f"price: estimated {_usd(t.get('estimated_usd'))}, charged {_usd(t.get('price_usd'))}",
                 f"job events {t.get('job_events', 0)}", "",
                 "hyperparameters: " + ", ".join(f"{k}={v}" for k, v in sorted(hp.items()))]
        if e and e.get("all"):
            lines.append("")
            lines.append(f"endpoints: {e['running']} running, {e['minutes']:.1f} minutes billed")
            for x in e["all"]:
                lines.append(f"  {x.get('endpoint_id')} {x.get('role')} {x.get('state')} "
                             f"{(x.get('minutes') or 0):.1f} min {_usd(x.get('cost_usd'))} "
                             f"({(x.get('price_cents_per_hour') or 0) / 100:.2f} $/h)")
        body.update("\n".join(lines))


def _usd(x: Any) -> str:
    return "-" if x is None else f"${x:,.2f}"
