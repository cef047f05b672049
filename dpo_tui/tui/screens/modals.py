"""Typed modal screens: a confirmation (bool), a written reason (str | None), a payload view."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.highlight import highlight
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet, Static

from dpo_tui.errors import DpoTuiError, InputError

T = TypeVar("T")


class ConfirmScreen(ModalScreen[bool]):
    """Ask before doing something that costs money or cannot be undone."""

    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]

    def __init__(self, title: str, body: str, *, yes: str = "Yes") -> None:
        super().__init__()
        self.title_text, self.body, self.yes = title, body, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="modal-title")
            yield Static(self.body, classes="modal-body")
            with Horizontal(classes="modal-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class FormScreen(ModalScreen[T]):
    """A modal form: OK (or enter in an input) submits through `_submit`, which validates and
    dismisses with the answer; Cancel or escape dismisses with None."""

    def _submit(self) -> None:
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReasonScreen(FormScreen["str | None"]):
    """Ask for a written reason (required); None when cancelled. `check`, when given, is the
    service's own validation: the error it raises is shown here and the modal stays open."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reason.cancel")]

    def __init__(self, title: str, prompt: str, *, check: Callable[[str], object] | None = None,
                 ok: str = "OK") -> None:
        super().__init__()
        self.title_text, self.prompt, self.check, self.ok = title, prompt, check, ok

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="modal-title")
            yield Static(self.prompt, classes="modal-body")
            yield Input(placeholder="reason (required)", id="reason")
            yield Static("", id="reason-error", classes="error")
            with Horizontal(classes="modal-buttons"):
                yield Button(f"{self.ok} (enter)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def _submit(self) -> None:
        text = self.query_one("#reason", Input).value.strip()
        if not text:
            self.query_one("#reason-error", Static).update("a reason is required")
            return
        if self.check is not None:
            try:
                self.check(text)
            except DpoTuiError as exc:
                self.query_one("#reason-error", Static).update(exc.message)
                return
        self.dismiss(text)


class CapScreen(FormScreen["tuple[str, str] | None"]):
    """Ask for a new budget cap and the reason for it; (amount, reason), None when cancelled.
    `check(amount)` is the service's validation; its error keeps the modal open."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cap.cancel")]

    def __init__(self, body: str, current: str, *, check: Callable[[str], object],
                 check_reason: Callable[[str], object] | None = None) -> None:
        super().__init__()
        self.body, self.current, self.check, self.check_reason = body, current, check, check_reason

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label("Set the budget cap", classes="modal-title")
            yield Static(self.body, classes="modal-body")
            with Horizontal(classes="modal-row"):
                yield Label("cap $ ", classes="field-label")
                yield Input(self.current, id="cap-amount", restrict=r"[0-9.$]*")
            yield Input(placeholder="reason (required)", id="cap-reason")
            yield Static("", id="cap-error", classes="error")
            with Horizontal(classes="modal-buttons"):
                yield Button("Set cap (enter)", id="ok", variant="warning")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cap-amount", Input).focus()

    def _submit(self) -> None:
        amount = self.query_one("#cap-amount", Input).value.strip()
        reason = self.query_one("#cap-reason", Input).value.strip()
        error = self.query_one("#cap-error", Static)
        try:
            self.check(amount)
        except DpoTuiError as exc:
            error.update(exc.message)
            self.query_one("#cap-amount", Input).focus()
            return
        try:
            if self.check_reason is not None:
                self.check_reason(reason)
            elif not reason:
                raise InputError("a reason is required (it is logged with your name)")
        except DpoTuiError as exc:
            error.update(exc.message)
            self.query_one("#cap-reason", Input).focus()
            return
        self.dismiss((amount, reason))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.prevent_default()  # not FormScreen's too (Textual runs every class's handler)
        if event.input.id == "cap-amount" and not self.query_one("#cap-reason", Input).value.strip():
            self.query_one("#cap-reason", Input).focus()
            return
        self._submit()


# priority: ahead of the scroll's own (hidden) keys, so the footer shows them and they work
# wherever the focus is
SCROLL_KEYS = [Binding("home", "scroll('home')", "Top", id="text.top", priority=True),
               Binding("end", "scroll('end')", "End", id="text.end", priority=True),
               Binding("pageup", "scroll('page_up')", "Page up", id="text.pageup", priority=True),
               Binding("pagedown", "scroll('page_down')", "Page down", id="text.pagedown", priority=True)]
KEYS_HINT = "Home/End top/end · PgUp/PgDn page · Esc close"


class TextScreen(ModalScreen[None]):
    """A read-only view of a long text (an event's payload): Home/End jump to the top or the
    end, PgUp/PgDn page, Escape (or q) closes; the keys are in its title and footer."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="text.close"), *SCROLL_KEYS]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal wide"):
            yield Label(f"{self.title_text}   [{KEYS_HINT}]", classes="modal-title", markup=False)
            with VerticalScroll(id="text-scroll"):
                yield from self.body_widgets()
            yield Footer(show_command_palette=False)

    def body_widgets(self) -> ComposeResult:
        yield Static(self.text, id="text-body", markup=False)

    def on_mount(self) -> None:
        self.query_one("#text-scroll", VerticalScroll).focus()

    def action_scroll(self, where: str) -> None:
        scroll = self.query_one("#text-scroll", VerticalScroll)
        {"home": scroll.scroll_home, "end": scroll.scroll_end, "page_up": scroll.scroll_page_up,
         "page_down": scroll.scroll_page_down}[where](animate=False)

    def action_close(self) -> None:
        self.dismiss(None)


FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def fenced(text: str) -> list[tuple[str, str | None]]:
    """`text` cut at its ``` fences: (prose, None) and (code, language) pieces in order (an
    unlabelled fence is taken as python: the campaign's programs are)."""
    out: list[tuple[str, str | None]] = []
    at = 0
    for m in FENCE.finditer(text):
        if text[at:m.start()].strip():
            out.append((text[at:m.start()].strip("\n"), None))
        out.append((m.group(2).rstrip("\n"), m.group(1) or "python"))
        at = m.end()
    if text[at:].strip():
        out.append((text[at:].strip("\n"), None))
    return out


class CodeBlock(Static):
    """A program, syntax-highlighted as `language` by Textual's highlighter."""

    def __init__(self, code: str, language: str) -> None:
        super().__init__(highlight(code, language=language), classes="conv-code")
        self.code, self.language = code, language


class ConversationScreen(TextScreen):
    """A rollout's conversation: each message under its heading, its fenced programs
    syntax-highlighted (Textual's highlighter), each candidate's test output apart."""

    def __init__(self, title: str, head: list[str], blocks: list[tuple[str, str, str]]) -> None:
        super().__init__(title, "\n".join(head))
        self.blocks = blocks

    def body_widgets(self) -> ComposeResult:
        yield Static(self.text, id="text-body", classes="conv-head", markup=False)
        for title, body, kind in self.blocks:
            yield Static(f"── {title}", classes=f"conv-title conv-{kind}", markup=False)
            if kind == "output":
                if body:
                    yield Static(body, classes="conv-output", markup=False)
                continue
            for piece, language in fenced(body):
                if language is None:
                    yield Static(piece, classes="conv-text", markup=False)
                else:
                    yield CodeBlock(piece, language)


class OverrideScreen(FormScreen["tuple[str, str] | None"]):
    """Override the gate: pick a decision other than the current one and write why;
    (decision, reason), None when cancelled. `check(reason)` is the service's rule for the
    reason; its error keeps the modal open."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="override.cancel")]

    def __init__(self, body: str, choices: list[str], *, check: Callable[[str], object]) -> None:
        super().__init__()
        self.body, self.choices, self.check = body, choices, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label("Override the gate?", classes="modal-title")
            yield Static(self.body, classes="modal-body", markup=False)
            with Horizontal(classes="modal-row"):
                yield Label("new decision ", classes="field-label")
                with RadioSet(id="override-decision", compact=True):
                    for i, choice in enumerate(self.choices):
                        yield RadioButton(choice, value=i == 0, id=f"override-{choice}", compact=True)
            yield Input(placeholder="why (required, logged with your name)", id="override-reason")
            yield Static("", id="override-error", classes="error")
            with Horizontal(classes="modal-buttons"):
                yield Button("Override (enter)", id="ok", variant="warning")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#override-decision", RadioSet).focus()

    def decision(self) -> str:
        pressed = self.query_one("#override-decision", RadioSet).pressed_button
        return pressed.id.removeprefix("override-") if pressed is not None and pressed.id else self.choices[0]

    def _submit(self) -> None:
        reason = self.query_one("#override-reason", Input).value.strip()
        try:
            self.check(reason)
        except DpoTuiError as exc:
            self.query_one("#override-error", Static).update(exc.message)
            self.query_one("#override-reason", Input).focus()
            return
        self.dismiss((self.decision(), reason))



class NewRunScreen(FormScreen["tuple[str, dict[str, str]] | None"]):
    """Name another training run and the hyperparameters it changes; (run id, {field: text}),
    None when cancelled. `check(run_id, fields)` is the session's validation (the plan's rules)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="newrun.cancel")]

    def __init__(self, body: str, run_id: str, fields: dict[str, str], *,
                 check: Callable[[str, dict[str, str]], object]) -> None:
        super().__init__()
        self.body, self.run_id, self.fields, self.check = body, run_id, fields, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label("A new training run", classes="modal-title")
            yield Static(self.body, classes="modal-body")
            with Horizontal(classes="modal-row"):
                yield Label("run id ", classes="field-label")
                yield Input(self.run_id, id="newrun-id")
            for key, value in self.fields.items():
                with Horizontal(classes="modal-row"):
                    yield Label(f"{key} ", classes="field-label")
                    yield Input(value, id=f"newrun-{key}", restrict=r"[0-9.eE-]*")
            yield Static("", id="newrun-error", classes="error")
            with Horizontal(classes="modal-buttons"):
                yield Button("Use this run (enter)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#newrun-id", Input).focus()

    def _submit(self) -> None:
        run_id = self.query_one("#newrun-id", Input).value.strip()
        raw = {key: self.query_one(f"#newrun-{key}", Input).value.strip() for key in self.fields}
        try:
            self.check(run_id, raw)
        except DpoTuiError as exc:
            self.query_one("#newrun-error", Static).update(exc.message)
            return
        self.dismiss((run_id, raw))
