"""Hostile candidates are contained: each runs for real under bubblewrap, the runner
survives and reports a verdict, and nothing on the machine is touched."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from dpo_tui.tasks.sandbox import Limits, Sandbox, bwrap_available, run_tests
from dpo_tui.tasks.suites import task_from_code

LIMITS = Limits(test_cpu_seconds=0.5)
SHORT_WALL = Limits(test_cpu_seconds=0.5, test_wall_seconds=3)  # for candidates that sleep


@pytest.fixture(autouse=True)
def _runner_still_healthy():
    assert bwrap_available(), "bubblewrap (bwrap) must be installed: apt-get install bubblewrap"
    yield
    ok = task_from_code("ok", "def f():\n    return 1\n", "def test_f():\n    assert f() == 1\n")
    report = run_tests(ok, ok.buggy_program, limits=LIMITS)
    assert report.passed and report.sandboxed


def run(test_code: str, program: str = "import os, sys, time\n", limits: Limits = LIMITS,
        harness_dies: bool = False):
    task = task_from_code("hostile", program, test_code)
    started = time.monotonic()
    report = run_tests(task, program, limits=limits)
    assert report.sandboxed and bool(report.error) == harness_dies
    return report, time.monotonic() - started


def uids_alive(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_infinite_loop_times_out_on_cpu():
    report, elapsed = run("def test_loop():\n    while True:\n        pass\n")
    [v] = report.verdicts
    assert v.verdict == "timeout" and "CPU time limit" in v.message
    assert elapsed < 15


def test_loop_that_ignores_the_cpu_signals_still_times_out():
    code = (
        "import signal\n"
        "def test_stubborn():\n"
        "    for sig in (signal.SIGPROF, signal.SIGXCPU, signal.SIGTERM, signal.SIGALRM):\n"
        "        signal.signal(sig, signal.SIG_IGN)\n"
        "    while True:\n"
        "        pass\n")
    report, elapsed = run(code)
    [v] = report.verdicts
    assert v.verdict == "timeout" and elapsed < 20


def test_killing_the_harness_fails_every_test_and_the_runner_survives():
    code = "import signal\ndef test_a():\n    os.kill(os.getppid(), signal.SIGKILL)\n\ndef test_b():\n    pass\n"
    report, _ = run(code, harness_dies=True)
    assert [v.verdict for v in report.verdicts] == ["crash", "crash"] and not report.passed
    assert "harness exited" in report.verdicts[0].message


def test_sleeping_forever_hits_the_wall_clock_backstop():
    report, elapsed = run("def test_sleep():\n    time.sleep(3600)\n", limits=SHORT_WALL)
    [v] = report.verdicts
    assert v.verdict == "timeout" and "wall-clock" in v.message and elapsed < 20


def test_ten_gigabyte_allocation_is_refused():
    report, elapsed = run("def test_alloc():\n    x = bytearray(10 * 1024 ** 3)\n    assert len(x) > 0\n")
    [v] = report.verdicts
    assert v.verdict == "error" and "MemoryError" in v.message and elapsed < 15


def test_growing_list_runs_into_the_memory_cap():
    report, _ = run("def test_grow():\n    xs = []\n    while True:\n        xs.append('x' * 10**6)\n",
                    limits=Limits(test_cpu_seconds=5))
    [v] = report.verdicts
    assert v.verdict == "error" and "MemoryError" in v.message


def test_hundred_megabytes_of_output_is_cut_off():
    report, elapsed = run("def test_spew():\n    for _ in range(100):\n        sys.stdout.write('x' * 10**6)\n")
    [v] = report.verdicts
    assert v.verdict == "crash" and "output limit" in v.message
    assert len(v.output) < 5000 and "characters cut" in v.output
    assert len(report.output) <= LIMITS.feedback_chars and elapsed < 20


def test_process_spawner_is_bounded_and_reaped():
    code = '''
def test_spawn():
    print("uid", os.getuid(), flush=True)
    made = 0
    while True:
        try:
            pid = os.fork()
        except OSError as exc:
            print("fork refused after", made, type(exc).__name__, flush=True)
            break
        if pid == 0:
            made = 0
            if os.getpid() % 3 == 0:
                os.setsid()  # try to escape the test's process group too
            continue
        made += 1
    time.sleep(3600)
'''
    report, elapsed = run(code, limits=SHORT_WALL)
    [v] = report.verdicts
    assert v.verdict == "timeout" and elapsed < 25
    uid = int(re.search(r"uid (\d+)", v.output).group(1))
    assert uid >= 200_000  # a fresh unprivileged uid, so RLIMIT_NPROC counts this sandbox only
    assert "fork refused" in v.output and "BlockingIOError" in v.output
    made = [int(n) for n in re.findall(r"fork refused after (\d+)", v.output)]
    assert sum(made) <= LIMITS.processes
    assert uids_alive(uid) == []  # nothing it spawned outlives the run


def test_writing_outside_the_sandbox_fails(tmp_path):
    token = uuid.uuid4().hex
    targets = [f"/tmp/{token}", str(tmp_path / token), f"/usr/{token}", str(Path.cwd() / token),
               f"/dev/shm/{token}", os.path.expanduser(f"~/{token}")]
    code = f'''
def test_write_outside():
    refused = []
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
        except OSError as exc:
            refused.append(type(exc).__name__)
    assert len(refused) == {len(targets)}, refused

def test_write_inside_works():
    with open("scratch.txt", "w") as f:
        f.write("ok")
    assert open(os.path.join(os.environ["HOME"], "scratch.txt")).read() == "ok"
'''
    report, _ = run(code)
    assert [v.verdict for v in report.verdicts] == ["pass", "pass"], report.output
    assert not any(os.path.exists(p) for p in targets)


def test_api_key_is_not_visible(monkeypatch):
    secret = "sk-" + uuid.uuid4().hex
    monkeypatch.setenv("TOGETHER_API_KEY", secret)
    code = '''
def test_env_is_scrubbed():
    print(sorted(os.environ))
    assert "TOGETHER_API_KEY" not in os.environ

def test_proc_environ():
    for pid in os.listdir("/proc"):
        if pid.isdigit() or pid == "self":
            try:
                print(open(f"/proc/{pid}/environ", "rb").read())
            except OSError as exc:
                print(pid, type(exc).__name__)
'''
    report, _ = run(code)
    assert [v.verdict for v in report.verdicts] == ["pass", "pass"]
    everything = repr(report.to_dict())
    assert secret not in everything and "TOGETHER" not in report.verdicts[0].output


def test_no_network_not_even_the_hosts_loopback():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted, done = [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = f'''
import socket

def test_host_loopback():
    socket.create_connection(("127.0.0.1", {port}), timeout=2)

def test_internet():
    socket.create_connection(("1.1.1.1", 53), timeout=2)

def test_dns():
    socket.getaddrinfo("together.ai", 443)
'''
    report, _ = run(code)
    done.set()
    thread.join()
    server.close()
    assert [v.verdict for v in report.verdicts] == ["error", "error", "error"]
    assert "ConnectionRefusedError" in report.verdicts[0].message
    assert "Network is unreachable" in report.verdicts[1].message
    assert accepted == []


def test_without_bwrap_refuses_unless_opted_in(monkeypatch):
    task = task_from_code("t", "def f():\n    return 1\n", "def test_f():\n    assert f() == 1\n")
    from dpo_tui.tasks.sandbox import SandboxUnavailable

    with monkeypatch.context() as patch:
        patch.setenv("PATH", "/nonexistent")
        with pytest.raises(SandboxUnavailable, match="refusing to run model-written code"):
            run_tests(task, task.buggy_program)
        report = run_tests(task, task.buggy_program, sandbox=Sandbox(allow_unsandboxed=True))
    assert report.passed and not report.sandboxed
    assert "NOT SANDBOXED" in report.note and "only resource limits" in report.output


def test_cli_without_bwrap_exits_2_and_opt_in_works(dpo_tui_proc):
    env = {"PATH": "/nonexistent"}
    proc = dpo_tui_proc("tasks", "check", "--suite", "fixtures", "--variant", "fixed", env=env)
    assert proc.returncode == 2 and "bubblewrap" in proc.stderr and "Traceback" not in proc.stderr
    proc = dpo_tui_proc("tasks", "check", "--suite", "fixtures", "--variant", "fixed", "--unsandboxed", env=env)
    assert proc.returncode == 0 and "NOT SANDBOXED" in proc.stdout
