"""The operator console: one full-screen app over every stage of one campaign.

The app owns the session and the widgets. Workers run the services (stages, operator
actions) off the UI thread; they never touch widgets. Appends fold into the state in the
worker's thread under the session's lock and are queued; the app drains the queue on an
`EventsAppended` message at most a few times a second (a flood of rollout events becomes
one redraw), updating tables row by row.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, TabbedContent, TabPane

# The shell's path: Textual and light modules only (the panes, the views, the fold's and the
# plan's modules are imported behind the first frame: see opening.py)
from dpo_tui.campaign.progress import Progress
from dpo_tui.errors import DpoTuiError
from dpo_tui.tui.actions import OperatorActions
from dpo_tui.tui.commands import ActionsProvider
from dpo_tui.tui.messages import ActionDone, ActionFailed, EventsAppended, RolloutsProgressed, StageReported, StagesFinished
from dpo_tui.tui.opening import PANE_ACTIONS, STAGE_TABS, Opening, pane_class
from dpo_tui.tui.screens.base import StagePane
from dpo_tui.tui.screens.modals import ConfirmScreen, ConversationScreen, TextScreen
from dpo_tui.tui.screens.keys import KeysScreen, Notice, NoticesScreen, key_rows
from dpo_tui.tui.widgets.header import CampaignHeader

if TYPE_CHECKING:
    from dpo_tui.events.store import StoredEvent
    from dpo_tui.tui.session import Session


def __getattr__(name: str) -> Any:
    """`STAGES`: (key, tab label, pane class) per stage, the pane modules imported on first use."""
    if name == "STAGES":
        return tuple((key, label, pane_class(key)) for key, label in STAGE_TABS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

WRITE_ACTIONS = {"start_training", "start_eval", "record_estimate", "set_cap", "propose_split", "move_task",
                 "exclude_task", "approve_split", "unfreeze_split", "start_rollouts", "pause_resume", "cancel_rollouts",
                 "concurrency", "build_pairs", "pair_decision", "apply_pair_thresholds", "export_pairs", "cancel_training", "stop_endpoint",
                 "override_gate", "new_run"}
DRAIN_INTERVAL_S = 0.5  # at most two redraws a second from the event stream (rendering costs the engine CPU)
POLL_INTERVAL_S = 0.5   # --readonly: how often to fold what another process appended


class TuiProgress(Progress):
    """The runner's progress sink, as messages to the app (called from the worker thread)."""

    def __init__(self, app: DpoApp) -> None:
        self.app = app
        self._last = 0.0

    def say(self, line: str) -> None:
        self.app.post_message(StageReported(line))

    def rollouts(self, label: str, p: Any, campaign: Any) -> None:
        now = time.monotonic()
        final = p.finished >= p.total or p.status not in ("running",)
        if now - self._last < DRAIN_INTERVAL_S and not final:
            return
        self._last = now
        engine = self.app.engine
        self.app.post_message(RolloutsProgressed(label, {
            "total": p.total, "finished": p.finished, "passed": p.passed, "running": p.running, "errors": p.errors,
            "status": p.status, "concurrency": engine.concurrency if engine else None}))

    def done(self) -> None:
        pass


class MainScreen(Screen):
    """The console's own screen: when a dialog closes, focus goes back to the visible pane
    (Textual would restore a widget that may since have been hidden or removed), and the
    toasts held back while it was up are shown."""

    def on_screen_resume(self) -> None:
        self.app.call_after_refresh(self.app.focus_active_pane)  # type: ignore[attr-defined]
        self.app.show_held_toasts()  # type: ignore[attr-defined]


class DpoApp(OperatorActions, Opening, App):
    CSS_PATH = "app.tcss"
    TITLE = "dpo-tui"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        *[Binding(str(i + 1), f"show_stage('{key}')", label.split()[1], id=f"stage.{key}", show=False)
          for i, (key, label) in enumerate(STAGE_TABS)],
        Binding("q", "quit_app", "Quit", id="app.quit"),
        Binding("question_mark,f1", "show_keys", "Keys", id="app.keys"),
        Binding("N", "show_notices", "Notices (everything said)", id="app.notices", show=False),
        Binding("escape", "leave_input", "Leave an input (its pane's keys work again)", id="app.leave_input",
                show=False),
    ]

    def __init__(self, session: Session | None = None, *, opener: Callable[[], Session] | None = None,
                 poll_s: float = POLL_INTERVAL_S) -> None:
        """A `session` open already (every pane mounted in the first frame), or an `opener`
        that opens it behind a shell painted first (run_tui's way: see opening.py)."""
        super().__init__()
        self.init_opening(session, opener)
        self.poll_s = poll_s
        self.engine = None
        self.working: str | None = None
        self.quitting = False  # the operator quit while work ran: exit when it has stopped
        self.stages_idle = threading.Event()  # no stage runs on a worker thread (close_console waits on it)
        self.stages_idle.set()
        self.last_result: StagesFinished | None = None
        self.reports: deque[str] = deque(maxlen=200)
        self.notices: deque[Notice] = deque(maxlen=500)  # everything said, for `N`
        self._held: list[dict[str, Any]] = []  # toasts held back while a dialog is up
        self._pending: deque[StoredEvent] = deque()
        self._pending_lock = threading.Lock()
        self._posted = False
        self._last_drain = 0.0
        self._drain_timer = None
        self._dirty: set[str] = set()

    # -- layout ----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield CampaignHeader(id="header")
        with TabbedContent(initial="budget", id="stages"):
            for key, label in STAGE_TABS:
                with TabPane(label, id=key):
                    yield pane_class(key)(id=f"pane-{key}") if self.ready else self.opening_placeholder()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.ready:
            self.start_console("budget")
        else:
            self.query_one(CampaignHeader).update("dpo-tui: opening the campaign ...")
            self.call_after_refresh(self.open_in_background)  # after the shell is painted: no race for the GIL

    def start_console(self, stage: str) -> None:
        """The session is open and the panes are in: follow the log, draw, land on a pane."""
        if self.session.readonly:
            self.set_interval(self.poll_s, self._poll)
        else:
            self.session.campaign.store.subscribe(self._appended)
        self.set_interval(1.0, self._refresh_header)
        self._refresh_header()
        self.action_show_stage(stage)  # budget, or the tab chosen while opening
        if self.session.catching_up:
            self._catch_up()
        else:
            self._say_plan_error()

    def _say_plan_error(self) -> None:
        if self.session.plan_error and not self.session.readonly:
            self.notify(self.session.plan_error, severity="warning", timeout=8)

    @property
    def writes_wait(self) -> bool:
        """Writes are refused for now: the console is still opening, or (writable) still
        reading the log to its end."""
        return not self.ready or (not self.session.readonly and self.session.catching_up)

    def run_mode(self) -> str | None:
        """running, paused, stopping or waiting (for the operator's decision): the header's
        mode, from the engine running now and how the last run ended."""
        from dpo_tui.campaign.stage_progress import run_mode

        status = self.engine.progress.status if self.engine is not None else None
        waiting = self.working is None and self.last_result is not None and self.last_result.status == "waiting"
        return run_mode(status, working=self.working is not None, stopping=self.quitting, waiting=waiting)

    @property
    def engine_label(self) -> str | None:
        """The running engine's label (pilot, rollouts, eval), as its progress last said."""
        return self.pane("rollouts")._engine.get("label") if self.engine is not None else None  # type: ignore[attr-defined]

    def pane(self, key: str) -> StagePane:
        return self.query_one(f"#pane-{key}", StagePane)

    @property
    def active_stage(self) -> str:
        return self.query_one("#stages", TabbedContent).active

    # -- the event stream ------------------------------------------------------------------

    def _appended(self, events: list[StoredEvent]) -> None:
        """Store listener: runs in the appending thread, after the fold. Queue, post once."""
        with self._pending_lock:
            self._pending.extend(events)
            if self._posted:
                return
            self._posted = True
        self.post_message(EventsAppended())

    @work(thread=True, exclusive=True, group="catch-up")
    def _catch_up(self) -> None:
        """Fold the rest of a log opened partly folded, a chunk per hold of the lock. The
        chunks are not queued for the panes (a million events would pile up faster than the
        screen drains them): the visible pane is redrawn from the state twice a second, and
        every pane once the fold is done."""
        from textual.worker import get_current_worker

        worker, last = get_current_worker(), time.monotonic()
        while self.session.catching_up and not worker.is_cancelled:
            self.session.catch_up()
            if time.monotonic() - last >= DRAIN_INTERVAL_S and self.session.catching_up:
                last = time.monotonic()
                self.call_from_thread(self._show_catch_up)
        if not worker.is_cancelled:
            self.call_from_thread(self._caught_up)

    def _show_catch_up(self) -> None:
        if self.query("#stages"):  # (none while the app shuts down)
            self.pane(self.active_stage).sync()
            self._refresh_header()

    def _caught_up(self) -> None:
        """The fold reached the head: panes that hold rows from the state reload them."""
        if not self.query("#stages"):
            return
        active = self.active_stage
        for key, _label in STAGE_TABS:
            pane = self.pane(key)
            if key == "rollouts" and pane.loaded:
                pane.first_show()  # its rows, from the whole state
            if key == active:
                pane.sync()
            else:
                self._dirty.add(key)
        self._refresh_header()
        self.refresh_bindings()  # a writable console offers its writes now
        self._say_plan_error()

    def _poll(self) -> None:
        if self.session.catching_up:
            return  # the catch-up worker is folding; it reaches the head the poll follows from
        try:
            new = self.session.campaign.refresh()
        except DpoTuiError as exc:
            self.notify(f"cannot follow the log: {exc.console_text}", severity="error")
            return
        if new:
            self._dispatch(new)

    def on_events_appended(self, message: EventsAppended) -> None:
        wait = DRAIN_INTERVAL_S - (time.monotonic() - self._last_drain)
        if wait > 0:
            if self._drain_timer is None:
                self._drain_timer = self.set_timer(wait, self._drain)
            return
        self._drain()

    def _drain(self) -> None:
        self._drain_timer = None
        with self._pending_lock:
            events = list(self._pending)
            self._pending.clear()
            self._posted = False
        self._last_drain = time.monotonic()
        if events and self.query("#stages"):  # (none while the app shuts down)
            self._dispatch(events)

    def _dispatch(self, events: list[StoredEvent]) -> None:
        active = self.active_stage
        for key, _label in STAGE_TABS:
            pane = self.pane(key)
            if key == "rollouts" or (key == "log" and key == active):
                pane.on_events(events)  # row by row; the rollouts table stays current even when hidden
            if key == active:
                pane.sync()
            else:
                self._dirty.add(key)
        self._refresh_header()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if self.ready:
            self.call_after_refresh(self.focus_active_pane)
            self.show_pane(event.pane.id)

    def show_pane(self, key: str) -> None:
        """The pane `key` is shown: its first load, or what it missed while hidden."""
        pane = self.pane(key)
        if not pane.loaded:
            self._dirty.discard(key)
            pane.first_show()
            pane.sync()
        elif key in self._dirty:
            self._dirty.discard(key)
            if key == "log":
                pane.load()  # type: ignore[attr-defined]
            pane.sync()

    def _refresh_header(self) -> None:
        from dpo_tui.campaign.stage_progress import mode_text
        from dpo_tui.tui.views import gate_overridden, progress, stage_states

        headers = self.query(CampaignHeader)
        if not headers or not self.ready:  # shutting down (the screen is gone), or still opening
            return
        s = self.session
        with s.lock:
            st = s.campaign.state
            name = st.parts["campaign"].name or "?"
            spend = st.parts["spend"].total_usd
            cap = st.parts["budget_guard"].cap_usd or (s.plan.plan.budget.cap_usd if s.plan else None)
            cp = progress(s, self.run_mode())
            stages = stage_states(s, cp)
            overridden = gate_overridden(s)
        what = (self.engine_label or self.working or (self.last_result.what if self.last_result else None)
                or ("eval" if cp.eval.active else cp.phase))
        working = mode_text(what, cp.mode)
        if s.catching_up:
            working = f"reading the log: {st.last_seq:,} of {s.log_events:,} events"
            if not s.readonly:
                working += " - actions wait"
        headers.first().show(name=name, backend=s.backend_label, spend=spend, cap=cap, stages=stages,
                             readonly=s.readonly, working=working,
                             overridden=overridden)

    # -- navigation ------------------------------------------------------------------------

    def action_show_stage(self, key: str) -> None:
        self.query_one("#stages", TabbedContent).active = key
        # focus now, not after queued keys: "7" then "/" typed fast must reach the Log pane;
        # and again once the switch is drawn, in case the pane could not take focus yet
        self.focus_active_pane()
        self.call_after_refresh(self.focus_active_pane)

    def focus_active_pane(self) -> None:
        """The one focus rule: outside a dialog, focus is in the visible pane (its table, or
        the pane itself), so that pane's keys work and its footer shows. An input of the
        visible pane keeps focus while the operator types in it."""
        if self.screen is not self.screen_stack[0] or not self.query("#stages") or not self.ready:
            return  # a dialog is up (it has its own focus), the app is shutting down or still opening
        pane = self.pane(self.active_stage)
        focused = self.screen.focused
        if isinstance(focused, Input) and pane in focused.ancestors:
            return
        tables = pane.query(DataTable)
        target = tables.first() if tables else pane
        if focused is not target:
            self.screen.set_focus(target)

    def action_show_keys(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return  # a dialog is up: its own keys are on its buttons
        key = self.active_stage
        self.push_screen(KeysScreen(f"Keys: {key.capitalize()} pane", key_rows(self, self.pane(key))))

    def action_show_notices(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return
        self.push_screen(NoticesScreen(list(self.notices), list(self.reports)))

    # -- notices: every one kept for `N`; a toast never covers a dialog -----------------------

    def notify(self, message: str, *, title: str = "", severity: str = "information",  # type: ignore[override]
               timeout: float | None = None, markup: bool = True) -> None:
        self.notices.append(Notice(time.strftime("%H:%M:%S"), severity, message))
        toast = {"message": message, "title": title, "severity": severity, "timeout": timeout, "markup": markup}
        if len(self.screen_stack) > 1:
            self._held.append(toast)  # shown when the dialog closes
            return
        super().notify(**toast)

    def show_held_toasts(self) -> None:
        held, self._held = self._held, []
        for toast in held:
            super().notify(**toast)

    def action_log_filter(self) -> None:
        self.action_show_stage("log")
        self.pane("log").action_focus_filter()  # type: ignore[attr-defined]

    def action_open_selected_rollout(self) -> None:
        self.action_show_stage("rollouts")
        self.pane("rollouts").action_open_rollout()  # type: ignore[attr-defined]

    def action_rollouts_per_task(self) -> None:
        self.action_show_stage("rollouts")
        self.pane("rollouts").action_toggle_view()  # type: ignore[attr-defined]

    def action_leave_input(self) -> None:
        if isinstance(self.focused, Input):
            self.screen.set_focus(None)
            self.focus_active_pane()  # back to the pane: its keys work again at once

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.ready and (action in WRITE_ACTIONS or action in PANE_ACTIONS):
            return False  # still opening: not run, not offered (a key pressed says why: opening.py)
        if action in WRITE_ACTIONS and (self.session.readonly or self.session.catching_up):
            return False  # read-only, or the log not read to its end: not run, not offered in the footer
        return True

    def action_quit_app(self) -> None:
        if self.working is None or self.quitting:
            self.exit()  # nothing running, or q again while stopping: now
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            self.quitting = True
            self._stop_work()
            self._refresh_header()
            self.notify(f"stopping {self.working}: calls in flight finish and endpoints are stopped, then the console "
                        "quits (q again quits at once)", timeout=30)
        self.push_screen(ConfirmScreen("Quit while work is running?",
                                       f"{self.working} is running. Quitting stops it: calls in flight finish, "
                                       "endpoints are stopped, a training job runs on at Together. Finished work is "
                                       "in the log; the rest resumes next time.", yes="Quit"), answer)

    def _stop_work(self) -> None:
        """Stop what runs as q's confirmed quit does: calls in flight finish, endpoints are
        stopped, a training job is no longer followed (it runs on at Together)."""
        if self.session is not None:
            self.session.stop.set()
        if self.engine is not None:
            self.engine.cancel()  # thread-safe; it also wakes a paused engine

    def on_unmount(self) -> None:
        # every exit comes here (ctrl+q, a hang-up, an error on screen, app.exit()), not only
        # q's: a stage left running or paused would hold the process open for a resume
        # nobody can press. It stops instead; close_console waits for it before closing.
        self._stop_work()

    # -- running services ------------------------------------------------------------------

    @work(thread=True, group="actions")
    def act(self, what: str, fn: Callable[[], Any], done: str | Callable[[Any], str] | None = None,
            then: Callable[[], Any] | None = None) -> None:
        """One operator action through a service, off the UI thread; `done` is the notice (or
        makes it from what the service returned); `then` runs on the UI thread once it went
        through (the next step of what the operator confirmed)."""
        try:
            result = fn()
        except DpoTuiError as exc:
            self.post_message(ActionFailed(what, exc.console_text))
            return
        done = done(result) if callable(done) else done
        if done or then:
            self.post_message(ActionDone(done or "", then))

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(f"{message.what}: {message.error}", severity="error", timeout=8)

    def on_action_done(self, message: ActionDone) -> None:
        if message.text:
            self.notify(message.text, timeout=4)
        if message.then is not None:
            message.then()

    def on_stage_reported(self, message: StageReported) -> None:
        # the runner's narration (what headless prints on stderr): kept, not toasted; the
        # panes show the same facts from the state, and the run's end is notified
        self.reports.append(message.line)

    def _stage_work(self, what: str, until: str) -> None:
        if self.working is not None:
            self.notify(f"{self.working} is already running", severity="warning")
            return
        self.working = what
        self._refresh_header()
        self.stages_idle.clear()  # before the thread starts: close_console must not miss it
        self._run_stages(what, until)

    @work(thread=True, exclusive=True, group="stages")
    def _run_stages(self, what: str, until: str) -> None:
        def hold(engine) -> None:  # noqa: ANN001
            self.engine = engine
            if self.session.stop.is_set():
                engine.cancel()  # the console exited before this stage's engine existed

        try:
            code, status, message = self.session.run_stages(until, progress=TuiProgress(self), on_engine=hold)
        except DpoTuiError as exc:
            code, status, message = exc.exit_code, "failed", exc.console_text
        finally:
            self.stages_idle.set()
        self.post_message(StagesFinished(what, code, status, message))

    def on_stages_finished(self, message: StagesFinished) -> None:
        self.working, self.engine = None, None
        self.last_result = message
        if self.quitting:
            self.exit()
            return
        self._refresh_header()
        text = f"{message.what}: {message.status}: {message.message}"
        if message.status == "waiting" and message.what == "pilot":
            text += " - press r on Rollouts to start the rest"
        if message.status == "waiting" and message.what == "training":
            text += " - press t on Train to launch"
        self.notify(text, severity="error" if message.status in ("failed", "budget_cap", "error") else "information",
                    timeout=10)
        self._drain()  # whatever the run appended last is on screen now
        self.pane("rollouts").sync()
        self.pane(self.active_stage).sync()

    def on_rollouts_progressed(self, message: RolloutsProgressed) -> None:
        self.pane("rollouts").engine_progress(message.label, message.progress)  # type: ignore[attr-defined]
        if message.progress.get("status") != "running":
            self._refresh_header()  # paused, stopping: the header says so at once

    def action_verify_chain(self) -> None:
        self.action_show_stage("log")
        self.pane("log").action_verify()  # type: ignore[attr-defined]

    # -- detail views ----------------------------------------------------------------------

    def open_rollout(self, rollout_id: str) -> None:
        from dpo_tui.tui.views import conversation_blocks

        self.push_screen(ConversationScreen(f"Rollout {rollout_id}", *conversation_blocks(self.session, rollout_id)))

    def open_event(self, seq: int) -> None:
        ev = self.session.event_at(seq)
        head = (f"seq {ev.seq}  {ev.type} v{ev.schema_version}\nactor {ev.actor}  ts {ev.ts}\n"
                f"prev {ev.prev_hash}\nhash {ev.hash}\n\n")
        self.push_screen(TextScreen(f"Event {seq}", head + json.dumps(ev.payload, indent=2, ensure_ascii=False)))
