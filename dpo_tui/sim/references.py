"""The reference fixes the simulator knows: a task suite's fixed programs, keyed by the buggy one.

A simulated model's skill is how clearly it perceives the true fix (policy.py). The
simulator cannot find that fix by running candidates (it runs no request code), so it is
told the fixes of the suites it serves: the packaged fixtures always, and whatever suites
the caller names (`SimServer(references=[...])`, `dpo-tui sim serve --references SPEC`; a
simulated campaign passes its plan's suites). A program it has no reference for gets no
fix signal: its models then rank edits by generic features only and rarely fix anything.

The reference answer is the buggy program with the fixed program's code changes applied
(docstrings and blank lines the fixed file drops are kept), so it reads like one edit.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from dpo_tui.sim.mutations import normalize


@lru_cache(maxsize=65536)
def code_key(program: str) -> str:
    """A key that ignores formatting, comments and docstrings (two programs with the same code)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return normalize(program)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            node.body = kept or [ast.Pass()]
    return ast.unparse(tree)


@dataclass(frozen=True)
class Reference:
    answer: str            # the buggy program with the fix applied
    key: str               # code_key of the fixed program
    lines: tuple[int, ...]  # lines of the buggy program the fix changes
    size: int              # how many lines of code (docstrings aside) the fix changes
    draw: float            # a per-task uniform in (0, 1), from the buggy program's text

    def difficulty(self) -> float:
        """How hard the bug is to see: a logistic draw per task, plus 0.5 per extra changed line."""
        return math.log(self.draw / (1.0 - self.draw)) + 0.5 * (self.size - 1)


def _doc_lines(program: str) -> set[int]:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return set()
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return out


def _apply_fix(buggy: str, fixed: str) -> tuple[str, tuple[int, ...], int]:
    a, b = buggy.splitlines(keepends=True), fixed.splitlines(keepends=True)
    docs = _doc_lines(buggy)
    out: list[str] = []
    lines: list[int] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        old, new = a[i1:i2], b[j1:j2]
        cosmetic = (tag == "delete" and all(i + 1 in docs or not a[i].strip() for i in range(i1, i2))) or \
                   (tag == "insert" and not "".join(new).strip())
        if tag == "equal" or cosmetic:
            out.extend(old)
            continue
        out.extend(new)
        lines.extend(range(i1 + 1, max(i2, i1 + 1) + 1))
    answer = "".join(out)
    if code_key(answer) != code_key(fixed):
        answer = fixed
    ka, kb = code_key(buggy).splitlines(), code_key(fixed).splitlines()
    size = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in
               difflib.SequenceMatcher(a=ka, b=kb, autojunk=False).get_opcodes() if tag != "equal")
    return answer, tuple(sorted(set(lines))), max(1, size)


@lru_cache(maxsize=4096)
def make_reference(buggy: str, fixed: str) -> Reference:
    answer, lines, size = _apply_fix(buggy, fixed)
    digest = int(hashlib.sha256(("difficulty:" + code_key(buggy)).encode()).hexdigest()[:12], 16)
    draw = (digest + 0.5) / 16 ** 12
    return Reference(answer, code_key(fixed), lines, size, draw)


@lru_cache(maxsize=16)
def _suite_pairs(spec: str) -> tuple[tuple[str, str], ...]:
    from dpo_tui.tasks.suites import load_suite

    return tuple((t.buggy_program, t.fixed_program) for t in load_suite(spec) if t.fixed_program)


class References:
    """Reference fixes by the code key of the buggy program."""

    def __init__(self, specs: Iterable[str] = ()) -> None:
        self._by_key: dict[str, tuple[str, str]] = {}
        self.specs: list[str] = []
        for spec in ("fixtures", *specs):
            self.add_suite(spec)

    def add_suite(self, spec: str) -> None:
        if spec in self.specs:
            return
        for buggy, fixed in _suite_pairs(spec):
            self.add(buggy, fixed)
        self.specs.append(spec)

    def add(self, buggy: str, fixed: str) -> None:
        self._by_key.setdefault(code_key(buggy), (buggy, fixed))

    def lookup(self, program: str | None) -> Reference | None:
        if program is None:
            return None
        hit = self._by_key.get(code_key(program))
        return make_reference(*hit) if hit else None

    def __len__(self) -> int:
        return len(self._by_key)
