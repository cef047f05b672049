"""`dpo-tui tasks list` and `dpo-tui tasks check`: look at a suite, and check that its
buggy programs fail and its fixed programs pass under the sandboxed runner."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from dpo_tui.errors import EXIT_CHECK_FAILED, EXIT_OK, InputError

# The suites, the sandbox and the calibration are imported inside the commands: `dpo-tui
# --help` and argument errors start on the standard library (tests/test_cli_start.py).
if TYPE_CHECKING:
    from dpo_tui.tasks.model import Task
    from dpo_tui.tasks.sandbox import Limits, Sandbox, TestReport


def register(subparsers: argparse._SubParsersAction) -> None:
    tasks = subparsers.add_parser("tasks", help="list and check task suites")
    sub = tasks.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND")
    tasks.set_defaults(func=lambda args: (tasks.print_help(sys.stderr), 2)[1])

    lst = sub.add_parser("list", help="list a suite's tasks")
    lst.add_argument("--suite", required=True, metavar="SPEC",
                     help="quixbugs:PATH, humanevalfix:PATH, jsonl:PATH or fixtures")
    lst.add_argument("--json", action="store_true", help="print JSON on stdout")
    lst.set_defaults(func=cmd_list)

    chk = sub.add_parser("check", help="run each task's tests on its buggy or fixed program")
    chk.add_argument("--suite", required=True, metavar="SPEC")
    chk.add_argument("--variant", required=True, choices=("buggy", "fixed"))
    chk.add_argument("--json", action="store_true", help="print JSON on stdout")
    chk.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                     help="tasks checked in parallel (default: the number of cores)")
    chk.add_argument("--cpu-limit", type=float, default=0.25, metavar="S",
                     help="CPU seconds per test; raised per test from the fixed program's time (default 0.25)")
    chk.add_argument("--unsandboxed", action="store_true",
                     help="run without bubblewrap (only resource limits apply)")
    chk.set_defaults(func=cmd_check)


def cmd_list(args: argparse.Namespace) -> int:
    from dpo_tui.tasks.suites import load_suite

    tasks = load_suite(args.suite)
    rows = [{"id": t.id, "suite": t.suite, "name": t.name, "tests": len(t.tests.cases),
             "has_fixed": t.fixed_program is not None, "content_hash": t.content_hash} for t in tasks]
    if args.json:
        json.dump({"suite": args.suite, "tasks": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        sys.stdout.write(f"{r['id']:<{width}}  {r['tests']:>3} tests  {r['content_hash'][:12]}\n")
    sys.stdout.write(f"{len(rows)} tasks\n")
    return EXIT_OK


def check_task(task: Task, variant: str, base: Limits, sandbox: Sandbox) -> TestReport:
    """Run one task's variant. The fixed variant is the calibration run (generous limits);
    the buggy one runs with the base limit, timeouts re-checked against the calibration."""
    from dpo_tui.tasks.calibrate import calibrate_with_report, run_tests_calibrated

    if variant == "fixed":
        if task.fixed_program is None:
            raise InputError(f"task {task.id} has no fixed program")
        return calibrate_with_report(task, base=base, sandbox=sandbox)[1]
    return run_tests_calibrated(task, task.buggy_program, base=base, sandbox=sandbox)


def cmd_check(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    if args.cpu_limit <= 0:
        raise InputError("--cpu-limit must be positive")
    from concurrent.futures import ThreadPoolExecutor

    from dpo_tui.tasks.sandbox import Limits, Sandbox
    from dpo_tui.tasks.suites import load_suite

    tasks = load_suite(args.suite)
    sandbox = Sandbox(allow_unsandboxed=args.unsandboxed)
    base = Limits(test_cpu_seconds=args.cpu_limit)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        reports = list(pool.map(lambda t: check_task(t, args.variant, base, sandbox), tasks))
    elapsed = time.monotonic() - started
    expected = args.variant == "fixed"
    unexpected = [t.id for t, r in zip(tasks, reports) if r.passed != expected]
    if args.json:
        doc = {"suite": args.suite, "variant": args.variant, "seconds": round(elapsed, 3),
               "sandboxed": all(r.sandboxed for r in reports),
               **({"note": reports[0].note} if reports[0].note else {}),
               "tasks": [_task_json(t, r) for t, r in zip(tasks, reports)]}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_table(tasks, reports)
        passed = sum(r.passed for r in reports)
        sys.stdout.write(f"{passed}/{len(tasks)} tasks pass ({args.variant}) in {elapsed:.1f} s"
                         f"{'' if reports[0].sandboxed else ' -- ' + reports[0].note}\n")
    if unexpected:
        sys.stderr.write(f"dpo-tui: {len(unexpected)} task(s) did not {'pass' if expected else 'fail'} "
                         f"as the {args.variant} variant should: {', '.join(unexpected[:10])}\n")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _task_json(task: Task, report: TestReport) -> dict:
    return {"id": task.id, "passed": report.passed, "tests": report.tests,
            "tests_passed": report.tests_passed, "seconds": report.seconds,
            "verdicts": [{"name": v.name, "verdict": v.verdict, "seconds": v.seconds,
                          "cpu_seconds": v.cpu_seconds, "message": v.message[:500]}
                         for v in report.verdicts],
            **({"error": report.error} if report.error else {})}


def _print_table(tasks: list[Task], reports: list[TestReport]) -> None:
    width = max(len(t.id) for t in tasks)
    for task, r in zip(tasks, reports):
        counts: dict[str, int] = {}
        for v in r.verdicts:
            counts[v.verdict] = counts.get(v.verdict, 0) + 1
        detail = " ".join(f"{k}={n}" for k, n in sorted(counts.items()))
        sys.stdout.write(f"{'PASS' if r.passed else 'FAIL'}  {task.id:<{width}}  "
                         f"{r.tests_passed:>3}/{r.tests:<3} {r.seconds:6.2f}s  {detail}\n")
