"""The runner is safe from many threads and from a process pool at once: same verdicts."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from dpo_tui.tasks.sandbox import Limits, bwrap_available, run_tests
from dpo_tui.tasks.suites import load_suite

LIMITS = Limits(test_cpu_seconds=0.25)


def verdicts(args) -> list[tuple[str, str]]:
    task, program = args
    return [(v.name, v.verdict) for v in run_tests(task, program, limits=LIMITS).verdicts]


def test_threads_and_processes_agree_with_serial_runs():
    assert bwrap_available(), "bubblewrap (bwrap) must be installed"
    tasks = load_suite("fixtures")[8:]  # ten tasks, collatz_steps (a hang) among them
    jobs = [(t, t.buggy_program) for t in tasks] + [(t, t.fixed_program) for t in tasks[:4]]
    serial = [verdicts(j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(verdicts, jobs))
    with ProcessPoolExecutor(2) as pool:
        processes = list(pool.map(verdicts, jobs))
    assert threaded == serial and processes == serial
    assert any(v == "timeout" for row in serial for _, v in row)  # collatz hangs, in every mode
