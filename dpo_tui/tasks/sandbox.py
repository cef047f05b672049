"""Run a task's tests on a candidate program: one sandboxed subprocess per candidate.

`run_tests(task, program)` starts the lean harness (harness.py, no pytest) under
bubblewrap: its own network, PID, IPC and UTS namespaces (no network at all, not even the
host's loopback), a read-only view of /usr (with the /bin, /lib* links), /etc/ld.so.cache,
the Python installation and the harness file only, a fresh writable temporary directory as
cwd, HOME and TMPDIR (/sandbox inside) and nothing else writable, an empty environment
apart from PATH/HOME/TMPDIR/LANG (no API keys), and `--die-with-parent`. Run as root,
bwrap keeps CAP_SETUID/CAP_SETGID only so that the harness can switch to a fresh
unprivileged uid before anything else, which makes the process-count limit (RLIMIT_NPROC)
count this sandbox alone; as another user it unshares a user namespace instead.
The harness applies RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE and per-test
CPU limits, caps each test's output, and kills each test's process group; the whole
sandbox runs in its own session, killed at the end, with a wall-clock backstop.

Without bwrap on PATH the runner refuses to run unless `allow_unsandboxed=True`; then
the same harness runs directly, and the report says only resource limits applied.
Safe to call from many threads or processes at once (no shared state, no preexec_fn).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dpo_tui.errors import DpoTuiError
from dpo_tui.tasks.model import Task

HARNESS_PATH = Path(__file__).with_name("harness.py")
VERDICTS = ("pass", "fail", "error", "timeout", "crash", "skip")
UNSANDBOXED_NOTE = "NOT SANDBOXED (bubblewrap unavailable, run with explicit opt-in): only resource limits applied"
_SANDBOX_HARNESS = "/opt/dpo-tui/harness.py"
_SANDBOX_WORK = "/sandbox"


class SandboxUnavailable(DpoTuiError):
    """bwrap is missing and the caller did not opt in to unsandboxed runs."""


@dataclass(frozen=True)
class Limits:
    test_cpu_seconds: float = 2.0      # CPU time per test (ITIMER_PROF, RLIMIT_CPU behind it)
    test_wall_seconds: float | None = None  # wall-clock backstop per test; default 10 x CPU + 2
    memory_mb: int = 1024              # RLIMIT_AS of every process in the sandbox
    processes: int = 32                # RLIMIT_NPROC (per sandbox when run as root)
    file_mb: int = 16                  # RLIMIT_FSIZE
    open_files: int = 64               # RLIMIT_NOFILE
    output_bytes: int = 1_000_000      # a test printing more is killed (crash verdict)
    feedback_chars: int = 4000         # TestReport.output, for the next prompt
    per_test_cpu: tuple[tuple[str, float], ...] = ()  # calibrated CPU limits by test name

    def wall(self, cpu: float | None = None) -> float:
        if cpu is None and self.test_wall_seconds:
            return self.test_wall_seconds
        return 10 * (cpu if cpu is not None else self.test_cpu_seconds) + 2

    def total_wall(self, names: list[str]) -> float:
        per_test = dict(self.per_test_cpu)
        return sum(self.wall(per_test[n]) if n in per_test else self.wall() for n in names)

    def payload(self, nproc_base: int = 0) -> dict:
        return {"test_cpu": self.test_cpu_seconds, "test_wall": self.wall(),
                "memory_bytes": self.memory_mb << 20, "file_bytes": self.file_mb << 20,
                "nproc": nproc_base + self.processes, "nofile": self.open_files,
                "output_bytes": self.output_bytes,
                "per_test": {name: [cpu, self.wall(cpu)] for name, cpu in self.per_test_cpu}}


@dataclass(frozen=True)
class TestVerdict:
    __test__ = False

    name: str
    verdict: str
    message: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    output: str = ""


@dataclass(frozen=True)
class TestReport:
    __test__ = False

    passed: bool
    tests: int                 # tests that ran (skips excluded)
    tests_passed: int
    verdicts: list[TestVerdict]
    output: str                # failing tests' messages and output, truncated, for the prompt
    seconds: float
    sandboxed: bool
    note: str = ""
    error: str = ""            # the harness did not report (crashed, or a candidate killed it): all crash
    cpu_seconds: float = 0.0   # the harness's CPU and its tests' (bwrap's own not included); 0 when unknown

    def to_dict(self) -> dict:
        return {**asdict(self), "verdicts": [asdict(v) for v in self.verdicts]}

    @property
    def score(self) -> float:
        return self.tests_passed / self.tests if self.tests else 0.0


@dataclass(frozen=True)
class Sandbox:
    """How candidates are isolated. `bwrap=None` means look it up on PATH."""

    bwrap: str | None = None
    allow_unsandboxed: bool = False
    python: str = field(default_factory=lambda: os.path.realpath(getattr(sys, "_base_executable", sys.executable)))

    def resolve(self) -> str | None:
        return self.bwrap or shutil.which("bwrap")


def bwrap_available(sandbox: Sandbox | None = None) -> bool:
    return (sandbox or Sandbox()).resolve() is not None


def _python_prefix(python: str) -> Path:
    exe = Path(python)
    return exe.parent.parent if exe.parent.name == "bin" else exe.parent


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def bwrap_command(bwrap: str, python: str, work: Path, *, as_root: bool,
                  script: Path = HARNESS_PATH) -> list[str]:
    prefix = _python_prefix(python)
    args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    args += ["--cap-add", "CAP_SETUID,CAP_SETGID"] if as_root else ["--unshare-user"]
    args += _system_binds()
    if not str(prefix).startswith("/usr/"):
        for parent in reversed(prefix.parents[:-1]):  # parents of e.g. /root/.pyenv/...: 0755
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(prefix), str(prefix)]
    args += ["--ro-bind", str(script), _SANDBOX_HARNESS, "--proc", "/proc", "--dev", "/dev",
             "--bind", str(work), _SANDBOX_WORK, "--chdir", _SANDBOX_WORK, "--clearenv"]
    for key, value in _child_env(_SANDBOX_WORK).items():
        args += ["--setenv", key, value]
    return args + [python, "-s", "-S", "-B", _SANDBOX_HARNESS]


def _child_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _own_process_count() -> int:
    """Tasks (threads count against RLIMIT_NPROC) the current uid runs now: the base the
    sandbox's process limit is added to when it cannot switch to a uid of its own (non-root;
    concurrent sandboxes then share that headroom)."""
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


NO_BWRAP_ADVICE = ("install the bubblewrap package; only `dpo-tui tasks check` can run without it, "
                   "with --unsandboxed")


def run_tests(task: Task, program: str, *, limits: Limits | None = None,
              sandbox: Sandbox | None = None) -> TestReport:
    """Run all of `task`'s tests on `program` in one sandboxed harness process."""
    limits, sandbox = limits or Limits(), sandbox or Sandbox()
    started = time.monotonic()
    backstop = limits.total_wall([c.name for c in task.tests.cases]) + 30
    raw, error, sandboxed = run_sandboxed(
        HARNESS_PATH, lambda nproc_base, drop_uid: {"program": program, "tests": task.tests.payload(),
                                                    "limits": limits.payload(nproc_base), "drop_uid": drop_uid},
        backstop, sandbox, refusal="refusing to run model-written code")
    return _report(task, raw, error, limits, sandboxed=sandboxed, seconds=time.monotonic() - started)


def run_sandboxed(script: Path, payload: Callable[[int, int | None], dict], backstop: float,
                  sandbox: Sandbox, *, refusal: str, advice: str = NO_BWRAP_ADVICE) -> tuple[bytes, str, bool]:
    """Run the stdlib-only `script` under bubblewrap with `payload(nproc_base, drop_uid)` as
    JSON on stdin (the script applies the limits and drops to `drop_uid` itself). Returns its
    stdout (what it wrote before a backstop kill, too), an error ("" when it exited 0) and
    whether it was sandboxed. Without bwrap: SandboxUnavailable unless the sandbox opts in."""
    bwrap = sandbox.resolve()
    if bwrap is None and not sandbox.allow_unsandboxed:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {refusal} ({advice})")
    as_root = os.geteuid() == 0
    drop_uid = _claim_uid() if as_root else None
    try:
        return _run_as(script, payload, backstop, sandbox, bwrap, as_root, drop_uid)
    finally:
        if drop_uid is not None:
            reap_uid(drop_uid)  # nothing the run spawned outlives it, escaped sessions included
            with _UIDS_LOCK:
                _UIDS.discard(drop_uid)


_UIDS: set[int] = set()  # the fresh uids of the runs in flight in this process: never two alike
_UIDS_LOCK = threading.Lock()


def _claim_uid() -> int:
    with _UIDS_LOCK:
        while (uid := 200_000 + secrets.randbelow(800_000)) in _UIDS:
            pass
        _UIDS.add(uid)
        return uid


def reap_uid(uid: int, timeout: float = 10.0) -> list[int]:
    """Kill every process left with this run's own uid and wait until none is left (the pid
    namespace's teardown is asynchronous, and a forked child in a new session escapes the
    process-group kill); returns the pids it found left. Bounded by `timeout`."""
    found: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        left = _pids_of(uid)
        if not left or time.monotonic() > deadline:
            return found
        for pid in left:
            if pid not in found:
                found.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _run_as(script: Path, payload: Callable[[int, int | None], dict], backstop: float, sandbox: Sandbox,
            bwrap: str | None, as_root: bool, drop_uid: int | None) -> tuple[bytes, str, bool]:
    with tempfile.TemporaryDirectory(prefix="dpo-tui-run-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        os.chmod(tmp, 0o711)  # the script may run as another uid (unsandboxed, as root)
        if drop_uid is not None:
            os.chown(work, drop_uid, drop_uid)
        if bwrap:
            cmd = bwrap_command(bwrap, sandbox.python, work, as_root=as_root, script=script)
        else:
            cmd = [sandbox.python, "-s", "-S", "-B", str(script)]
        nproc_base = 0 if as_root else _own_process_count()
        raw, error = _spawn(cmd, json.dumps(payload(nproc_base, drop_uid)).encode(), work if not bwrap else None,
                            backstop, env=_child_env(str(work)))
        if drop_uid is not None:
            reap_uid(drop_uid)  # before its work directory goes
    return raw, error, bwrap is not None


def _spawn(cmd: list[str], stdin: bytes, cwd: Path | None, backstop: float,
           env: dict[str, str]) -> tuple[bytes, str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=backstop)
        error = "" if proc.returncode == 0 else \
            f"harness exited with status {proc.returncode}: {err.decode('utf-8', 'replace')[-500:].strip()}"
    except subprocess.TimeoutExpired:
        out, error = b"", f"harness exceeded its wall-clock backstop of {backstop:g} s"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.returncode is None:
            out = proc.communicate()[0] or b""  # what it wrote before the kill
    return out, error


def _report(task: Task, raw: bytes, error: str, limits: Limits, *, sandboxed: bool,
            seconds: float) -> TestReport:
    rows: list = []
    cpu = 0.0
    if raw and not error:
        try:
            out = json.loads(raw)
            rows = out["verdicts"]
            cpu = _cpu_seconds(out.get("cpu_seconds"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            error = f"unreadable harness report: {exc}"
    if error:  # never the candidate's pass: every test counts as a crash
        rows = [[c.name, "crash", error, 0.0, 0.0, ""] for c in task.tests.cases]
    return build_report([TestVerdict(*row) for row in rows], limits, sandboxed=sandboxed,
                        seconds=seconds, error=error, cpu_seconds=cpu)


def _cpu_seconds(value: object) -> float:
    """The harness's CPU figure, when it is a finite non-negative number (a measurement only:
    nothing is decided on it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def build_report(verdicts: list[TestVerdict], limits: Limits, *, sandboxed: bool, seconds: float,
                 error: str = "", cpu_seconds: float = 0.0) -> TestReport:
    ran = [v for v in verdicts if v.verdict != "skip"]
    ok = sum(v.verdict == "pass" for v in ran)
    note = "" if sandboxed else UNSANDBOXED_NOTE
    return TestReport(passed=bool(ran) and ok == len(ran), tests=len(ran), tests_passed=ok,
                      verdicts=verdicts, output=feedback_text(verdicts, limits.feedback_chars, note),
                      seconds=round(seconds, 4), sandboxed=sandboxed, note=note, error=error,
                      cpu_seconds=round(cpu_seconds, 4))


def feedback_text(verdicts: list[TestVerdict], limit: int = 4000, note: str = "") -> str:
    """The failing tests' verdicts, messages and output, truncated to `limit` characters."""
    failing = [v for v in verdicts if v.verdict not in ("pass", "skip")]
    ran = sum(v.verdict != "skip" for v in verdicts)
    parts = [f"{ran - len(failing)} of {ran} tests passed."] + ([note] if note else [])
    for v in failing:
        block = f"{v.verdict.upper()} {v.name}" + (f"\n{v.message}" if v.message else "")
        if v.output.strip():
            block += f"\n--- output ---\n{v.output.strip()}"
        parts.append(block)
    text = "\n\n".join(parts)
    if len(text) > limit:
        shown = text[: limit - 80].rstrip()
        text = f"{shown}\n... [feedback truncated: {len(failing)} failing tests in all]"
    return text
