"""The console's two reference screens: every key of the visible pane and of the console
(`?` or F1), and the history of everything the console said (`N`)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


@dataclass(frozen=True)
class Notice:
    time: str      # HH:MM:SS, the console's clock
    severity: str  # information | warning | error
    text: str


def _keys_shown(app, b: Binding) -> str:  # noqa: ANN001 - DpoApp
    """Every key of a binding as the footer draws keys: `+ / =`, not `plus,equals_sign`."""
    return " / ".join(app.get_key_display(b.with_key(k.strip())) for k in b.key.split(","))


def key_rows(app, pane) -> list[tuple[str, str, str]]:  # noqa: ANN001 - (DpoApp, StagePane)
    """(section, key, description) for every binding the operator can use now: the pane's,
    then the console's; what --readonly does not offer is left out."""
    rows: list[tuple[str, str, str]] = []
    for b in pane.BINDINGS:
        action = b.action.removeprefix("app.")
        if app.check_action(action.split("(")[0], ()) is False:
            continue
        rows.append((f"{pane.stage.capitalize()} pane", _keys_shown(app, b), b.tooltip or b.description))
    rows.append(("Everywhere", "1-7", "switch stage (Budget Split Rollouts Pairs Train Eval Log)"))
    for b in app.BINDINGS:
        if isinstance(b, Binding) and b.id and not b.id.startswith("stage."):
            rows.append(("Everywhere", _keys_shown(app, b), b.description))
    rows.append(("Everywhere", "ctrl+p", "command palette: every action by name, with its key"))
    rows.append(("Everywhere", "tab", "next control in the pane"))
    return rows


class KeysScreen(ModalScreen[None]):
    """Every key of the visible pane and of the console, as a table that fits 80x24."""

    BINDINGS = [Binding("escape,question_mark,f1", "close", "Close", id="keys.close")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text, self.rows = title, rows

    def compose(self) -> ComposeResult:
        t = Text()
        section = None
        for sec, key, desc in self.rows:
            if sec != section:
                t.append(("" if section is None else "\n") + sec + "\n", style="bold")
                section = sec
            t.append(f"  {key:>10}  ", style="bold cyan")
            t.append(f"{desc}\n")
        with Vertical(classes="modal keys"):
            yield Label(f"{self.title_text}   (esc or ? closes)", classes="modal-title")
            yield Static(t, id="keys-body")

    def action_close(self) -> None:
        self.dismiss(None)


class NoticesScreen(ModalScreen[None]):
    """Everything the console said, newest last: notices with their time and severity, and
    what the runner narrated."""

    BINDINGS = [Binding("escape,N,q", "close", "Close", id="notices.close"),
                Binding("end", "end", "Newest", id="notices.end")]

    def __init__(self, notices: list[Notice], reports: list[str]) -> None:
        super().__init__()
        self.notices, self.reports = notices, reports

    def compose(self) -> ComposeResult:
        t = Text()
        if not self.notices:
            t.append("nothing said yet\n", style="dim")
        for n in self.notices:
            style = {"error": "bold red", "warning": "yellow"}.get(n.severity, "")
            t.append(f"{n.time} {n.severity:<11} ", style="dim")
            t.append(f"{n.text}\n", style=style)
        if self.reports:
            t.append("\nwhat the stages reported\n", style="bold")
            for line in self.reports:
                t.append(f"  {line}\n")
        with Vertical(classes="modal wide"):
            yield Label("Notices (esc closes, end jumps to the newest)", classes="modal-title")
            with VerticalScroll(id="notices-scroll"):
                yield Static(t, id="notices-body")

    def on_mount(self) -> None:
        self.query_one("#notices-scroll", VerticalScroll).scroll_end(animate=False)

    def action_end(self) -> None:
        self.query_one("#notices-scroll", VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
