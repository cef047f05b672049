"""The lean test harness that runs inside the sandbox (stdlib only, run as a script).

Reads one JSON payload on stdin: {"program", "tests": TestSpec.payload(), "limits",
"drop_uid"}; writes one JSON object on stdout: {"verdicts": [[name, verdict, message,
seconds, cpu_seconds, output], ...]}.

The supervisor (this process, trusted code only) drops privileges, applies the resource
limits, and forks one child per test. Each child gets its own process group, its own
CPU budget (ITIMER_PROF, then RLIMIT_CPU with a SIGKILL hard limit behind it) and its
stdout/stderr on a pipe the supervisor drains with a byte cap; the supervisor enforces a
wall-clock backstop and kills the child's whole process group when the test ends. The
child loads the program (and the test module) fresh, so no test sees another's state.

Start-up is most of a run's cost, so the harness imports only C-level or tiny modules
(`_ast` not `ast`, `_signal` not `signal`, `select.poll` not `selectors`, `marshal` in and
a small JSON writer out, no `re`); `traceback` is imported only once a test fails, and the
few pure stdlib modules the tests or the program name (json, typing, collections, ...) are
imported once in the supervisor, so that the test children inherit them.

Verdicts: pass, fail (AssertionError), error (any other exception, including
RecursionError and MemoryError), timeout (CPU or wall-clock limit), crash (the process
died without reporting: a signal, os._exit, too much output), skip (pytest.skip).
"""

import _ast
import _signal
import builtins
import marshal
import os
import resource
import select
import sys
import time
import types

try:
    from _json import encode_basestring_ascii as _json_str
except ImportError:  # an interpreter without the C accelerator
    from json import dumps as _json_str

HARNESS = os.path.abspath(__file__)
PROGRAM_FILE = "program.py"
KEEP_HEAD, KEEP_TAIL = 1500, 500
VERDICT_NAMES = ("pass", "fail", "error", "timeout", "crash", "skip")
# pure stdlib modules worth importing once in the supervisor when the code names them
# (never `random`: each test child must seed its own)
WARM = ("json", "typing", "collections", "math", "heapq", "string", "copy", "functools",
        "itertools", "bisect", "operator", "fractions", "dataclasses", "re")
_SOURCES = {}  # filename -> source, for tracebacks (linecache is filled once traceback loads)
_TB = []


def _traceback():
    """traceback, imported on first need, with the program's and the tests' lines."""
    if not _TB:
        import linecache
        import traceback
        for filename, source in _SOURCES.items():
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        _TB.append(traceback)
    return _TB[0]


def _warm(*texts):
    for name in WARM:
        if any(f"import {name}" in t or f"from {name} " in t or f"from {name}." in t for t in texts):
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - only a speed-up
                pass


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
    _SOURCES[filename] = source
    if _TB:
        import linecache
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _compile_all(program, tests):
    """Compile the program, the test code (asserts rewritten) and the support modules once,
    in the supervisor; each test child inherits the code objects. Returns an error or None."""
    code = {}
    try:
        code["program"] = compile(program, PROGRAM_FILE, "exec")
        _lines(program, PROGRAM_FILE)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as exc:
        text = "".join(_traceback().format_exception_only(type(exc), exc)).strip()
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


_LOCATION = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def _at(node, where):
    for attr in _LOCATION:
        setattr(node, attr, getattr(where, attr))
    return node


def _assert_sides(node):
    """Rewrite `assert a OP b` (one comparison, no message) so that a failure reports both
    sides as they were computed, like pytest does, without evaluating anything twice."""
    test = node.test
    if node.msg is not None or not isinstance(test, _ast.Compare) or len(test.ops) != 1:
        return [node]
    name = lambda n, ctx: _at(_ast.Name(n, ctx), node)  # noqa: E731
    load = [name("_h_left", _ast.Load()), name("_h_right", _ast.Load())]
    message = _at(_ast.Call(name("_h_explain", _ast.Load()), [name("_h_left", _ast.Load()),
                                                              name("_h_right", _ast.Load())], []), node)
    return [_at(_ast.Assign([name("_h_left", _ast.Store())], test.left), node),
            _at(_ast.Assign([name("_h_right", _ast.Store())], test.comparators[0]), node),
            _at(_ast.Assert(_at(_ast.Compare(load[0], test.ops, [load[1]]), node), message), node)]


def _rewrite(node):
    """`_assert_sides` applied to every assert statement in the tree, in place."""
    stack = [node]
    while stack:
        current = stack.pop()
        for field in current._fields:
            value = getattr(current, field, None)
            if isinstance(value, list):
                if any(isinstance(v, _ast.Assert) for v in value):
                    value = [s for v in value for s in (_assert_sides(v) if isinstance(v, _ast.Assert) else [v])]
                    setattr(current, field, value)
                stack.extend(v for v in value if isinstance(v, _ast.AST))
            elif isinstance(value, _ast.AST):
                stack.append(value)
    return node


def _h_explain(left, right):
    return f"left side: {_short(left)}\nright side: {_short(right)}"


def _compile_tests(source, filename):
    if "assert" not in source:
        return compile(source, filename, "exec")
    try:
        tree = _rewrite(compile(source, filename, "exec", _ast.PyCF_ONLY_AST))
        return compile(tree, filename, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return compile(source, filename, "exec")


def _where(tb):
    """The failing test frame's local values, for the model (functions and modules left out)."""
    traceback = _traceback()
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
    traceback = _traceback()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != HARNESS][-8:]
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
    hard = int(-(-cpu // 1)) + 1  # ceil(cpu) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard + 1))
    _signal.setitimer(_signal.ITIMER_PROF, cpu)
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
    os.write(res_w, b"R" + f"{verdict}\x1f{status}\x1f{message[:4000]}".encode("utf-8", "replace"))
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
    poll = select.poll()
    watched = {out_r, res_r, pidfd}
    for fd in watched:
        poll.register(fd, select.POLLIN)
    out, res, killed = bytearray(), bytearray(), None
    deadline = time.monotonic() + limits["test_wall"]
    exited = False
    while not exited or len(watched) > 1:
        wait = deadline - time.monotonic() if not exited else 0.05
        if wait <= 0 and not exited:
            killed = f"wall-clock limit of {limits['test_wall']:g} s"
            break
        events = poll.poll(max(1, int(-(-wait * 1000 // 1))))
        if not events and exited:
            break  # a grandchild holds the pipe open; it is killed with the group
        for fd, _ in events:
            if fd not in watched:
                continue
            if fd == pidfd:
                exited = True
                poll.unregister(pidfd)
                watched.discard(pidfd)
                continue
            data = os.read(fd, 65536)
            if not data:
                poll.unregister(fd)
                watched.discard(fd)
            elif fd == out_r:
                out += data
                if len(out) > limits["output_bytes"]:
                    killed = f"output limit of {limits['output_bytes']} bytes"
            else:
                res += data
        if killed:
            break
    os.close(pidfd)
    return out, res, killed


def _kill_group(pid):
    try:
        os.killpg(pid, _signal.SIGKILL)
    except OSError:
        pass


def _verdict(res, killed, status, cpu_used, limits):
    loaded = res.startswith(b"L\n")
    record = res[2:] if loaded else bytes(res)
    if record.startswith(b"R"):
        parts = record[1:].decode("utf-8", "replace").split("\x1f", 2)
        if len(parts) == 3 and parts[0] in VERDICT_NAMES:
            verdict, stage, message = parts
            return verdict, message, stage == "load"
    if killed and killed.startswith("output"):
        return "crash", f"killed: {killed} exceeded", not loaded
    if killed:
        return "timeout", f"timed out: {killed}", not loaded
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if sig in (_signal.SIGPROF, _signal.SIGXCPU) or (sig == _signal.SIGKILL and cpu_used >= limits["test_cpu"]):
        return "timeout", f"timed out: CPU time limit of {limits['test_cpu']:g} s", not loaded
    if sig is not None:
        return "crash", f"the test process was killed by {_signal_name(sig)}", not loaded
    return "crash", f"the test process exited with status {os.WEXITSTATUS(status)} without a result", not loaded


def _signal_name(sig):
    import signal  # only here: it imports enum
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _dumps(value):
    """JSON for the report: dicts, lists, str, int, float, bool, None (no json module)."""
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_str(str(k))}: {_dumps(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return "null"
    return repr(value)


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
    payload = marshal.loads(sys.stdin.buffer.read())
    report = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _apply_limits(payload["limits"], payload.get("drop_uid"))
    program, tests, limits = payload["program"], payload["tests"], payload["limits"]
    results, inherited = [], None
    static = _compile_all(program, tests)
    _warm(program, tests["source"], *(source for _, source in tests["support"]))
    for case in tests["cases"]:
        if static:
            results.append([case[0], "error", static, 0.0, 0.0, ""])
        elif inherited:  # the program failed while loading: the same for every test
            results.append([case[0], inherited[1], inherited[2], 0.0, 0.0, ""])
        else:
            row, at_load = run_one(tests, case, limits)
            results.append(row)
            if row[1] in ("fail", "error"):
                _traceback()  # the next failing tests' children inherit it
            if at_load and row[1] != "pass":
                inherited = row
    report.write(_dumps({"verdicts": results}))
    report.flush()


if __name__ == "__main__":
    main()
