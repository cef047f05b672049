"""Run upstream QuixBugs pytest (the reference) and map its per-test outcomes to ours.

Upstream pytest is run in a scratch copy of the checkout (it writes caches), from the
copy's root with the `python_testcases` target and the default `prepend` import mode, as
the benchmark README prescribes, with pytest-timeout and a JUnit XML report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import SHARED

QUIXBUGS = Path(os.environ.get("DPO_TUI_QUIXBUGS", SHARED / "benchmarks" / "quixbugs"))
HUMANEVALFIX = Path(os.environ.get("DPO_TUI_HUMANEVALFIX", SHARED / "benchmarks" / "humanevalfix"))

_PARAM = re.compile(r"\[input_data(\d+)-.*\]$", re.S)


def scratch_copy(root: Path, dest: Path) -> Path:
    target = dest / "quixbugs"
    shutil.copytree(root, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


def run_upstream(tasks: list[str] | None, *, correct: bool, timeout: float = 3.0,
                 root: Path = QUIXBUGS) -> tuple[dict[tuple[str, str], str], float]:
    """{(task, test name in our naming): passed|failed|hang|skipped}, and pytest's wall time."""
    import time

    with tempfile.TemporaryDirectory(prefix="quixbugs-upstream-") as tmp:
        copy = scratch_copy(root, Path(tmp))
        targets = [f"python_testcases/test_{t}.py" for t in tasks] if tasks else ["python_testcases"]
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--timeout={timeout:g}",
               f"--junitxml={report}", "-o", "junit_family=xunit1", *targets]
        if correct:
            cmd.insert(4, "--correct")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        started = time.monotonic()
        subprocess.run(cmd, cwd=copy, env=env, capture_output=True, timeout=900)
        elapsed = time.monotonic() - started
        return parse_junit(report), elapsed


def parse_junit(path: Path) -> dict[tuple[str, str], str]:
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        task = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
        name = _PARAM.sub(lambda m: f"[{m.group(1)}]", case.get("name", ""))
        failure = case.find("failure")
        if case.find("skipped") is not None:
            outcome = "skipped"
        elif failure is not None:
            text = (failure.get("message") or "") + (failure.text or "")
            outcome = "hang" if "Timeout" in text else "failed"
        elif case.find("error") is not None:
            outcome = "failed"
        else:
            outcome = "passed"
        outcomes[(task, name)] = outcome
    return outcomes


def ours_as_upstream(verdict: str) -> str:
    return {"pass": "passed", "skip": "skipped", "timeout": "hang"}.get(verdict, "failed")
