"""A sandboxed run reports its CPU (issue 20, point 3: CPU per rollout), measured inside the
sandbox by the harness: its own and every test child's it waited for. Outside, getrusage
cannot see it (bwrap's pid namespace reaps the tests), so the figure comes with the report."""

from __future__ import annotations

import os
import resource
import subprocess

from dpo_tui.tasks.sandbox import Limits, Sandbox, _cpu_seconds, bwrap_command, run_tests
from dpo_tui.tasks.suites import task_from_code

BURN = "def f():\n    x = 0\n    for i in range(3_000_000):\n        x += i\n    return 1\n"
TESTS = "def test_a():\n    assert f() == 1\n\ndef test_b():\n    assert f() == 1\n"


def test_a_run_reports_its_tests_cpu_and_its_own_start():
    task = task_from_code("burn", BURN, TESTS)
    report = run_tests(task, BURN, limits=Limits(test_cpu_seconds=5))
    assert report.sandboxed and report.passed
    tests_cpu = sum(v.cpu_seconds for v in report.verdicts)
    assert tests_cpu > 0.1  # two tests of ~3M additions each
    assert report.cpu_seconds > tests_cpu  # the tests and the harness's own start and loading
    quick = task_from_code("quick", "def f():\n    return 1\n", TESTS)
    light = run_tests(quick, quick.buggy_program, limits=Limits(test_cpu_seconds=5))
    assert 0 < light.cpu_seconds < report.cpu_seconds


def test_outside_the_sandbox_getrusage_does_not_see_it(tmp_path):
    """Why the harness measures: the host's RUSAGE_CHILDREN gets (almost) none of a burn run
    under the same bwrap command."""
    head = bwrap_command(Sandbox().resolve(), Sandbox().python, tmp_path, as_root=os.geteuid() == 0)
    head = head[:head.index(Sandbox().python)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*head, Sandbox().python, "-S", "-c", "x = 0\nfor i in range(3_000_000): x += i"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) < 0.05


def test_a_reported_figure_that_is_not_a_number_reads_as_unknown():
    for bad in (None, "1.0", -1, float("nan"), float("inf"), True, [1]):
        assert _cpu_seconds(bad) == 0.0
    assert _cpu_seconds(0.25) == 0.25 and _cpu_seconds(2) == 2.0
