"""Split: every task with its suite, side, tests and leakage flags; the evidence of the
selected task; move, exclude (with a reason) and approve (freeze)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.tui.screens.base import StagePane

FLAG = {"identical_program": "dup", "near_identical_program": "near", "shared_test_inputs": "inp",
        "same_name": "name", "contained_name": "name~"}


class SplitPane(StagePane):
    stage = "split"
    BINDINGS = [Binding("m", "app.move_task", "Move", id="split.move"),
                Binding("x", "app.exclude_task", "Exclude", id="split.exclude"),
                Binding("A", "app.approve_split", "Approve", id="split.approve"),
                Binding("U", "app.unfreeze_split", "Unfreeze", id="split.unfreeze"),
                Binding("P", "app.propose_split", "Propose", id="split.propose")]

    def compose(self) -> ComposeResult:
        yield Static("", id="split-title", classes="pane-title")
        with Horizontal():
            yield DataTable(id="split-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="split-detail", classes="detail", markup=False)

    def on_mount(self) -> None:
        t = self.query_one("#split-table", DataTable)
        t.add_column("task", key="task", width=23)  # the suite prefix is its own column
        t.add_column("suite", key="suite", width=8)
        t.add_column("split", key="split", width=8)
        t.add_column("tests", key="tests", width=5)
        t.add_column("leak", key="leak", width=6)
        self._shown: tuple = ()
        self.sync()

    def selected_task(self) -> str | None:
        t = self.query_one("#split-table", DataTable)
        if t.row_count == 0:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def sync(self) -> None:
        with self.session.lock:
            s = self.session.campaign.state.part(SPLIT)
            tasks = dict(s.tasks)
            split = s.split
            findings = list(s.findings)
            frozen, fhash = s.frozen, s.frozen_hash
        title = self.query_one("#split-title", Static)
        if split is None:
            title.update("Split: not proposed yet (P proposes the plan's seeded split)")
        else:
            state = f"frozen {fhash[:12]}" if frozen else "proposed, editable: m move, x exclude, A approve"
            title.update(f"Split: {len(split.train)} train, {len(split.test)} test, {len(split.excluded)} excluded, "
                         f"{len(findings)} leakage findings - {state}")
        by_task: dict[str, list[dict]] = {}
        for f in findings:
            for tid in (f["train_id"], f["test_id"]):
                by_task.setdefault(tid, []).append(f)
        self._findings = by_task
        rows, tid_of = [], {}
        for tid, info in sorted(tasks.items()):
            side = split.side_of(tid) if split else "-"
            flags = ",".join(sorted({FLAG.get(f["kind"], f["kind"]) for f in by_task.get(tid, [])}))
            row = (tid.removeprefix(f"{info['suite']}/"), info["suite"], side or "-", str(info["tests"]), flags)
            rows.append(row)
            tid_of[row] = tid
        self._tasks = tasks
        if tuple(rows) != self._shown:
            t = self.query_one("#split-table", DataTable)
            cursor = t.cursor_row
            t.clear()
            for row in rows:
                t.add_row(*row, key=tid_of[row])
            if rows:
                t.move_cursor(row=min(cursor, len(rows) - 1))
            self._shown = tuple(rows)
        self._detail()

    def _detail(self) -> None:
        tid = self.selected_task()
        box = self.query_one("#split-detail", Static)
        if tid is None:
            box.update("")
            return
        info = self._tasks.get(tid, {})
        name = tid.removeprefix(f"{info.get('suite')}/")  # its suite on the next line: no word broken at 80 columns
        lines = [name, f"suite {info.get('suite')}, {info.get('tests')} tests", ""]
        found = self._findings.get(tid, [])
        lines.append(f"leakage findings: {len(found)}" if found else "no leakage findings")
        for f in found:
            other = f["test_id"] if f["train_id"] == tid else f["train_id"]
            lines.append(f"- {f['kind']} with {other} (score {f['score']:g}): {f['evidence']}")
        box.update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()
