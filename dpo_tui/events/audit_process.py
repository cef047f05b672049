"""`dpo-tui audit --json` in a process of its own, for the console: a million-event audit is
tens of seconds of Python, which in the console's own process would share one interpreter
lock with the screen and the fold catching up. The child reads the log through its own
read-only connection, with the same audit key (the environment is inherited)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dpo_tui.errors import EXIT_CHECK_FAILED, EXIT_OK


class AuditNotRun(Exception):
    """The child could not audit (an unreadable file, a crash): its own words."""


def audit_in_child(db: str | Path, *, cancelled: Callable[[], bool] = lambda: False,
                   poll_s: float = 0.2) -> dict | None:
    """The audit report's JSON (`AuditReport.to_json`), or None when `cancelled` said stop
    first (the child is killed). Raises AuditNotRun when the child did not report."""
    cmd = [sys.executable, "-m", "dpo_tui", "audit", "--db", str(db), "--json"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while True:
            try:
                out, err = proc.communicate(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                if cancelled():
                    proc.kill()
                    proc.communicate()
                    return None
    if proc.returncode not in (EXIT_OK, EXIT_CHECK_FAILED):
        last = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise AuditNotRun(last)
    try:
        report = json.loads(out)
    except ValueError:
        raise AuditNotRun(f"the audit printed no report (exit status {proc.returncode})") from None
    if not isinstance(report, dict) or "ok" not in report:
        raise AuditNotRun("the audit's report is not an object with 'ok'")
    return report
