"""The lean test harness that runs inside the sandbox (stdlib only, run as a script).

Reads one JSON payload on stdin: {"program", "tests": TestSpec.payload(), "limits",
"drop_uid"}; writes one JSON object on stdout: {"verdicts": [[name, verdict, message,
seconds, cpu_seconds, output], ...], "cpu_seconds": the run's CPU, this supervisor's own (its
interpreter's start included) and every test child's it waited for}.

The supervisor (this process, trusted code only) drops privileges, applies the resource
limits, and forks one child per test. Each child gets its own process group, its own
CPU budget (ITIMER_PROF, then RLIMIT_CPU with a SIGKILL hard limit behind it) and its
stdout/stderr on a pipe the supervisor drains with a byte cap; the supervisor enforces a
wall-clock backstop and kills the child's whole process group when the test ends. The
child loads the program (and the test module) fresh, so no test sees another's state.

Verdicts: pass, fail (AssertionError), error (any other exception, including
RecursionError and MemoryError), timeout (CPU or wall-clock limit), crash (the process
died without reporting: a signal, os._exit, too much output), skip (pytest.skip).
"""

import ast
import builtins
import json
import linecache
import math
import os
import resource
import selectors
import signal
import sys
import time
import traceback
import types

HARNESS = os.path.abspath(__file__)
PROGRAM_FILE = "program.py"
KEEP_HEAD, KEEP_TAIL = 1500, 500


# ---------------------------------------------------------------- the pytest stand-in
class Skipped(BaseException):
    pass


class _Approx:
    def __init__(self, expected, rel=None, abs=None):
        self.expected, self.rel, self.abs = expected, rel, abs

    def _tolerance(self):
        if self.abs is not None and self.rel is None:
            return self.abs
        rel = 1e-6 if self.rel is None else self.rel
        return max(rel * builtins.abs(self.expected), 1e-12 if self.abs is None else self.abs)

    def __eq__(self, actual):
        try:
            return actual == self.expected or builtins.abs(actual - self.expected) <= self._tolerance()
        except TypeError:
            return False

    __hash__ = None

    def __repr__(self):
        return f"approx({self.expected!r})"


class _Raises:
    def __init__(self, expected):
        self.expected = expected

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f"DID NOT RAISE {self.expected}")
        return issubclass(exc_type, self.expected)


def _skip(reason="", **_):
    raise Skipped(reason)


_skip.Exception = Skipped


def _parametrize(argnames, argvalues, **_):
    names = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else list(argnames)

    def mark(func):
        func._harness_params = (names, list(argvalues))
        return func
    return mark


def _pytest_module():
    mod = types.ModuleType("pytest")
    mod.mark = types.SimpleNamespace(parametrize=_parametrize)
    mod.skip = _skip
    mod.approx, mod.raises, mod.use_correct, mod.run_slow = _Approx, _Raises, False, False
    return mod


# ---------------------------------------------------------------- inside a test child
def _lines(source, filename):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _compile_all(program, tests):
    """Compile the program, the test code (asserts rewritten) and the support modules once,
    in the supervisor; each test child inherits the code objects. Returns an error or None."""
    code = {}
    try:
        code["program"] = compile(program, PROGRAM_FILE, "exec")
        _lines(program, PROGRAM_FILE)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as exc:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return f"{PROGRAM_FILE} does not compile: {text}"
    code["tests"] = _compile_tests(tests["source"], tests["filename"])
    _lines(tests["source"], tests["filename"])
    code["support"] = []
    for name, source in tests["support"]:
        code["support"].append((name, compile(source, name + ".py", "exec")))
        _lines(source, name + ".py")
    tests["_code"] = code
    return None


def _load(tests):
    """Load the program and the test code; returns the namespace holding the tests."""
    code = tests["_code"]
    sys.modules["pytest"] = _pytest_module()
    for name, support in code["support"]:
        mod = types.ModuleType(name)
        mod.__file__ = name + ".py"
        sys.modules[name] = mod
        exec(support, mod.__dict__)
    target = tests["program_module"]
    if target:
        parent = target.rpartition(".")[0]
        if parent and parent not in sys.modules:
            sys.modules[parent] = types.ModuleType(parent)
            sys.modules[parent].__path__ = []
        mod = types.ModuleType(target)
        mod.__file__ = PROGRAM_FILE
        sys.modules[target] = mod
        exec(code["program"], mod.__dict__)
        return None
    namespace = {"__name__": "__main__", "__builtins__": builtins, "__file__": PROGRAM_FILE}
    exec(code["program"], namespace)
    return namespace


def _run_case(tests, namespace, func, index):
    if namespace is None:
        namespace = {"__name__": tests["filename"][:-3], "__builtins__": builtins}
    namespace["_h_explain"] = _h_explain
    exec(tests["_code"]["tests"], namespace)
    if func is None:
        return
    test = namespace[func]
    if index is None:
        test()
        return
    names, values = test._harness_params
    args = values[index]
    test(**({names[0]: args} if len(names) == 1 else dict(zip(names, args))))


def _short(value, limit=300):
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class _AssertSides(ast.NodeTransformer):
    """Rewrite `assert a OP b` (one comparison, no message) so that a failure reports both
    sides as they were computed, like pytest does, without evaluating anything twice."""

    def visit_Assert(self, node):
        test = node.test
        if node.msg is not None or not isinstance(test, ast.Compare) or len(test.ops) != 1:
            return node
        left, right = ast.Name("_h_left", ast.Store()), ast.Name("_h_right", ast.Store())
        load = [ast.Name("_h_left", ast.Load()), ast.Name("_h_right", ast.Load())]
        message = ast.Call(ast.Name("_h_explain", ast.Load()), load[:], [])
        stmts = [ast.Assign([left], test.left), ast.Assign([right], test.comparators[0]),
                 ast.Assert(ast.Compare(load[0], test.ops, [load[1]]), message)]
        return [ast.fix_missing_locations(ast.copy_location(s, node)) for s in stmts]


def _h_explain(left, right):
    return f"left side: {_short(left)}\nright side: {_short(right)}"


def _compile_tests(source, filename):
    try:
        tree = _AssertSides().visit(ast.parse(source, filename))
        return compile(ast.fix_missing_locations(tree), filename, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return compile(source, filename, "exec")


def _where(tb):
    """The failing test frame's local values, for the model (functions and modules left out)."""
    frame = None
    for f, _ in traceback.walk_tb(tb):
        if f.f_code.co_filename != HARNESS:
            frame = f
    if frame is None:
        return ""
    names = {k: v for k, v in frame.f_locals.items() if not k.startswith(("__", "_h_"))
             and not isinstance(v, (types.FunctionType, types.ModuleType, type))}
    return "where " + ", ".join(f"{k} = {_short(v)}" for k, v in names.items()) if names else ""


def _format_error(exc):
    # the last frames only (a RecursionError has ~1000, each looked up in linecache); the
    # harness's own frames are the outermost ones, bar one or two (pytest.raises)
    frames = [f for f in traceback.extract_tb(exc.__traceback__, limit=-16) if f.filename != HARNESS][-8:]
    text = "".join(traceback.StackSummary.from_list(frames).format())
    text += "".join(traceback.format_exception_only(type(exc), exc))
    if isinstance(exc, AssertionError):
        extra = _where(exc.__traceback__)
        if extra:
            text += extra + "\n"
    return text.strip()


def _child(tests, case, cpu, out_w, res_w):
    os.setpgid(0, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    sys.stdout.reconfigure(line_buffering=True)  # what a hanging test printed is kept
    hard = math.ceil(cpu) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard + 1))
    signal.setitimer(signal.ITIMER_PROF, cpu)
    _, func, index = case
    status = "load"
    try:
        namespace = _load(tests)
        os.write(res_w, b"L\n")
        status = "test"
        _run_case(tests, namespace, func, index)
        verdict, message = "pass", ""
    except Skipped as exc:
        verdict, message = "skip", str(exc)
    except AssertionError as exc:
        verdict, message = "fail", _format_error(exc)
    except BaseException as exc:  # noqa: BLE001 - every other failure is the candidate's
        verdict, message = "error", _format_error(exc)
    if status == "load" and verdict != "pass":
        message = "while loading the program: " + message
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os.write(res_w, b"R" + json.dumps([verdict, message[:4000], status]).encode() + b"\n")
    os._exit(0)


# ---------------------------------------------------------------- the supervisor
def _truncate(data):
    text = data.decode("utf-8", "replace")
    if len(text) <= KEEP_HEAD + KEEP_TAIL:
        return text
    cut = len(text) - KEEP_HEAD - KEEP_TAIL
    return f"{text[:KEEP_HEAD]}\n... [{cut} characters cut] ...\n{text[-KEEP_TAIL:]}"


def _pump(pid, out_r, res_r, limits):
    """Drain the child's pipes until it exits or breaks a limit; returns (out, res, killed)."""
    pidfd = os.pidfd_open(pid)
    sel = selectors.DefaultSelector()
    for fd in (out_r, res_r, pidfd):
        sel.register(fd, selectors.EVENT_READ)
    out, res, killed = bytearray(), bytearray(), None
    deadline = time.monotonic() + limits["test_wall"]
    exited = False
    while not exited or len(sel.get_map()) > 1:
        wait = deadline - time.monotonic() if not exited else 0.05
        if wait <= 0 and not exited:
            killed = f"wall-clock limit of {limits['test_wall']:g} s"
            break
        events = sel.select(wait)
        if not events and exited:
            break  # a grandchild holds the pipe open; it is killed with the group
        for key, _ in events:
            if key.fd == pidfd:
                exited = True
                sel.unregister(pidfd)
                continue
            data = os.read(key.fd, 65536)
            if not data:
                sel.unregister(key.fd)
            elif key.fd == out_r:
                out += data
                if len(out) > limits["output_bytes"]:
                    killed = f"output limit of {limits['output_bytes']} bytes"
            else:
                res += data
        if killed:
            break
    sel.close()
    os.close(pidfd)
    return out, res, killed


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _verdict(res, killed, status, cpu_used, limits):
    lines = res.decode("utf-8", "replace").splitlines()
    loaded = "L" in lines
    for line in lines:
        if line.startswith("R"):
            verdict, message, stage = json.loads(line[1:])
            return verdict, message, stage == "load"
    if killed and killed.startswith("output"):
        return "crash", f"killed: {killed} exceeded", not loaded
    if killed:
        return "timeout", f"timed out: {killed}", not loaded
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if sig in (signal.SIGPROF, signal.SIGXCPU) or (sig == signal.SIGKILL and cpu_used >= limits["test_cpu"]):
        return "timeout", f"timed out: CPU time limit of {limits['test_cpu']:g} s", not loaded
    if sig is not None:
        return "crash", f"the test process was killed by {signal.Signals(sig).name}", not loaded
    return "crash", f"the test process exited with status {os.WEXITSTATUS(status)} without a result", not loaded


def run_one(tests, case, limits):
    cpu, wall = limits["per_test"].get(case[0], (limits["test_cpu"], limits["test_wall"]))
    limits = dict(limits, test_cpu=cpu, test_wall=wall)
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            os.close(res_r)
            _child(tests, case, limits["test_cpu"], out_w, res_w)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(res_w)
    try:
        out, res, killed = _pump(pid, out_r, res_r, limits)
    finally:
        _kill_group(pid)
        os.close(out_r)
        os.close(res_r)
    _, status, usage = os.wait4(pid, 0)
    cpu_used = usage.ru_utime + usage.ru_stime
    verdict, message, at_load = _verdict(res, killed, status, cpu_used, limits)
    seconds = time.monotonic() - started
    return [case[0], verdict, message, round(seconds, 4), round(cpu_used, 4), _truncate(bytes(out))], at_load


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


def main():
    payload = json.loads(sys.stdin.buffer.read())
    report = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _apply_limits(payload["limits"], payload.get("drop_uid"))
    program, tests, limits = payload["program"], payload["tests"], payload["limits"]
    results, inherited = [], None
    static = _compile_all(program, tests)
    for case in tests["cases"]:
        if static:
            results.append([case[0], "error", static, 0.0, 0.0, ""])
        elif inherited:  # the program failed while loading: the same for every test
            results.append([case[0], inherited[1], inherited[2], 0.0, 0.0, ""])
        else:
            row, at_load = run_one(tests, case, limits)
            results.append(row)
            if at_load and row[1] != "pass":
                inherited = row
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime  # this process and every test it waited for
    report.write(json.dumps({"verdicts": results, "cpu_seconds": round(cpu, 4)}))
    report.flush()


if __name__ == "__main__":
    main()
