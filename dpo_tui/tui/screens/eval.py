"""Eval: base against tuned per suite, the per-task wins and losses, the gate's verdict
and criterion, and the operator's override with a written reason."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from dpo_tui.tui.screens.base import StagePane
from dpo_tui.tui.screens.train import part_json
from dpo_tui.tui.views import progress


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.1%}"


RESULT_ORDER = {"loss": 0, "win": 1, "tie": 2}  # the per-task table: losses, then wins, then ties


def _decision_lines(ev: dict[str, Any]) -> list[str]:
    head = f"decision: {ev.get('decision') or 'not decided yet'}"
    if ev.get("overridden"):
        head += f", overridden by {ev.get('decided_by')} (the gate said {ev.get('gate_decision')})"
    elif ev.get("decided_by"):
        head += f" (by {ev['decided_by']})"
    lines = [head]
    if ev.get("criterion") or ev.get("reason"):
        lines.append(f"criterion: {ev.get('criterion') or '-'}; reason: {ev.get('reason') or '-'}")
    for suite, r in ev["suites"].items():
        ks = [f"{k} {_pct(r['base'][k])} -> {_pct(r['tuned'].get(k))}" for k in r["base"] if k != "pass@1"]
        lines.append(f"{suite}: wins {r.get('wins', 0)}, losses {r.get('losses', 0)}, ties {r.get('ties', 0)}"
                     + (f"; {', '.join(ks)}" if ks else "")
                     + ("; no discordant tasks: no interval" if r.get("discordant") == 0 else ""))
    return lines


class EvalPane(StagePane):
    stage = "eval"
    BINDINGS = [Binding("e", "app.start_eval", "Run eval", id="eval.start"),
                Binding("o", "app.override_gate", "Override gate", id="eval.override")]

    def compose(self) -> ComposeResult:
        yield Static("", id="eval-title", classes="pane-title")
        yield Static("", id="eval-progress", markup=False)
        yield DataTable(id="eval-table", cursor_type="row")
        yield Static("", id="eval-decision", markup=False)
        yield DataTable(id="eval-tasks", cursor_type="row")

    def on_mount(self) -> None:
        t = self.query_one("#eval-table", DataTable)
        for key, label, width in (("suite", "suite", 8), ("base", "base pass@1", 11), ("tuned", "tuned pass@1", 12),
                                  ("delta", "delta", 7), ("ci", "CI", 16), ("p", "p", 6), ("mde", "MDE", 6)):
            t.add_column(label, key=key, width=width)
        tasks = self.query_one("#eval-tasks", DataTable)
        for key, label, width in (("suite", "suite", 12), ("task", "task", 34), ("base", "base", 6),
                                  ("tuned", "tuned", 6), ("result", "result", 6)):
            tasks.add_column(label, key=key, width=width)
        self.query_one("#eval-progress").display = False
        self.sync()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """While an eval runs and this pane is up: the provisioning seconds move on."""
        if getattr(self.app, "active_stage", None) == "eval" and self.__dict__.get("_active"):
            self.sync()

    def _progress(self) -> bool:
        """The eval under way (the one progress model's): endpoint state and provisioning
        time, n of N samples, spend accruing; True while it runs (no gate decision yet)."""
        with self.session.lock:
            ep = progress(self.session, self.app.run_mode()).eval  # type: ignore[attr-defined]
        self._active = ep.active
        box = self.query_one("#eval-progress")
        if box.display != ep.active:
            box.display = ep.active
        if ep.active:
            s = ep.samples
            lines = [f"eval {ep.run_id or ''} running: samples {s.text()} ({s.passed} pass, {s.running} in flight"
                     + (f", {s.errored} errored" if s.errored else "") + ")"]
            lines += [e.text() for e in ep.endpoints] or ["endpoints: not started yet"]
            lines.append(f"spend so far ${ep.spend_usd:.3f} (endpoints ${ep.endpoint_usd_per_min:.3f}/min while "
                         "they run)")
            self.set_text("#eval-progress", "\n".join(lines))
        return ep.active

    def _sequential(self, ev: dict[str, Any]) -> list[str]:
        """A sequential eval's looks, where it stopped, what it skipped and saved (the service's lines)."""
        from dpo_tui.campaign.sequential_eval import pane_lines

        if not ev or not ev.get("looks"):
            return []
        with self.session.lock:
            state = self.session.campaign.state
            simulated = state.part("plan").backend == "simulator"
            return pane_lines(state, ev.get("run_id"), simulated)

    def sync(self) -> None:
        active = self._progress()
        ev = part_json(self.session, "eval")
        if (ev, active) == self.__dict__.get("_shown", ...):
            return  # unchanged: keep the tables' cursors where the operator left them
        self._shown = (ev, active)
        t = self.query_one("#eval-table", DataTable)
        t.clear()
        self.query_one("#eval-tasks", DataTable).clear()
        if not ev or not ev.get("suites"):
            if active:
                self.set_text("#eval-title", "Eval: running. Results and the gate come when every sample is in.")
                self.set_text("#eval-decision", "\n".join(["decision: after the last sample (the gate decides)",
                                                           *self._sequential(ev)]))
                return
            self.set_text("#eval-title", "Eval: not run yet. No eval results in this campaign's log.")
            self.set_text("#eval-decision", "decision: not run yet (e runs the eval after training)")
            return
        self.set_text("#eval-title", f"Eval {ev.get('run_id') or ''}: base against tuned, pass@1 per suite")
        for suite, r in ev["suites"].items():
            ci = "no discordant" if r.get("ci") is None and r.get("discordant") == 0 else r.get("ci_text") or "-"
            t.add_row(suite, _pct(r["base"].get("pass@1")), _pct(r["tuned"].get("pass@1")), _pct(r.get("delta")),
                      ci, f"{r['p_value']:.3f}" if r.get("p_value") is not None else "-",
                      _pct(r.get("mde")), key=suite)
        self.set_text("#eval-decision", "\n".join(_decision_lines(ev) + self._sequential(ev)))
        self._task_rows(ev["suites"])

    def _task_rows(self, suites: dict[str, Any]) -> None:
        rows = [(RESULT_ORDER.get(o["result"], 3), suite, task, o)
                for suite, r in suites.items() for task, o in (r.get("per_task") or {}).items()]
        table = self.query_one("#eval-tasks", DataTable)
        for _order, suite, task, o in sorted(rows, key=lambda x: x[:3]):
            table.add_row(suite, task, f"{o['base_passed']}/{o['base_runs']}", f"{o['tuned_passed']}/{o['tuned_runs']}",
                          o["result"], key=f"{suite}/{task}")
