"""`dpo-tui tui` and the no-argument `dpo-tui`: the operator console in a terminal."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from dpo_tui.errors import EXIT_OK, EXIT_USAGE, InputError


def _need_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError("the console needs a terminal (stdin and stdout a TTY); for scripts use "
                         "`dpo-tui run --headless`, `dpo-tui replay` or `dpo-tui events`")


def console_app(path: Path, *, plan: str | None = None, readonly: bool = False, actor: str | None = None):
    """The console as `dpo-tui tui` opens it: a shell painted first, the Session opened behind
    it (the writer's lock, when writing, is the caller's to hold)."""
    from dpo_tui.events.commands import operator_actor
    from dpo_tui.tui.app import DpoApp

    actor = actor or operator_actor(None)

    def open_session():  # noqa: ANN202 - a Session (imported here: off the shell's path)
        from dpo_tui.tui.session import Session

        return Session(path, plan_path=plan, readonly=readonly, actor=actor)

    return DpoApp(opener=open_session)


def close_console(app) -> None:  # noqa: ANN001 - DpoApp
    """After the app exits: close the session it opened (waiting for an open still under way,
    and for a stage the exit stopped to finish its calls in flight); an error opening it is
    raised here, as the CLI reports it."""
    session = app.wait_opened()
    if not app.stages_idle.wait(2):  # the exit stopped a stage: its calls in flight finish first
        print("dpo-tui: stopping the running stage (calls in flight finish, endpoints are stopped)...",
              file=sys.stderr, flush=True)
        app.stages_idle.wait()
    if session is not None:
        session.close()


def run_tui(db: str | Path, *, plan: str | None = None, readonly: bool = False) -> int:
    """Open the console on one campaign; the writer's lock is held while it runs (not with --readonly)."""
    from dpo_tui.campaign.lock import campaign_lock

    path = Path(db).expanduser().resolve()
    lock = contextlib.nullcontext() if readonly else campaign_lock(path)
    with lock:
        app = console_app(path, plan=plan, readonly=readonly)
        try:
            app.run()
        finally:
            close_console(app)
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    _need_terminal()
    return run_tui(args.db, plan=args.plan, readonly=args.readonly)


def default_console(cwd: Path | None = None) -> int:
    """`dpo-tui` with no arguments in a terminal: the campaign in this folder, or the start screen."""
    from dpo_tui.tui.start import StartApp, find_campaigns

    cwd = cwd or Path.cwd()
    found = find_campaigns(cwd)
    if len(found) == 1:
        return run_tui(found[0])
    chosen = StartApp(cwd, found).run()
    if chosen:
        return run_tui(chosen)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="the operator console (full-screen)",
                       description="Open a campaign in the full-screen console: keys 1-7 switch stages (Budget, "
                       "Split, Rollouts, Pairs, Train, Eval, Log), ctrl+p lists every action, q quits. "
                       "`dpo-tui` with no arguments opens the campaign in the current folder.")
    p.add_argument("--db", required=True, help="campaign file")
    p.add_argument("--plan", help="plan file (default: the plan the campaign recorded)")
    p.add_argument("--readonly", action="store_true",
                   help="browse and follow (also a campaign a headless run is writing); every action disabled")
    p.set_defaults(func=cmd_tui)


__all__ = ["EXIT_USAGE", "close_console", "cmd_tui", "console_app", "default_console", "register", "run_tui"]
