"""The same refusal in two vocabularies: the command line's names commands and flags, the
console's names its keys. A front end picks with `console_text`."""

from __future__ import annotations

from dpo_tui.campaign.cap import refusal
from dpo_tui.errors import BudgetCapReached, InputError


def test_the_cap_refusal_names_the_command_for_the_cli_and_the_key_for_the_console():
    cli = refusal("eval", "the eval", 1.25, 0.5, 5.0)
    console = refusal("eval", "the eval", 1.25, 0.5, 5.0, console=True)
    assert "dpo-tui cap --db" in cli and "--usd" in cli
    assert "c on Budget" in console and "dpo-tui" not in console and "--" not in console
    assert cli.split("(")[0] == console.split("(")[0]  # the same fact: what, estimate, what remains


def test_console_text_falls_back_to_the_message():
    assert InputError("plain").console_text == "plain"
    exc = BudgetCapReached("for the shell", console="for the console")
    assert (exc.message, exc.console_text) == ("for the shell", "for the console")
