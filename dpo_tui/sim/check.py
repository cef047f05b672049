"""A simulated model "thinking through" candidate edits on the examples in its prompt.

A capable model checks a fix against the failing example the feedback shows
(`where input_data = [...], expected = ...`) and the docstring's `>>> f(x)` examples. The
simulator mimics that: it runs its best few candidates on those examples and counts which
ones reproduce the expected values. Only the prompt's content is used (never a benchmark's
answers); the code run is the prompt's own program with one edit, so it is request code:
it runs only in the runner's bubblewrap sandbox (no network, an empty environment, a fresh
temporary directory, rlimits; check_child.py, one sandbox per call), and never without
bubblewrap (SandboxUnavailable).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dpo_tui.tasks.sandbox import Limits, Sandbox, SandboxUnavailable, run_sandboxed

_WHERE = re.compile(r"^where input_data = (.*), expected = (.*)$", re.M)
_CALL = re.compile(r"(\w+)\(\*input_data\)")
_DOCTEST = re.compile(r">>>\s*(\w+)\((.*)\)\s*\n\s*([^\n>]+)")


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


CHILD_PATH = Path(__file__).with_name("check_child.py")
_LIMITS = Limits(memory_mb=768, processes=16, file_mb=1, open_files=32)
REFUSAL = "the simulator refuses to run request code"
ADVICE = "install the bubblewrap package; the simulator has no unsandboxed mode"


def sim_sandbox() -> Sandbox:
    """The simulator's sandbox: bubblewrap, with no opt-out."""
    return Sandbox()


def require_sandbox() -> None:
    """Refuse to start a simulator that could not contain what its models check."""
    if sim_sandbox().resolve() is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {REFUSAL} ({ADVICE})")


@lru_cache(maxsize=4096)
def _run(programs: tuple[str, ...], examples: tuple[Example, ...], cpu: float) -> tuple[int, ...]:
    job = {"programs": list(programs), "examples": [[e.func, e.args, e.expected] for e in examples], "cpu": cpu}
    # as before the sandbox (plus its start): a program that sleeps ends the run, later ones count 0
    backstop = 3.0 + len(programs) * (cpu * 2 + 0.05)
    raw, _error, _sandboxed = run_sandboxed(
        CHILD_PATH, lambda nproc_base, drop_uid: {**job, "limits": _LIMITS.payload(nproc_base), "drop_uid": drop_uid},
        backstop, sim_sandbox(), refusal=REFUSAL, advice=ADVICE)
    done: list[int] = []
    for line in reversed(raw.decode("utf-8", "replace").splitlines()):
        try:
            done = [int(x) for x in json.loads(line)][:len(programs)]
            break
        except (ValueError, TypeError):
            continue
    return tuple(done + [0] * (len(programs) - len(done)))


def passes(programs: list[str], examples: tuple[Example, ...], cpu: float = 0.1) -> list[int]:
    """How many of `examples` each program reproduces (0 for crashes, hangs and timeouts)."""
    if not programs or not examples:
        return [0] * len(programs)
    return list(_run(tuple(programs), examples, cpu))
