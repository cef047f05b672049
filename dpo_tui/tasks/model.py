"""The task model shared by every suite: a buggy program, its tests and a content hash.

Tests are kept in one form the sandbox harness executes without pytest (see harness.py):

- `TestSpec.source` is Python test code. With `program_module` unset it runs after the
  program in the program's own namespace (JSONL, HumanEvalFix); with `program_module`
  set (QuixBugs), the program is importable under that module name and the test code
  runs as its own module, as upstream's pytest files expect.
- `TestSpec.cases` lists the tests, each a `TestCase(name, func, index)`: `func` is a
  function the test code defines (called with no arguments, or with the `index`-th
  parameter set of its `pytest.mark.parametrize`); `func=None` means "executing the test
  code is the test" (a script such as HumanEvalFix's `check(...)`).
- `TestSpec.support` holds extra importable modules (name -> source), e.g. QuixBugs'
  `node` and `load_testdata` (with the JSON data embedded).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    func: str | None = None
    index: int | None = None


@dataclass(frozen=True)
class TestSpec:
    __test__ = False

    source: str
    cases: tuple[TestCase, ...]
    program_module: str | None = None
    support: tuple[tuple[str, str], ...] = ()
    filename: str = "tests.py"

    def payload(self) -> dict:
        return {
            "source": self.source,
            "cases": [[c.name, c.func, c.index] for c in self.cases],
            "program_module": self.program_module,
            "support": [list(s) for s in self.support],
            "filename": self.filename,
        }


@dataclass(frozen=True)
class Task:
    id: str
    suite: str
    name: str
    description: str
    buggy_program: str
    tests: TestSpec
    fixed_program: str | None = field(default=None, repr=False)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.buggy_program, self.tests))

    def program(self, variant: str) -> str:
        """The buggy or fixed program (the fixed one is for checking a suite only)."""
        if variant == "buggy":
            return self.buggy_program
        if variant == "fixed":
            if self.fixed_program is None:
                raise ValueError(f"task {self.id} has no fixed program")
            return self.fixed_program
        raise ValueError(f"unknown variant {variant!r} (buggy or fixed)")


def content_hash(program: str, tests: TestSpec) -> str:
    blob = json.dumps({"program": program, "tests": tests.payload()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
