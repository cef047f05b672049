"""Train: what the log says about the DPO job (upload, price, status, its events as they
stream in) and the dedicated endpoints (state, per-minute price, billed minutes). Launch,
cancel and stop go through the app's actions. Nothing is shown that the log does not hold."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Sparkline, Static

from dpo_tui.tui.screens.base import StagePane


def part_json(session, key: str) -> dict[str, Any] | None:
    with session.lock:
        part = session.campaign.state.parts.get(key)
        return part.to_json() if part is not None and hasattr(part, "to_json") else None


def _usd(x: Any) -> str:
    return "-" if x is None else f"${x:,.2f}"


def _event_row(e: dict[str, Any]) -> tuple[str, str, str]:
    ts = str(e.get("created_at") or "")
    step = f" {e['step']}/{e['total_steps']}" if e.get("step") is not None and e.get("total_steps") else ""
    return ts[11:19] or "-", f"{e.get('type') or '-'}{step}", str(e.get("message") or "")


ROOMY = 34  # terminal rows from which the Train pane lists every hyperparameter
KEY_HP = ("training_method", "n_epochs", "learning_rate", "dpo_beta", "batch_size", "lora", "lora_r", "lora_alpha",
          "max_seq_length")


def _hyperparameters(hp: dict[str, Any], *, every: bool) -> str:
    """The job's hyperparameters, the ones that decide a DPO run first; the rest follow where
    there is room, else their count and where the log has them."""
    key = [k for k in KEY_HP if k in hp]
    rest = sorted(k for k in hp if k not in KEY_HP)
    text = "hyperparameters: " + ", ".join(f"{k}={hp[k]}" for k in key)
    if rest and every:
        text += "; " + ", ".join(f"{k}={hp[k]}" for k in rest)
    elif rest:
        text += f" (+{len(rest)} more in a taller terminal)"
    return text


class TrainPane(StagePane):
    stage = "train"
    BINDINGS = [Binding("t", "app.start_training", "Prepare/launch", id="train.start"),
                Binding("c", "app.cancel_training", "Cancel", id="train.cancel", tooltip="Cancel the DPO job"),
                Binding("n", "app.new_run", "New run", id="train.new_run"),
                Binding("s", "app.stop_endpoint", "Stop endpoint", id="train.stop_endpoint")]

    def compose(self) -> ComposeResult:
        yield Static("", id="train-body", markup=False)
        yield Static("", id="train-loss-label", markup=False)
        yield Sparkline([], id="train-loss")
        yield Static("", id="train-accuracy-label", markup=False)
        yield Sparkline([], id="train-accuracy")
        yield Static("", id="train-warnings", classes="warning", markup=False)
        yield DataTable(id="train-events", cursor_type="row", zebra_stripes=True)
        yield Static("", id="train-endpoints-title", classes="pane-title", markup=False)
        yield DataTable(id="train-endpoints", cursor_type="row")

    def on_mount(self) -> None:
        ev = self.query_one("#train-events", DataTable)
        for key, label, width in (("time", "time", 8), ("type", "job event", 32), ("message", "message", 44)):
            ev.add_column(label, key=key, width=width)
        eps = self.query_one("#train-endpoints", DataTable)
        for key, label, width in (("id", "endpoint", 20), ("role", "role", 5), ("state", "state", 12),
                                  ("rate", "$/min", 7), ("minutes", "billed", 6), ("usd", "$", 7)):
            eps.add_column(label, key=key, width=width)
        self._events_shown = 0
        self._events_job: str | None = None
        self._endpoints: tuple = ()
        self.sync()

    def selected_endpoint(self) -> str | None:
        t = self.query_one("#train-endpoints", DataTable)
        if t.row_count == 0:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def sync(self) -> None:
        run = self.session.training_run()
        self.set_text("#train-body", self._body(run))
        self._sync_metrics(self.session.training_metrics())
        self._sync_events(run)
        self._sync_endpoints(part_json(self.session, "endpoint"))

    def _body(self, t: dict[str, Any] | None) -> str:
        if not t or not (t.get("job_id") or t.get("file_id") or t.get("status") or t.get("estimated_usd")):
            which = f"Train {t['run_id']}" if t else "Train"
            return (f"{which}: not run yet. No training file uploaded and no DPO job for it in this campaign's log.\n"
                    "t uploads the exported pairs and asks Together for the price (free), then t launches.")
        hp = t.get("hyperparameters") or {}
        status = t.get("status") or "-"
        if t.get("job_id") and status not in ("completed", "cancelled", "error", "user_error"):
            status += " (c cancels)"
        return "\n".join([
            f"Train {t.get('run_id')}: job {t.get('job_id') or '- (not launched: t asks, then launches)'}   "
            f"status {status}",
            f"file {t.get('file_id') or '-'}   base {t.get('base_model') or '-'}",
            f"output model {t.get('model') or '-'}",
            f"price: estimated {_usd(t.get('estimated_usd'))}, charged {_usd(t.get('price_usd'))}   "
            f"job events {t.get('job_events', 0)}",
            _hyperparameters(hp, every=self.app.size.height >= ROOMY)])

    def on_resize(self) -> None:
        self.sync()  # every hyperparameter where the terminal has the rows, the ones that matter where not

    def _sync_metrics(self, m: dict[str, Any]) -> None:
        """Loss and reward accuracy per step as the log has them, and the failure signs."""
        last = m.get("last") or {}

        def shown(key: str) -> str:
            v = last.get(key)
            return "-" if v is None else f"{v:.4f}"

        steps = f"{m.get('steps', 0)} steps" + ("" if m.get("final") or not m.get("steps") else " so far")
        self.set_text("#train-loss-label", f"loss (last {shown('loss')}, {steps})" if m.get("steps")
                      else "loss: no training metrics yet (read from Together while the job runs)")
        self.set_text("#train-accuracy-label", f"reward accuracy (last {shown('accuracy')})" if m.get("steps") else "")
        loss = [x for x in m.get("loss", []) if x is not None]
        acc = [x for x in m.get("accuracy", []) if x is not None]
        if list(self.query_one("#train-loss", Sparkline).data or []) != loss:
            self.query_one("#train-loss", Sparkline).data = loss
        if list(self.query_one("#train-accuracy", Sparkline).data or []) != acc:
            self.query_one("#train-accuracy", Sparkline).data = acc
        self.set_text("#train-warnings", "\n".join(f"warning: {w}" for w in m.get("warnings", [])))

    def _sync_events(self, run: dict[str, Any] | None) -> None:
        """Append the job's new events (the log only ever adds them): a stream, not a rebuild."""
        table = self.query_one("#train-events", DataTable)
        job = run.get("job_id") if run else None
        events = run.get("events", []) if run else []
        if job != self._events_job:
            table.clear()
            self._events_shown, self._events_job = 0, job
        for e in events[self._events_shown:]:
            table.add_row(*_event_row(e))
        if len(events) > self._events_shown:
            self._events_shown = len(events)
            table.move_cursor(row=table.row_count - 1)  # follow the stream

    def _sync_endpoints(self, e: dict[str, Any] | None) -> None:
        rows = tuple((x.get("endpoint_id"), x.get("role") or "-", x.get("state") or "-",
                      f"{(x.get('price_cents_per_hour') or 0) / 100 / 60:.4f}",
                      f"{x['minutes']} min" if x.get("minutes") is not None else "-", _usd(x.get("cost_usd")))
                     for x in (e or {}).get("all", []))
        if e and e.get("all"):
            title = (f"Endpoints: {e['running']} running (s stops the selected one), {e['minutes']:.0f} minutes "
                     f"billed")
        else:
            title = "Endpoints: none started (the eval starts its own, and always stops them)"
        self.set_text("#train-endpoints-title", title)
        if rows != self._endpoints:
            table = self.query_one("#train-endpoints", DataTable)
            cursor = table.cursor_row
            table.clear()
            for row in rows:
                table.add_row(*row, key=row[0])
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1))
            self._endpoints = rows
