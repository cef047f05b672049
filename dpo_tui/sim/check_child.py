"""The simulator's example checker, run inside the bubblewrap sandbox (stdlib only, as a script).

Reads one JSON payload on stdin: {"programs", "examples": [[func, args, expected], ...],
"cpu", "wall", "limits", "drop_uid"}. The supervisor (this process, trusted code only) drops
to `drop_uid`, applies the resource limits, and forks one child per program: its own process
group, `cpu` seconds of CPU (ITIMER_PROF, RLIMIT_CPU behind it), a wall-clock backstop, and
no way to the report (stdin, stdout and stderr are /dev/null). The child writes one byte per
example its program reproduces on a pipe; after each program the supervisor prints the
counts so far as one JSON line on its own copy of stdout.
"""

import json
import math
import os
import resource
import select
import signal
import sys
import time


class Slow(BaseException):
    pass


def _on_prof(*_):
    raise Slow()


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-3 * max(1.0, abs(float(b)))
        except Exception:
            return False
    return a == b


def _apply_limits(limits, drop_uid):
    if drop_uid is not None:
        os.setgroups([])
        os.setgid(drop_uid)
        os.setuid(drop_uid)
    for name, key in (("RLIMIT_AS", "memory_bytes"), ("RLIMIT_FSIZE", "file_bytes"),
                      ("RLIMIT_NPROC", "nproc"), ("RLIMIT_NOFILE", "nofile")):
        value = limits[key]
        resource.setrlimit(getattr(resource, name), (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child(prog, examples, cpu, out_fd):
    os.setpgid(0, 0)
    hard = int(math.ceil(cpu)) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard + 1))
    signal.signal(signal.SIGPROF, _on_prof)
    try:
        signal.setitimer(signal.ITIMER_PROF, cpu)
        ns = {"__name__": "candidate"}
        exec(compile(prog, "program.py", "exec"), ns)
        for func, args, expected in examples:
            try:
                r = ns[func](*eval(args, {}))
                if hasattr(r, "__next__"):
                    r = list(r)
                if same(r, eval(expected, {})):
                    os.write(out_fd, b"1")
            except Exception:
                pass
    except BaseException:
        pass
    os._exit(0)


def run_one(prog, examples, cpu, wall, report_fd):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(report_fd)
        _child(prog, examples, cpu, w)
    os.close(w)
    got, deadline = 0, time.monotonic() + wall
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                break
            chunk = os.read(r, 64)
            if not chunk:
                break
            got += len(chunk)
    finally:
        os.close(r)
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(pid, 0)
    return min(got, len(examples))


def main():
    job = json.loads(sys.stdin.buffer.read())
    report_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _apply_limits(job["limits"], job.get("drop_uid"))
    report = os.fdopen(report_fd, "w")
    out = []
    for prog in job["programs"]:
        out.append(run_one(prog, job["examples"], job["cpu"], job["wall"], report_fd))
        report.write(json.dumps(out) + "\n")
        report.flush()


if __name__ == "__main__":
    main()
