"""A simulated model "thinking through" candidate edits on the examples in its prompt.

A capable model checks a fix against the failing example the feedback shows
(`where input_data = [...], expected = ...`) and the docstring's `>>> f(x)` examples. The
simulator mimics that: it runs its best few candidates on those examples, in a child
process with CPU, memory and wall-clock limits, and counts which ones reproduce the
expected values. Only the prompt's content is used (never a benchmark's answers); the
code run is the prompt's own program with one edit.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

_WHERE = re.compile(r"^where input_data = (.*), expected = (.*)$", re.M)
_CALL = re.compile(r"(\w+)\(\*input_data\)")
_DOCTEST = re.compile(r">>>\s*(\w+)\((.*)\)\s*\n\s*([^\n>]+)")

_CHILD = r'''
import json, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
class Slow(BaseException): pass
def on_prof(*_): raise Slow()
signal.signal(signal.SIGPROF, on_prof)
job = json.loads(sys.stdin.read())
def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try: return abs(float(a) - float(b)) <= 1e-3 * max(1.0, abs(float(b)))
        except Exception: return False
    return a == b
out = []
for prog in job["programs"]:
    ok = 0
    try:
        signal.setitimer(signal.ITIMER_PROF, job["cpu"])
        ns = {"__name__": "candidate"}
        exec(compile(prog, "program.py", "exec"), ns)
        for func, args, expected in job["examples"]:
            try:
                r = ns[func](*eval(args, {}))
                if hasattr(r, "__next__"): r = list(r)
                ok += same(r, eval(expected, {}))
            except Exception:
                pass
    except BaseException:
        pass
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    out.append(ok)
    print(json.dumps(out), flush=True)
'''


@dataclass(frozen=True)
class Example:
    func: str
    args: str       # a Python literal list of arguments
    expected: str   # a Python literal


def _literal(src: str) -> bool:
    try:
        ast.literal_eval(src)
        return True
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return False


def extract_examples(failure: str, program: str) -> tuple[Example, ...]:
    """Input/expected pairs the prompt states: failing test cases and docstring examples."""
    funcs = re.findall(r"^def\s+(\w+)", program, re.M)
    if not funcs:
        return ()
    out: list[Example] = []
    for m in _WHERE.finditer(failure):
        before = failure[:m.start()]
        calls = [c for c in _CALL.findall(before[-600:]) if c in funcs]
        func = calls[-1] if calls else funcs[0]
        if _literal(m.group(1)) and _literal(m.group(2)):
            out.append(Example(func, m.group(1), m.group(2)))
    for m in _DOCTEST.finditer(program):
        args, expected = "[" + m.group(2) + "]", m.group(3).strip()
        if m.group(1) in funcs and _literal(args) and _literal(expected):
            out.append(Example(m.group(1), args, expected))
    seen, uniq = set(), []
    for e in out:
        if e not in seen:
            seen.add(e)
            uniq.append(e)
    return tuple(uniq[:8])


@lru_cache(maxsize=4096)
def _run(programs: tuple[str, ...], examples: tuple[Example, ...], cpu: float) -> tuple[int, ...]:
    job = {"programs": list(programs), "examples": [[e.func, e.args, e.expected] for e in examples], "cpu": cpu}
    wall = 1.0 + len(programs) * (cpu * 2 + 0.05)
    try:
        proc = subprocess.run([sys.executable, "-S", "-c", _CHILD], input=json.dumps(job), capture_output=True,
                              text=True, timeout=wall)
        lines = proc.stdout.strip().splitlines()
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines = raw.strip().splitlines()
    done = json.loads(lines[-1]) if lines else []
    return tuple(done + [0] * (len(programs) - len(done)))


def passes(programs: list[str], examples: tuple[Example, ...], cpu: float = 0.1) -> list[int]:
    """How many of `examples` each program reproduces (0 for crashes, hangs and timeouts)."""
    if not programs or not examples:
        return [0] * len(programs)
    return list(_run(tuple(programs), examples, cpu))
