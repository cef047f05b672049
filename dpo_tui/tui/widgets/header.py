"""The campaign header: name, backend (`simulated` said plainly), spend against the cap,
and each stage's state."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


SHORT = {"rollouts": "roll", "calibrated": "cal", "estimated": "est", "exported": "exp", "proposed": "prop",
         "completed": "done", "inconclusive": "inconcl"}
GOOD = {"frozen", "exported", "calibrated", "ship", "completed"}


class CampaignHeader(Static):
    DEFAULT_CSS = """
    CampaignHeader { height: 2; background: $panel; color: $text; padding: 0 1; }
    """

    def show(self, *, name: str, backend: str, spend: float, cap: float | None, stages: dict[str, str],
             readonly: bool, working: str | None, overridden: bool = False) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"[{backend}]", style="bold black on yellow" if backend == "simulated" else "bold")
        if readonly:
            t.append(" [read-only]", style="bold cyan")
        if working:
            t.append(f" [{working}]", style="bold green")
        if overridden:  # the decision in force is the operator's: said where it cannot be missed
            t.append(" [gate overridden]", style="bold magenta")
        cap_s = f"${cap:.2f}" if cap is not None else "no cap"
        over = cap is not None and spend > 0.9 * cap
        t.append(f" ${spend:.3f}/{cap_s} cap", style="bold red" if over else "bold")
        t.append("  ")
        room = max(10, (self.size.width or 80) - 2 - t.cell_len)
        t.append(name if len(name) <= room else name[: room - 1] + "…", style="bold")
        t.append("\n")
        for i, (stage, state) in enumerate(stages.items()):  # a line of its own: fits 80 columns
            t.append(f"{' ' if i else ''}{SHORT.get(stage, stage)}:", style="dim")
            t.append(SHORT.get(state, state), style="bold green" if state in GOOD else "")
        if t.plain != getattr(self, "_last_plain", None):  # every update is a repaint
            self._last_plain = t.plain
            self.update(t, layout=False)  # two fixed lines: no layout pass
