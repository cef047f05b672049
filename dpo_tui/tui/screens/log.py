"""Log: the event log as an auditor reads it. Filter by type, actor, stage and text; an
event's full payload; the chain's verification (audit); spend by stage."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from dpo_tui.campaign.stages import event_stage
from dpo_tui.tui.messages import ChainVerified, LogLoaded
from dpo_tui.tui.screens.base import StagePane

SHOWN = 2000  # newest matching events in the table; narrow the filter to reach older ones
SCAN_WINDOW = 20_000  # seqs per query of a filter's scan (newest first): it stops between two
PROGRESS_S = 0.5  # the scan's table and count are posted at least this often


FILTER_KEYS = ("type", "actor", "stage", "text")


@dataclass(frozen=True)
class LogFilter:
    types: tuple[str, ...] = ()
    actor: str = ""
    stage: str = ""
    text: str = ""
    error: str = ""

    @classmethod
    def parse(cls, raw: str) -> LogFilter:
        """`type:call actor:operator stage:rollouts free text`: a type is a prefix of the
        event's type (`type:decision` finds every `decision.*`; it may repeat), the stage is
        the event's (its payload's, else its type's), the actor a part of it; `text:` (or a
        word without a key) is searched in the type and payload. An unknown key is an error."""
        try:
            words = shlex.split(raw)
        except ValueError:
            words = raw.split()
        types, actor, stage, text = [], "", "", []
        for w in words:
            key, colon, value = w.partition(":")
            if not colon or not key.isidentifier():
                text.append(w)
            elif key not in FILTER_KEYS:
                return cls(error=f"unknown filter key '{key}:' (the keys are {', '.join(k + ':' for k in FILTER_KEYS)})")
            elif not value:
                return cls(error=f"'{key}:' needs a value, e.g. {key}:{_EXAMPLE[key]}")
            elif key == "type":
                types.append(value.rstrip("*"))
            elif key == "actor":
                actor = value
            elif key == "stage":
                stage = value
            else:
                text.append(value)
        return cls(tuple(types), actor, stage, " ".join(text).lower())

    def match(self, type_: str, actor: str, payload_text: str) -> bool:
        if self.error:
            return False
        if self.types and not any(type_.startswith(t) for t in self.types):
            return False
        if self.actor and self.actor not in actor:
            return False
        if self.stage and event_stage(type_, _payload(payload_text)) != self.stage:
            return False
        return not self.text or self.text in _fold_case(payload_text, self.text) or self.text in type_

    @property
    def in_sql(self) -> bool:
        """Everything this filter asks SQLite can answer (a stage needs the payload decoded
        in Python; non-ASCII text needs Python's case folding)."""
        return not self.stage and self.text.isascii()

    def sql(self) -> dict:
        """The store's keywords for what SQLite can pre-filter (all of it when `in_sql`)."""
        return {"type_prefixes": self.types or None, "actor": self.actor or None,
                "text": self.text if self.text.isascii() else None}


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold_case(text: str, needle: str) -> str:
    """`text` lower-cased as the needle is searched: ASCII case only for an ASCII needle (as
    SQLite's LIKE does, so the pane and the store count the same rows), else Python's."""
    if not needle.isascii():
        return text.lower()
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


_EXAMPLE = {"type": "call.completed", "actor": "operator", "stage": "split", "text": "binary_search"}


def _payload(payload_text: str) -> dict | None:
    try:
        out = json.loads(payload_text)
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def summary(payload_text: str, width: int = 60) -> str:
    return payload_text if len(payload_text) <= width else payload_text[: width - 1] + "…"


def chain_line(report: dict) -> str:
    """The Log pane's chain line from an audit report's JSON."""
    if report["ok"]:
        keyed = (f"keyed ({report['checkpoints']['verified']} checkpoints)" if report["keyed"]
                 else "not keyed: rewrites cannot be ruled out")
        text = (f"chain: ok - {report['events']:,} events verified (hash chain and invariants), "
                f"head {report['head_hash'][:12]}; {keyed}")
    else:
        problems = report["problems"]
        first = next((p for p in problems if p["seq"] == report["first_bad_seq"]), problems[0])
        text = (f"chain: FAILED - first bad event seq {report['first_bad_seq']}: {first['rule']}: "
                f"{first['message']} ({len(problems)} problems)")
    if report["warnings"]:
        text += f"; {len(report['warnings'])} warnings"
    return text


class LogPane(StagePane):
    stage = "log"
    BINDINGS = [Binding("slash", "focus_filter", "Filter", id="log.filter"),
                Binding("v", "verify", "Verify chain", id="log.verify")]

    def compose(self) -> ComposeResult:
        yield Static("chain: verifying…", id="log-chain")
        yield Static("", id="log-spend")
        yield Input(placeholder="filter: type:call actor:operator stage:split text  (/ focuses, esc leaves)",
                    id="log-filter", classes="field")
        yield DataTable(id="log-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        t = self.query_one("#log-table", DataTable)
        for key, label, width in (("seq", "seq", 8), ("ts", "time", 8), ("type", "type", 24), ("actor", "actor", 14),
                                  ("payload", "payload", 60)):
            t.add_column(label, key=key, width=width)
        self.filter = LogFilter()
        self._loaded_to = self._live = 0
        self._scan: LogLoaded | None = None  # the scan's last word: its table, count, progress
        self._held: list | None = None  # events appended while a scan's table is not in yet
        self.loaded = False
        self.sync()

    def first_show(self) -> None:
        self.loaded = True
        self.load()
        self.action_verify()

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        self._generation = getattr(self, "_generation", 0) + 1
        self._scan, self._held, self._live = None, [], 0
        if self.filter.error:  # nothing to look for: say why, in the filter's own line
            self._held = None  # no scan to wait for: nothing to hold either
            self.query_one("#log-table", DataTable).clear()
            self.sync()
            return
        self.sync()
        self._load(self.filter, self.session.db, self._generation)

    @work(thread=True, exclusive=True, group="log-load")
    def _load(self, flt: LogFilter, db, generation: int) -> None:  # noqa: ANN001
        """Scan newest first, a window of seqs per query (a newer filter cancels between
        windows): the table is posted as soon as it holds SHOWN rows (or the scan ends, or
        half a second passed), then the count goes on, in SQLite when it can."""
        from textual.worker import get_current_worker

        from dpo_tui.events.store import open_store

        worker = get_current_worker()
        rows: list[tuple] = []  # newest first
        matched, posted, final = 0, time.monotonic(), False
        with open_store(db, readonly=True) as store:  # its own connection: never the writer's
            head = hi = store.head()[0]
            while hi > 0:
                lo = max(0, hi - SCAN_WINDOW)
                if final and flt.in_sql:
                    matched += store.count(lo, upto_seq=hi, **flt.sql())
                else:
                    with contextlib.closing(store.rows(lo, upto_seq=hi, newest_first=True, **flt.sql())) as window:
                        for seq, _cid, type_, _v, actor, ts, text, _p, _h in window:
                            if not flt.match(type_, actor, text):
                                continue
                            matched += 1
                            if len(rows) < SHOWN:
                                rows.append((seq, ts[11:19], type_, actor, summary(text)))
                            elif flt.in_sql:  # the table is full: SQLite counts the rest of the window
                                matched += store.count(lo, upto_seq=seq - 1, **flt.sql())
                                break
                hi = lo
                if worker.is_cancelled:
                    return  # a newer filter superseded this one
                now = time.monotonic()
                if hi == 0 or now - posted >= PROGRESS_S or (not final and len(rows) >= SHOWN):
                    table = None if final else rows[::-1]
                    final = final or len(rows) >= SHOWN or hi == 0
                    self.post_message(LogLoaded(table, matched, head - hi, generation, head=head,
                                                rows_final=final, done=hi == 0))
                    posted = now
        if head == 0:
            self.post_message(LogLoaded([], 0, 0, generation, head=0, rows_final=True, done=True))

    def on_log_loaded(self, message: LogLoaded) -> None:
        if message.generation != self._generation:
            return  # the result of a filter typed over since
        t = self.query_one("#log-table", DataTable)
        if message.rows is not None:
            t.clear()
            for row in message.rows:
                t.add_row(str(row[0]), *row[1:], key=str(row[0]))
        if message.rows_final and self._held is not None:
            held, self._held = self._held, None  # what the log gained while the scan ran
            self._loaded_to = message.head
            self._live = 0
            self._add_live(held)
        self._scan = message
        if message.rows is not None and t.row_count:
            t.move_cursor(row=t.row_count - 1)
        self.sync()

    def on_events(self, events) -> None:
        if not self.loaded:
            return
        if self._held is not None:
            self._held.extend(events)  # the scan's table is not in yet: added once it is
            return
        self._add_live(events)

    def _add_live(self, events) -> None:  # noqa: ANN001
        t = self.query_one("#log-table", DataTable)
        for ev in events:
            if ev.seq <= self._loaded_to:
                continue
            text = json.dumps(ev.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if self.filter.match(ev.type, ev.actor, text):
                t.add_row(str(ev.seq), ev.ts[11:19], ev.type, ev.actor, summary(text), key=str(ev.seq))
                self._live += 1
            self._loaded_to = ev.seq
        while t.row_count > SHOWN:
            t.remove_row(t.coordinate_to_cell_key((0, 0)).row_key)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-filter" and self.loaded:
            self.filter = LogFilter.parse(event.value)
            self.load()

    def action_focus_filter(self) -> None:
        self.query_one("#log-filter", Input).focus()

    # -- verification ----------------------------------------------------------------------

    def action_verify(self) -> None:
        self.query_one("#log-chain", Static).update("chain: verifying…")
        self._verify(self.session.db)

    @work(thread=True, exclusive=True, group="log-verify")
    def _verify(self, db) -> None:  # noqa: ANN001
        """`dpo-tui audit` in a child process (tens of seconds at a million events: in this
        one it would slow the screen and the fold); killed if the console quits first."""
        from textual.worker import get_current_worker

        from dpo_tui.events.audit_process import AuditNotRun, audit_in_child

        worker = get_current_worker()
        try:
            report = audit_in_child(db, cancelled=lambda: worker.is_cancelled)
        except AuditNotRun as exc:
            self.post_message(ChainVerified(False, f"chain: could not verify: {exc}"))
            return
        if report is not None:
            self.post_message(ChainVerified(report["ok"], chain_line(report)))

    def on_chain_verified(self, message: ChainVerified) -> None:
        self.query_one("#log-chain", Static).update(message.summary)

    def sync(self) -> None:
        with self.session.lock:
            spend = self.session.campaign.state.parts["spend"]
            total, by_stage = spend.total_usd, dict(spend.by_stage)
            events = self.session.campaign.state.events
        stages = ", ".join(f"{k} ${v:.4f}" for k, v in sorted(by_stage.items())) or "nothing yet"
        scan = getattr(self, "_scan", None)
        if getattr(self, "filter", None) is not None and self.filter.error:
            shown = f"filter: {self.filter.error}"
        elif scan is None:
            shown = "filtering…"
        elif not scan.done:
            shown = (f"{scan.matched + self._live:,}+ match so far, newest "
                     f"{min(scan.matched + self._live, SHOWN):,} shown; counting… "
                     f"{scan.scanned:,} of {scan.head:,} events read")
        else:
            matched = scan.matched + self._live
            shown = f"{matched:,} match, newest {min(matched, SHOWN):,} shown"
        self.query_one("#log-spend", Static).update(
            f"{events:,} events ({shown}); spend ${total:.4f}: {stages}")

    def selected_seq(self) -> int | None:
        t = self.query_one("#log-table", DataTable)
        if not t.row_count:
            return None
        return int(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_event(int(event.row_key.value))  # type: ignore[attr-defined]
