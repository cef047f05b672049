"""Budget: the estimate per stage (calls and dollars), the calibrated estimate beside it,
the pair yield and the cap; the plan's estimate inputs editable with the estimate updating."""

from __future__ import annotations

import contextlib
import threading

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Input, Label, Static

from dpo_tui.campaign.budget import parse_input
from dpo_tui.campaign.cap import cap_warning
from dpo_tui.campaign.power import power_pane_lines
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.errors import DpoTuiError
from dpo_tui.tui.screens.base import StagePane

# (input id, plan section, field, label)
FIELDS = (("avg_iters", "budget", "avg_iters", "iters"), ("avg_reflections", "budget", "avg_reflections", "refl"),
          ("prompt_tokens_per_call", "budget", "prompt_tokens_per_call", "prompt tok"),
          ("completion_tokens_per_call", "budget", "completion_tokens_per_call", "compl tok"),
          ("rollouts_per_task", "rollouts", "rollouts_per_task", "roll/task"))


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def allocation_line(s) -> str | None:  # noqa: ANN001 - the console's session
    """Which allocation the plan uses and where it stands (campaign/allocation.forecast)."""
    from dpo_tui.campaign import allocation
    from dpo_tui.campaign.state.split import SPLIT

    if s.plan is None:
        return None
    with s.lock:
        split = s.campaign.state.part(SPLIT).split
        train = len(split.train) if split is not None else 0
        f = allocation.forecast(s.campaign.state, s.plan.plan, train)
    return allocation.forecast_line(f)


class BudgetPane(StagePane):
    stage = "budget"
    BINDINGS = [Binding("ctrl+r", "app.record_estimate", "Record estimate", id="budget.record"),
                Binding("c", "app.set_cap", "Set cap", id="budget.cap")]

    def compose(self) -> ComposeResult:
        yield Static("", id="budget-title", classes="pane-title")
        yield DataTable(id="budget-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="budget-yield")
        yield Static("", id="budget-power")
        with Horizontal(id="budget-inputs"):
            for fid, _sec, _f, label in FIELDS:
                yield Label(label, classes="field-label")
                yield Input(id=f"in-{fid}", classes="field", restrict=r"[0-9.]*")
        with Horizontal(classes="pane-buttons"):
            yield Static("", id="budget-error", classes="error")
            yield Button("Pilot / rollouts (r)", id="budget-pilot", variant="warning")

    def on_mount(self) -> None:
        t = self.query_one("#budget-table", DataTable)
        t.add_column("stage", key="stage", width=9)
        t.add_column("calls", key="calls", width=7)
        t.add_column("$ est", key="usd", width=8)
        t.add_column("range", key="range", width=15)
        t.add_column("$ calib", key="cal", width=8)
        t.add_column("$ what if", key="edit", width=9)
        pc = self.session.plan
        for fid, sec, field, _label in FIELDS:
            inp = self.query_one(f"#in-{fid}", Input)
            value = getattr(getattr(pc.plan, sec), field) if pc else None
            inp.value = f"{value:g}" if value is not None else ""
            if pc is not None and value is None:
                inp.placeholder = "prior"  # unset in the plan: from the plan's solve-rate prior
            inp.disabled = self.session.readonly or pc is None
        self.query_one("#budget-pilot", Button).disabled = self.session.readonly or pc is None
        self.query_one("#budget-pilot", Button).display = not self.session.readonly  # read-only offers no action
        self.sync()

    def edits(self) -> tuple[dict, dict]:
        budget, rollouts = {}, {}
        for fid, sec, field, _label in FIELDS:
            raw = self.query_one(f"#in-{fid}", Input).value.strip()
            # empty: the plan's prior decides; text the plan's validation refuses names the field
            (budget if sec == "budget" else rollouts)[field] = parse_input(field, raw) if raw else None
        return budget, rollouts

    def on_input_changed(self, event: Input.Changed) -> None:
        self.sync()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "budget-pilot":
            self.app.action_start_rollouts()  # type: ignore[attr-defined]

    def sync(self) -> None:
        s = self.session
        with s.lock:
            b = s.campaign.state.part(BUDGET)
            first, latest, cal, yld = b.first, b.latest, b.calibrated, b.pair_yield
            cap = s.campaign.state.parts["budget_guard"].cap_usd or b.cap_usd
            cap_by = b.cap_set_by
        if cap is None and s.plan:
            cap, cap_by = s.plan.plan.budget.cap_usd, "plan, not logged yet"
        edited, error = None, ""
        if s.plan is not None:
            try:
                _plan, _inp, est = s.what_if(*self.edits())
                edited = est.to_json()
            except DpoTuiError as exc:
                error = exc.message
        base = latest or first
        warning = cap_warning((cal or base)["total_usd"], cap) if (cal or base) else None
        self.query_one("#budget-error", Static).update(error or warning or "")
        title = "Budget: estimate per stage"
        if base is None:
            title += " (none logged yet: the plan's estimate is in '$ what if'"
            title += ")" if s.readonly else "; ctrl+r records it)"
        by = f" ({cap_by})" if cap_by and cap_by != "plan" else ""
        sets = "" if s.readonly else " (c sets)"
        what_if = "\nthe inputs below are a what-if ($ what if): the plan sets what runs"
        self.query_one("#budget-title", Static).update(f"{title}   cap {_usd(cap)}{by}{sets}{what_if}")
        t = self.query_one("#budget-table", DataTable)
        t.clear()
        stages = list((base or edited or {"by_stage": {}})["by_stage"])
        for stage in stages:
            e = (base or {}).get("by_stage", {}).get(stage)
            c = (cal or {}).get("by_stage", {}).get(stage)
            w = (edited or {}).get("by_stage", {}).get(stage)
            t.add_row(stage, f"{(e or w or {}).get('calls', 0):,.0f}", _usd(e["usd"]) if e else "-",
                      f"{_usd(e['low_usd'])}-{_usd(e['high_usd'])}" if e else "-", _usd(c["usd"]) if c else "-",
                      _usd(w["usd"]) if w else "-", key=stage)
        tot = base or edited
        if tot:
            t.add_row("total", f"{tot['calls']:,.0f}", _usd(base["total_usd"]) if base else "-",
                      f"{_usd(base['low_usd'])}-{_usd(base['high_usd'])}" if base else "-",
                      _usd(cal["total_usd"]) if cal else "-", _usd(edited["total_usd"]) if edited else "-",
                      key="total")
        if yld:
            line = (f"pair yield: pilot pass rate {yld.get('pass_rate', 0):.0%}, ~{yld.get('expected_pairs', 0):.0f} "
                    f"pairs expected of {yld.get('target_pairs', '?')} wanted")
            if s.plan is not None and s.plan.plan.rollouts.allocation == "yield":
                line += f" (at a uniform {yld.get('rollouts_per_task', '?')} per task: the rounds below re-forecast)"
            if yld.get("warning"):
                line += f" - {yld['warning']}"
        else:
            line = "pair yield: after the pilot (r runs it; its calibrated estimate appears in '$ calib')"
        if alloc := allocation_line(s):
            line += f"\n{alloc}"
        self.query_one("#budget-yield", Static).update(line)
        self._show_power()

    # -- power: a simulation of the gate, seconds on a large suite, so never on the UI thread;
    # one computation at a time (each would redo the same work: the memo fills when it ends),
    # in a daemon thread, so quitting never waits for it --

    @property
    def power_pending(self) -> bool:
        return bool(getattr(self, "_power_busy", False))

    def _show_power(self) -> None:
        self._power_wanted = getattr(self, "_power_wanted", 0) + 1
        if not self.__dict__.get("_texts", {}).get("#budget-power"):
            self.set_text("#budget-power", "power: computing what the planned eval can detect…")
        if self.power_pending:
            return  # the running one is followed by another if the state moved on meanwhile
        self._power_busy = True
        threading.Thread(target=self._compute_power, args=(self._power_wanted,), daemon=True,
                         name="budget-power").start()

    def _compute_power(self, wanted: int) -> None:
        try:
            power = self.session.power()
            text = "\n".join(power_pane_lines(power)) if power else ""
        except DpoTuiError as exc:
            text = f"power: {exc.message}"
        with contextlib.suppress(RuntimeError):  # the app has gone meanwhile
            self.app.call_from_thread(self._power_done, wanted, text)

    def _power_done(self, wanted: int, text: str) -> None:
        self._power_busy = False
        if not self.is_attached:
            return
        self.set_text("#budget-power", text)
        if wanted != self._power_wanted:
            self._show_power()
