"""Rollouts: live progress, pass rate, spend and $/min with sparklines, retries and errors,
ETA, the engine's controls, and a table of rollouts updated row by row (never rebuilt)."""

from __future__ import annotations

import time
from collections import deque

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, ProgressBar, Sparkline, Static

from dpo_tui.campaign.stage_progress import StableRate, live_rates
from dpo_tui.campaign.state.rollouts import ROLLOUTS, RolloutRecord
from dpo_tui.provider.events import CALLS
from dpo_tui.tui.screens.base import StagePane
from dpo_tui.tui.screens.budget import allocation_line
from dpo_tui.tui.views import progress

NAME_W = 30  # `suite/task` names: QuixBugs' and HumanEvalFix's longest fit, with `/r12` after them
SHOWN = 2000  # newest rollouts in the table: smooth with any number of rollouts (the log keeps all)


def _status(rec: RolloutRecord) -> str:
    if rec.finished is None:
        return "errored" if rec.errored is not None else "running"
    return "pass" if rec.finished["passed"] else "fail"


class RolloutsPane(StagePane):
    stage = "rollouts"
    BINDINGS = [Binding("r", "app.start_rollouts", "Start", id="rollouts.start"),
                Binding("space", "app.pause_resume", "Pause", id="rollouts.pause",
                        tooltip="Pause or resume the rollouts"),
                Binding("c", "app.cancel_rollouts", "Cancel", id="rollouts.cancel"),
                Binding("plus,equals_sign", "app.concurrency(1)", "Conc+", id="rollouts.more", show=False,
                        tooltip="Concurrency up: one more rollout in flight"),
                Binding("minus", "app.concurrency(-1)", "Conc-", id="rollouts.less", show=False,
                        tooltip="Concurrency down: one fewer rollout in flight"),
                Binding("o", "open_rollout", "Conversation", id="rollouts.open"),
                Binding("v", "toggle_view", "Per task", id="rollouts.view")]

    def compose(self) -> ComposeResult:
        with Horizontal(id="roll-top"):
            with Vertical(id="roll-stats"):
                yield Static("", id="roll-progress")
                yield ProgressBar(total=1, id="roll-bar", show_eta=False)  # never indeterminate: no animation
                yield Static("", id="roll-rates")
                yield Static("", id="roll-alloc")
            with Vertical(id="roll-sparks"):
                yield Static("spend", classes="spark-label")
                yield Sparkline([], id="spark-spend")
                yield Static("pass rate", classes="spark-label")
                yield Sparkline([], id="spark-pass")
        yield DataTable(id="roll-table", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="roll-tasks", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        tasks = self.query_one("#roll-tasks", DataTable)
        for key, label, width in (("task", "task", NAME_W), ("stage", "stage", 8), ("done", "done", 7),
                                  ("pass", "passed", 6), ("rate", "pass", 5), ("usd", "$", 8)):
            tasks.add_column(label, key=key, width=width)
        tasks.display = False
        self._task_rows: dict[str, tuple] = {}
        t = self.query_one("#roll-table", DataTable)
        for key, label, width in (("id", "rollout", NAME_W + 4), ("stage", "stage", 8), ("status", "result", 7),
                                  ("tests", "tests", 6), ("iters", "iters", 5), ("usd", "$", 8)):
            t.add_column(label, key=key, width=width)
        self._rows: set[str] = set()
        self._samples: deque[tuple[float, float, int, int]] = deque(maxlen=120)
        self._engine: dict = {}
        self._meter = StableRate()  # the ETA and $/min: over finished rollouts, never 1 s samples
        self.loaded = False
        self.set_interval(1.0, self._sample)
        self._sample()

    def first_show(self) -> None:
        self._load_all()
        self.loaded = True

    def _row(self, rec: RolloutRecord) -> tuple:
        f = rec.finished
        return (rec.rollout_id, rec.stage, _status(rec), f"{f['tests_passed']}/{f['tests']}" if f else "",
                str(f["iterations"] if f else len(rec.iterations)), f"{f['cost_usd']:.4f}" if f else "")

    def _load_all(self) -> None:
        with self.session.lock:
            recs = list(self.session.campaign.state.part(ROLLOUTS).by_id.values())
            rows = [self._row(rec) for rec in recs[-SHOWN:]]
        self._total_rows = len(recs)
        t = self.query_one("#roll-table", DataTable)
        t.clear()
        for r in rows:
            t.add_row(*r, key=r[0])
        self._order = deque(r[0] for r in rows)
        self._rows = set(self._order)

    def on_events(self, events) -> None:
        if not self.loaded:
            return  # the first show loads the rows from the state
        touched: dict[str, None] = {}
        started: set[str] = set()
        for ev in events:
            if ev.type.startswith("rollout."):
                touched[ev.payload["rollout_id"]] = None
                if ev.type == "rollout.started":
                    started.add(ev.payload["rollout_id"])
        if not touched:
            return
        t = self.query_one("#roll-table", DataTable)
        with self.session.lock:
            by_id = self.session.campaign.state.part(ROLLOUTS).by_id
            rows = [(self._row(by_id[rid]), rid in started) for rid in touched if rid in by_id]
        for row, new in rows:
            if row[0] in self._rows:
                for key, value in zip(("status", "tests", "iters", "usd"), row[2:]):
                    t.update_cell(row[0], key, value)
            elif new:  # an older rollout scrolled out of the table stays out
                t.add_row(*row, key=row[0])
                self._rows.add(row[0])
                self._order.append(row[0])
                self._total_rows += 1
                if len(self._order) > SHOWN:
                    old = self._order.popleft()
                    self._rows.discard(old)
                    t.remove_row(old)

    def engine_progress(self, label: str, progress: dict) -> None:
        self._engine = {"label": label, **progress}
        if progress.get("status") != "running" or time.monotonic() - getattr(self.app, "_last_drain", 0.0) > 1.0:
            self.sync()  # status changes at once; counts ride on the event stream's drains

    def _sample(self) -> None:
        s = self.session
        with s.lock:
            st = s.campaign.state
            r = st.part(ROLLOUTS)
            spend = st.parts["spend"].total_usd
            fin = sum(r.finished.values())
            passed = sum(r.passed.values())
            if not self.display:  # the meter sees every finish, the pane shown or not
                label = self._engine.get("label") if self.app.engine is not None else None  # type: ignore[attr-defined]
                live_rates(self._meter, progress(s, self.app.run_mode()), st, label)  # type: ignore[attr-defined]
        self._samples.append((time.monotonic(), spend, fin, passed))
        if self.display and time.monotonic() - getattr(self.app, "_last_drain", 0.0) > 1.0:
            self.sync()  # the event stream's drains redraw it while events flow

    def sync(self) -> None:
        s = self.session
        eng = self._engine
        label = eng.get("label") if self.app.engine is not None else None  # type: ignore[attr-defined]
        with s.lock:
            st = s.campaign.state
            r = st.part(ROLLOUTS)
            calls = st.part(CALLS)
            spend = st.parts["spend"].total_usd
            by_stage = {k: (r.started.get(k, 0), r.finished.get(k, 0), r.passed.get(k, 0))
                        for k in sorted(r.started)}
            retries, failed, in_flight = calls.attempts, calls.failed, len(calls.in_flight)
            tokens = calls.prompt_tokens + calls.completion_tokens
            cp = progress(s, self.app.run_mode())  # type: ignore[attr-defined]
            eta, rate = live_rates(self._meter, cp, st, label)
        count = cp.current(label)
        self.set_text("#roll-progress", "  ".join(self._progress_parts(cp, label, eng)), layout=False)
        bar = self.query_one("#roll-bar", ProgressBar)
        total, done = max(count.planned or 0, count.finished, 1), count.finished  # the same count the header shows
        if (bar.total, bar.progress) != (total, done):
            bar.update(total=total, progress=done)
        samples = list(self._samples)
        fin = sum(v[1] for v in by_stage.values())
        passed = sum(v[2] for v in by_stage.values())
        pass_s = f"{passed / fin:.0%}" if fin else "-"
        self.set_text("#roll-rates",
                      f"pass {pass_s}  spend ${spend:.3f} ({rate})  tokens {tokens:,}  retries {retries}  "
                      f"errors {failed + eng.get('errors', 0)}  in flight {in_flight}  {eta}", layout=False)
        self.set_text("#roll-alloc", allocation_line(s) or "", layout=False)
        spend_data = [x[1] for x in samples[-40:]] or [0]
        pass_data = [x[3] / x[2] if x[2] else 0 for x in samples[-40:]] or [0]
        if self.query_one("#roll-tasks", DataTable).display:
            self._sync_tasks()
        for sel, data in (("#spark-spend", spend_data), ("#spark-pass", pass_data)):
            spark = self.query_one(sel, Sparkline)
            if list(spark.data or []) != data:
                spark.data = data

    def _progress_parts(self, cp, label: str | None, eng: dict) -> list[str]:  # noqa: ANN001 - CampaignProgress
        """The progress line: the count the header's `roll:` shows first, finished/planned."""
        parts = []
        if cp.phase is not None:
            head = cp.current(cp.phase)
            parts.append(f"{cp.phase} {head.text()} ({head.passed} pass)")
            if cp.phase == "pilot":
                parts.append(f"rollouts {cp.rollouts.text()}")
        if cp.eval.active or label == "eval":
            parts.append(f"eval {cp.eval.samples.text()} ({cp.eval.samples.passed} pass)")
        if not parts:
            parts.append("no rollouts yet")
        if eng and label is not None:
            status = cp.mode if cp.mode in ("paused", "stopping") else eng.get("status", "running")
            parts.append(f"[{label}: {status}, running {eng.get('running', 0)}, "
                         f"concurrency {eng.get('concurrency', '?')} (+/- sets)]")
        elif eng:
            parts.append(f"[{eng['label']}: {eng.get('status', 'idle')}]")
        else:
            parts.append("[engine idle: r starts]" if not self.session.readonly else "[read-only]")
        total_rows = getattr(self, "_total_rows", 0)
        if total_rows > SHOWN:
            parts.append(f"(table: newest {SHOWN} of {total_rows})")
        return parts

    def action_toggle_view(self) -> None:
        """Switch the table between rollouts (newest first) and progress per task."""
        rollouts, tasks = self.query_one("#roll-table", DataTable), self.query_one("#roll-tasks", DataTable)
        per_task = not tasks.display
        tasks.display, rollouts.display = per_task, not per_task
        if per_task:
            self._sync_tasks()
        (tasks if per_task else rollouts).focus()

    def _sync_tasks(self) -> None:
        """Progress per (stage, task) from the fold's counters; only changed rows are touched."""
        with self.session.lock:
            by_task = [(stage, task, p.started, p.finished, p.passed, p.cost_usd)
                       for (stage, task), p in self.session.campaign.state.part(ROLLOUTS).by_task.items()]
        t = self.query_one("#roll-tasks", DataTable)
        added = False
        for stage, task, started, finished, passed, cost in by_task:
            key = f"{stage}:{task}"
            row = (task, stage, f"{finished}/{started}", str(passed), f"{passed / finished:.0%}" if finished else "-",
                   f"{cost:.4f}")
            old = self._task_rows.get(key)
            if old == row:
                continue
            if old is None:
                t.add_row(*row, key=key)
                added = True
            else:
                for col, value, was in zip(("done", "pass", "rate", "usd"), row[2:], old[2:]):
                    if value != was:
                        t.update_cell(key, col, value)
            self._task_rows[key] = row
        if added:
            t.sort("stage", "task")

    def action_open_rollout(self) -> None:
        t = self.query_one("#roll-table", DataTable)
        if t.row_count:
            rid = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
            self.app.open_rollout(rid)  # type: ignore[attr-defined]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_rollout(event.row_key.value)  # type: ignore[attr-defined]
