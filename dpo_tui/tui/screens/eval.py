"""Eval: base against tuned per suite, the per-task wins and losses, the gate's verdict
and criterion, and the operator's override with a written reason."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from dpo_tui.tui.screens.base import StagePane
from dpo_tui.tui.screens.train import part_json


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
        ev = part_json(self.session, "eval")
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
