"""Train and Eval: what the log says about the DPO job, its endpoint, and the eval's
comparison and gate. Nothing is shown that the log does not hold ("not run yet")."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from dpo_tui.tui.screens.base import StagePane


def _part_json(session, key: str) -> dict[str, Any] | None:
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
        t = _part_json(self.session, "training")
        e = _part_json(self.session, "endpoint")
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


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.1%}"


class EvalPane(StagePane):
    stage = "eval"
    BINDINGS = [Binding("e", "app.start_eval", "Run eval", id="eval.start")]

    def compose(self) -> ComposeResult:
        yield Static("", id="eval-title", classes="pane-title")
        yield DataTable(id="eval-table", cursor_type="row")
        yield Static("", id="eval-decision", markup=False)

    def on_mount(self) -> None:
        t = self.query_one("#eval-table", DataTable)
        for key, label, width in (("suite", "suite", 8), ("base", "base pass@1", 11), ("tuned", "tuned pass@1", 12),
                                  ("delta", "delta", 7), ("ci", "CI", 16), ("p", "p", 6), ("mde", "MDE", 6)):
            t.add_column(label, key=key, width=width)
        self.sync()

    def sync(self) -> None:
        ev = _part_json(self.session, "eval")
        t = self.query_one("#eval-table", DataTable)
        t.clear()
        if not ev or not ev.get("suites"):
            self.query_one("#eval-title", Static).update("Eval: not run yet. No eval results in this campaign's log.")
            self.query_one("#eval-decision", Static).update("decision: not run yet (e runs the eval after training)")
            return
        self.query_one("#eval-title", Static).update(f"Eval {ev.get('run_id') or ''}: base against tuned, pass@1 "
                                                     "per suite")
        for suite, r in ev["suites"].items():
            ci = r.get("ci") or [None, None]
            t.add_row(suite, _pct(r["base"].get("pass@1")), _pct(r["tuned"].get("pass@1")), _pct(r.get("delta")),
                      f"[{_pct(ci[0])}, {_pct(ci[1])}]", f"{r['p_value']:.3f}" if r.get("p_value") is not None else "-",
                      _pct(r.get("mde")), key=suite)
        lines = [f"decision: {ev.get('decision') or 'not decided yet'}"
                 + (f" (by {ev['decided_by']})" if ev.get("decided_by") else "")
                 + (" - overridden" if ev.get("overridden") else "")]
        if ev.get("criterion"):
            lines.append(f"criterion: {ev['criterion']}")
        if ev.get("reason"):
            lines.append(f"reason: {ev['reason']}")
        for suite, r in ev["suites"].items():
            for arm in ("base", "tuned"):
                ks = [f"{k} {_pct(v)}" for k, v in r[arm].items() if k != "pass@1"]
                if ks:
                    lines.append(f"{suite} {arm}: " + ", ".join(ks))
        self.query_one("#eval-decision", Static).update("\n".join(lines))
