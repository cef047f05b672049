"""Per-test CPU limits calibrated on a suite's reference (fixed) program.

A buggy candidate's hang costs its whole CPU limit, so limits should be tight; a slow but
finishing test must not be cut short, so they cannot be blind. The rule: a test's limit is
max(base, factor x the reference program's CPU time on that test + slack).

`run_tests_calibrated` runs a candidate with the base limit first and consults the
reference only for tests that timed out (calibrating the task once per process, cached),
re-running those whose calibrated limit is higher. Most candidates never time out, so
they never pay for a calibration.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable

from dpo_tui.tasks.model import Task
from dpo_tui.tasks.sandbox import Limits, Sandbox, TestReport, build_report, run_tests

_calibrations: dict[tuple, tuple[Limits, TestReport]] = {}
_calibrations_lock = threading.Lock()


def calibrate_with_report(task: Task, *, base: Limits | None = None, sandbox: Sandbox | None = None,
                          factor: float = 5.0, slack: float = 0.0, probe_cpu: float = 10.0,
                          cache: bool = True) -> tuple[Limits, TestReport | None]:
    """Per-test CPU limits from the reference (fixed) program's measured CPU time:
    max(base limit, factor x reference + slack), with the reference run's report. Tests the
    reference does not pass keep the base limit; without a fixed program, `base` is kept.
    Results are cached per process by (task content, fixed program, base limits, rule)."""
    base = base or Limits()
    if task.fixed_program is None:
        return base, None
    key = (task.content_hash, task.fixed_program, base, factor, slack, probe_cpu, sandbox)
    with _calibrations_lock:
        if cache and key in _calibrations:
            return _calibrations[key]
    probe = replace(base, test_cpu_seconds=probe_cpu, test_wall_seconds=None, per_test_cpu=())
    report = run_tests(task, task.fixed_program, limits=probe, sandbox=sandbox)
    per_test = tuple((v.name, round(factor * v.cpu_seconds + slack, 3)) for v in report.verdicts
                     if v.verdict == "pass" and factor * v.cpu_seconds + slack > base.test_cpu_seconds)
    result = replace(base, per_test_cpu=per_test), report
    with _calibrations_lock:
        _calibrations[key] = result
    return result


def clear_calibrations() -> None:
    with _calibrations_lock:
        _calibrations.clear()


def calibrate(task: Task, **kwargs) -> Limits:
    return calibrate_with_report(task, **kwargs)[0]


def run_tests_calibrated(task: Task, program: str, *, base: Limits | None = None,
                         sandbox: Sandbox | None = None, calibrated: Limits | None = None,
                         on_calibrated: Callable[[Limits], None] | None = None) -> TestReport:
    """`run_tests` with the base limit; timed-out tests are re-run with their calibrated
    limit where the reference program needs more CPU than the base allows. `calibrated`
    (e.g. the limits a campaign's log holds) is used instead of calibrating; a calibration
    made here is passed to `on_calibrated` (for the log)."""
    base = base or Limits()
    started = time.monotonic()
    report = run_tests(task, program, limits=base, sandbox=sandbox)
    timed_out = {v.name for v in report.verdicts if v.verdict == "timeout"}
    if not timed_out or task.fixed_program is None or report.error:
        return report
    if calibrated is not None:
        limits = calibrated
    else:
        limits, _ = calibrate_with_report(task, base=base, sandbox=sandbox)
        if on_calibrated is not None:
            on_calibrated(limits)
    raised = {name for name, cpu in limits.per_test_cpu if name in timed_out and cpu > base.test_cpu_seconds}
    if not raised:
        return report
    subset = replace(task, tests=replace(task.tests, cases=tuple(c for c in task.tests.cases if c.name in raised)))
    rerun = run_tests(subset, program, limits=limits, sandbox=sandbox)
    again = {v.name: v for v in rerun.verdicts}
    verdicts = [again.get(v.name, v) for v in report.verdicts]
    return build_report(verdicts, limits, sandboxed=report.sandboxed, seconds=time.monotonic() - started,
                        cpu_seconds=report.cpu_seconds + rerun.cpu_seconds)
