"""The `dpo-tui` command line.

Each command group lives in its own module exposing `register(subparsers)`; this file
only assembles them and turns errors into one line on stderr and an exit code
(see dpo_tui.errors for the table). Headless output is data on stdout, diagnostics on
stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dpo_tui import __version__
from dpo_tui.errors import EXIT_USAGE, DpoTuiError

# Modules that add subcommands, in the order they appear in --help. A module listed here
# must define `register(subparsers: argparse._SubParsersAction) -> None`, and each parser it
# adds must set a `func(args) -> int` default.
COMMAND_MODULES: tuple[str, ...] = (
    "dpo_tui.events.commands",
    "dpo_tui.campaign.cli",
    "dpo_tui.campaign.opcli",
    "dpo_tui.campaign.twins",
    "dpo_tui.tasks.cli",
    "dpo_tui.provider.cli",
    "dpo_tui.sim.cli",
    "dpo_tui.tui.cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as documented
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dpo-tui",
        description="Run a DPO fine-tuning campaign on Together AI end to end, "
        "with every call and decision in a replayable SQLite event log.",
        epilog="Exit codes: 0 ok, 1 check failed, 2 usage or input error, 3 budget cap reached, "
        "4 waiting for an operator decision, 5 a stage failed, 6 rollback (with --fail-on-rollback).",
    )
    parser.add_argument("--version", action="version", version=f"dpo-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        no_args = not (sys.argv[1:] if argv is None else list(argv))
        if no_args and sys.stdin.isatty() and sys.stdout.isatty():
            # `dpo-tui` alone in a terminal: the console on the campaign here, or its start screen
            from dpo_tui.tui.cli import default_console as func_default

            func = lambda _args: func_default()  # noqa: E731
        else:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except DpoTuiError as exc:
        sys.stderr.write(f"dpo-tui: error: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("dpo-tui: interrupted\n")
        return 130
    except BrokenPipeError:  # `dpo-tui events --jsonl | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
