"""What a failing test's message keeps for the model, from real bwrap runs: a deep
RecursionError's innermost frames (the harness formats only the last ones) and both sides
of every failing assert."""

from __future__ import annotations

import pytest

from dpo_tui.tasks.sandbox import Limits, bwrap_available, run_tests
from dpo_tui.tasks.suites import task_from_code

LIMITS = Limits(test_cpu_seconds=2.0)


@pytest.fixture(autouse=True)
def _bwrap():
    assert bwrap_available(), "bubblewrap (bwrap) must be installed: apt-get install bubblewrap"


def test_a_recursion_error_shows_the_innermost_program_frames_and_no_harness_frame():
    program = "def f(n):\n    if n < 0:\n        return g(n)\n    return f(n + 1)\n\ndef g(n):\n    return n\n"
    task = task_from_code("deep", program, "def test_f():\n    assert f(0) == 1\n")
    [v] = run_tests(task, program, limits=LIMITS).verdicts
    assert v.verdict == "error"
    assert v.message.endswith("RecursionError: maximum recursion depth exceeded")
    assert 'File "program.py", line 4, in f' in v.message and "return f(n + 1)" in v.message
    assert "Previous line repeated" in v.message and "harness.py" not in v.message
    assert 'File "tests.py"' not in v.message  # the outermost frames are cut: only the last 8 shown


def test_a_shallow_failure_keeps_every_frame_from_the_test_down():
    program = "def f():\n    return g()\n\ndef g():\n    raise KeyError('k')\n"
    task = task_from_code("shallow", program, "def test_f():\n    assert f() == 1\n")
    [v] = run_tests(task, program, limits=LIMITS).verdicts
    assert v.verdict == "error" and v.message.endswith("KeyError: 'k'")
    lines = [ln.strip() for ln in v.message.splitlines() if ln.strip().startswith("File ")]
    assert [ln.split(", in ")[-1] for ln in lines] == ["test_f", "f", "g"] and "harness.py" not in v.message


def test_every_failing_assert_reports_both_sides_and_its_line():
    tests = "".join(f"def test_{i}():\n    assert f() == {i}\n\n" for i in range(2, 5))
    task = task_from_code("sides", "def f():\n    return 1\n", tests)
    report = run_tests(task, task.buggy_program, limits=LIMITS)
    assert [v.verdict for v in report.verdicts] == ["fail"] * 3
    for i, v in zip(range(2, 5), report.verdicts):
        assert f"assert f() == {i}" in v.message and f"left side: 1\nright side: {i}" in v.message
