"""Pairs: the filter funnel with its counts, the pair list, chosen against rejected side by
side, accept or reject one pair, export."""

from __future__ import annotations

import difflib

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual import work
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static

from dpo_tui.campaign.state.pairs import PAIRS, ordered_funnel
from dpo_tui.tui.screens.base import StagePane


def side_by_side(chosen: str, rejected: str) -> tuple[Text, Text]:
    """Both programs, lines only in one of them highlighted (presentation only)."""
    a, b = chosen.splitlines(), rejected.splitlines()
    left, right = Text(no_wrap=True), Text(no_wrap=True)
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for line in a[i1:i2]:
            left.append(("  " if op == "equal" else "+ ") + line + "\n", style="" if op == "equal" else "green")
        for line in b[j1:j2]:
            right.append(("  " if op == "equal" else "- ") + line + "\n", style="" if op == "equal" else "red")
    return left, right


def _short(p: dict) -> str:
    return f"{p['task_id'].rsplit('/', 1)[-1]} {p['chosen'].rsplit('/', 1)[-1]}>{p['rejected'].rsplit('/', 1)[-1]}"


COLUMNS = ("pair", "chosen", "rejected", "tokens", "state", "decision")  # the table's column keys
PAGE = 1000  # pairs in the table at once ([ and ] page): a seed-scale campaign builds tens of thousands


class PairsPane(StagePane):
    stage = "pairs"
    BINDINGS = [Binding("a", "app.pair_decision('accept')", "Accept", id="pairs.accept"),
                Binding("x", "app.pair_decision('reject')", "Reject", id="pairs.reject"),
                Binding("e", "app.export_pairs", "Export", id="pairs.export"),
                Binding("b", "app.build_pairs", "Build", id="pairs.build"),
                Binding("T", "app.apply_pair_thresholds", "Apply thresholds", id="pairs.thresholds",
                        tooltip="Apply the typed thresholds (logged; the funnel rebuilt)"),
                Binding("left_square_bracket", "page(-1)", "Page back", id="pairs.page_back", show=False),
                Binding("right_square_bracket", "page(1)", "Page on", id="pairs.page_on", show=False)]

    def compose(self) -> ComposeResult:
        yield Static("", id="pairs-funnel", classes="pane-title")
        with Horizontal(id="pairs-thresholds"):
            yield Label("thresholds: min margin", classes="field-label")
            yield Input(id="th-margin", classes="field", restrict=r"[0-9.]*")
            yield Label("per-task cap", classes="field-label")
            yield Input(id="th-cap", classes="field", restrict=r"[0-9]*")
            yield Static("", id="th-funnel")
        yield DataTable(id="pairs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="pairs-diff"):
            with VerticalScroll(classes="diff-side"):
                yield Static("", id="diff-chosen")
            with VerticalScroll(classes="diff-side"):
                yield Static("", id="diff-rejected")

    def on_mount(self) -> None:
        t = self.query_one("#pairs-table", DataTable)
        for key, (label, width) in zip(COLUMNS, (("pair (task chosen>rejected)", 32), ("chosen", 6), ("rej.", 5),
                                                  ("tokens", 6), ("filter", 12), ("operator", 8)), strict=True):
            t.add_column(label, key=key, width=width)
        self._shown: tuple = ()
        self._pairs: dict[str, dict] = {}
        self._page = 0
        self.show_thresholds()
        self.sync()

    def show_thresholds(self) -> None:
        """The thresholds in force (the operator's, else the plan's) in the inputs: nothing to preview."""
        t = self.session.pair_thresholds()
        if t is not None:
            with self.prevent(Input.Changed):
                self.query_one("#th-margin", Input).value = f"{t['min_margin']:g}"
                self.query_one("#th-cap", Input).value = str(t["per_task_cap"])
            self.query_one("#th-funnel", Static).update("(set by the operator)" if t["operator"] else "(the plan's)")

    def thresholds_typed(self) -> tuple[str, str]:
        return self.query_one("#th-margin", Input).value, self.query_one("#th-cap", Input).value

    class FunnelPreviewed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("th-margin", "th-cap") and self.session.plan is not None:
            self._preview(self.query_one("#th-margin", Input).value, self.query_one("#th-cap", Input).value)

    @work(thread=True, exclusive=True, group="funnel-preview")
    def _preview(self, margin: str, cap: str) -> None:
        from dpo_tui.errors import DpoTuiError

        try:
            funnel = self.session.preview_funnel(float(margin), int(cap))
        except ValueError:
            self.post_message(self.FunnelPreviewed("enter numbers"))
            return
        except DpoTuiError as exc:
            self.post_message(self.FunnelPreviewed(exc.message))
            return
        hint = "" if self.session.readonly else "; T applies"
        self.post_message(self.FunnelPreviewed(f"what if: → {funnel.get('manual', 0)} kept{hint}"))  # fits 80 columns

    def on_pairs_pane_funnel_previewed(self, message: FunnelPreviewed) -> None:
        self.query_one("#th-funnel", Static).update(message.text)

    def selected_pair(self) -> str | None:
        t = self.query_one("#pairs-table", DataTable)
        if t.row_count == 0:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def sync(self) -> None:
        with self.session.lock:
            p = self.session.campaign.state.part(PAIRS)
            built = p.built
            decisions = dict(p.decisions)
            export = p.export
            stale = p.stale_reason
        box = self.query_one("#pairs-funnel", Static)
        if built is None:
            box.update("Funnel: no pairs built yet (b builds them from the finished rollouts; needs a frozen split)")
            return
        funnel = ordered_funnel(built["funnel"])
        text = "Funnel: " + " → ".join(f"{k} {v}" for k, v in funnel.items())
        kept = sum(1 for x in built["pairs"] if x["dropped_by"] is None)
        text += f"\nkept {kept}; " + (f"exported {export['pairs']} ({export['together_sha256'][:12]})" if export
                                     else "not exported (e exports)")
        if stale:
            text += " - STALE: decided since; e re-exports"
        pairs = built["pairs"]
        pages = max(1, -(-len(pairs) // PAGE))
        self._page = min(self._page, pages - 1)
        page = pairs[self._page * PAGE:(self._page + 1) * PAGE]
        if pages > 1:
            first = self._page * PAGE + 1
            text += f"\ntable: pairs {first:,}-{first + len(page) - 1:,} of {len(pairs):,} ([ and ] page)"
        box.update(text)
        self._pairs = {x["pair_id"]: x for x in page}
        rows = tuple((x["pair_id"], _short(x), f"{x['chosen_score']:.2f}", f"{x['rejected_score']:.2f}", str(x["tokens"]),
                      x["dropped_by"] or "kept", decisions.get(x["pair_id"], ""))
                     for x in page)
        if rows != self._shown:
            t = self.query_one("#pairs-table", DataTable)
            if len(rows) == len(self._shown) and all(a[0] == b[0] for a, b in zip(rows, self._shown, strict=True)):
                for new, old in zip(rows, self._shown, strict=True):  # the same pairs: a decision changed a cell
                    for key, value, was in zip(COLUMNS, new[1:], old[1:], strict=True):
                        if value != was:
                            t.update_cell(new[0], key, value)
            else:  # built anew: every row (thousands at seed scale, so only then)
                cursor = t.cursor_row
                t.clear()
                for row in rows:
                    t.add_row(*row[1:], key=row[0])
                if rows:
                    t.move_cursor(row=min(cursor, len(rows) - 1))
            self._shown = rows
            self._diff()

    def action_page(self, step: int) -> None:
        """The previous or next PAGE of built pairs in the table (the cursor to its top)."""
        before = self._page
        self._page = max(0, self._page + step)
        self.sync()
        if self._page != before:
            self.query_one("#pairs-table", DataTable).move_cursor(row=0)

    def _diff(self) -> None:
        pid = self.selected_pair()
        info = self._pairs.get(pid or "")
        if info is None:
            return
        chosen = self.session.rollout_program(info["chosen"])
        rejected = self.session.rollout_program(info["rejected"])
        left, right = side_by_side(chosen, rejected)
        head_l = Text(f"chosen {info['chosen']} score {info['chosen_score']:.2f}\n", style="bold")
        head_r = Text(f"rejected {info['rejected']} score {info['rejected_score']:.2f}\n", style="bold")
        self.query_one("#diff-chosen", Static).update(head_l + left)
        self.query_one("#diff-rejected", Static).update(head_r + right)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._diff()
