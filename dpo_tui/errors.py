"""Errors that reach the operator as one line and a documented exit code.

Exit codes (documented in the README):
  0  ok
  1  a check failed (audit found a problem, a tampered or corrupt log)
  2  usage or input error (bad arguments, bad plan, not a campaign file, locked database)
  3  budget cap reached
  4  waiting for an operator decision (or stopped by the operator; a rerun resumes)
  5  a stage failed
  6  the eval gate decided rollback (only with --fail-on-rollback)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET_CAP = 3
EXIT_WAITING = 4
EXIT_STAGE_FAILED = 5
EXIT_ROLLBACK = 6


class DpoTuiError(Exception):
    """An error with a one-line message for the operator and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None, console: str | None = None) -> None:
        super().__init__(message)
        self.console = console  # the same fact in the console's words (its keys, not commands and flags)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def console_text(self) -> str:
        """What the console says: its own words where the error has them, else the message."""
        return self.console or self.message

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputError(DpoTuiError):
    """Bad input from the operator: arguments, plan file, a path that is not a campaign."""

    exit_code = EXIT_USAGE


class StoreError(DpoTuiError):
    """The campaign database cannot be used as asked (not SQLite, newer schema, locked...)."""

    exit_code = EXIT_USAGE


class IntegrityError(DpoTuiError):
    """The log does not verify: a broken hash chain, a gap in seq, a tampered payload."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, *, seq: int | None = None, rule: str = "") -> None:
        super().__init__(message)
        self.seq = seq
        self.rule = rule


class BudgetCapReached(DpoTuiError):
    """A call would cross the campaign's budget cap; nothing was spent on it."""

    exit_code = EXIT_BUDGET_CAP


class Stopped(DpoTuiError):
    """An operator stopped a stage (cancelled rollouts, stopped following a training job):
    not a failure; what finished is in the log and the next run resumes the rest."""

    exit_code = EXIT_WAITING


class BackendUnavailable(DpoTuiError):
    """The backend cannot be reached or refuses the API key (the preflight before a stage, or
    the circuit breaker inside one): the stage stops, nothing is marked finished, a rerun resumes."""

    exit_code = EXIT_STAGE_FAILED
