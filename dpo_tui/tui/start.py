"""The start screen of `dpo-tui` with no arguments, when the folder has no single campaign."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, OptionList, Static

from dpo_tui.events.store import SQLITE_HEADER


def find_campaigns(folder: Path) -> list[Path]:
    """`*.db` files here that are SQLite files (the console says plainly if one is not a campaign)."""
    out = []
    for p in sorted(folder.glob("*.db")):
        try:
            with open(p, "rb") as fh:
                if fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                    out.append(p)
        except OSError:
            continue
    return out


class StartApp(App[str | None]):
    TITLE = "dpo-tui"
    BINDINGS = [Binding("q,escape", "quit_start", "Quit", id="start.quit")]
    CSS = "Static { padding: 1 2; } OptionList { height: auto; max-height: 12; margin: 0 2; }"

    def __init__(self, folder: Path, found: list[Path]) -> None:
        super().__init__()
        self.folder, self.found = folder, found

    def compose(self) -> ComposeResult:
        if self.found:
            yield Static(f"dpo-tui: {len(self.found)} campaign files in {self.folder}. Pick one (enter), or q.")
            yield OptionList(*[p.name for p in self.found], id="campaigns")
        else:
            yield Static(
                f"dpo-tui: no campaign (*.db) in {self.folder}.\n\n"
                "Start one:\n"
                "  dpo-tui demo --db demo.db          the offline demo on the embedded simulator (~30 s)\n"
                "  dpo-tui run --plan PLAN.toml --db campaign.db   a campaign from your plan, headless\n"
                "  dpo-tui init --db campaign.db --name NAME       an empty campaign\n\n"
                "Then: dpo-tui tui --db demo.db   (or just `dpo-tui` in that folder). q quits.")
        yield Footer()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.exit(str(self.found[event.option_index]))

    def action_quit_start(self) -> None:
        self.exit(None)
