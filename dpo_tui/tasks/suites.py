"""Loading task suites from a SPEC: `quixbugs:PATH`, `humanevalfix:PATH`, `jsonl:PATH`, `fixtures`.

The generic JSONL format (one task per line):

    {"id": "...", "description": "...", "buggy_program": "...", "test_code": "...",
     "fixed_program": "... (optional)", "name": "... (optional)"}

`test_code` runs after the program in the same namespace and fails by raising. Where it
defines top-level `test_*` functions, each is one test (called with no arguments);
otherwise running the whole of `test_code` is a single test named `tests`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from dpo_tui.errors import InputError
from dpo_tui.paths import fixtures_dir
from dpo_tui.tasks.model import Task, TestCase, TestSpec
from dpo_tui.tasks.quixbugs import load_quixbugs

SUITE_KINDS = ("quixbugs", "humanevalfix", "jsonl", "fixtures")
_REQUIRED = ("id", "description", "buggy_program", "test_code")


def load_suite(spec: str) -> list[Task]:
    kind, _, rest = spec.partition(":")
    if kind == "fixtures":
        path = Path(rest) if rest else fixtures_dir() / "suites" / "fixtures.jsonl"
        return load_jsonl(path, suite="fixtures", id_prefix="fixtures/")
    if kind not in SUITE_KINDS or not rest:
        raise InputError(f"bad suite spec {spec!r}: expected quixbugs:PATH, humanevalfix:PATH, jsonl:PATH or fixtures")
    path = Path(rest).expanduser()
    if not path.exists():
        raise InputError(f"suite path {path} does not exist")
    if kind == "quixbugs":
        return load_quixbugs(path)
    if kind == "humanevalfix":
        return load_humanevalfix(path / "humanevalpack.jsonl" if path.is_dir() else path)
    return load_jsonl(path, suite="jsonl")


def _read_lines(path: Path):
    if path.is_dir():
        raise InputError(f"{path} is a folder, expected a .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, row


def _field(row: dict, key: str, where: str, *, optional: bool = False) -> str | None:
    value = row.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value.strip() and key != "description"):
        raise InputError(f"{where}: field {key!r} must be a non-empty string")
    return value


def load_jsonl(path: Path, *, suite: str = "jsonl", id_prefix: str = "") -> list[Task]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"suite file {path} does not exist")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, row in _read_lines(path):
        where = f"{path}:{lineno}"
        values = {key: _field(row, key, where) for key in _REQUIRED}
        fixed = _field(row, "fixed_program", where, optional=True)
        task_id = id_prefix + values["id"]
        if task_id in seen:
            raise InputError(f"{where}: field 'id' repeats {values['id']!r} from line {seen[task_id]}")
        seen[task_id] = lineno
        name = _field(row, "name", where, optional=True) or _first_function(values["buggy_program"]) \
            or values["id"].rsplit("/", 1)[-1]
        tests = _jsonl_tests(values["test_code"], f"{where}: field 'test_code'")
        tasks.append(Task(id=task_id, suite=suite, name=name, description=values["description"],
                          buggy_program=values["buggy_program"], tests=tests, fixed_program=fixed))
    if not tasks:
        raise InputError(f"{path}: no tasks")
    return tasks


def _jsonl_tests(test_code: str, where: str) -> TestSpec:
    try:
        tree = ast.parse(test_code)
    except SyntaxError as exc:
        raise InputError(f"{where}: syntax error on its line {exc.lineno}: {exc.msg}") from exc
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    cases = tuple(TestCase(n, n) for n in names) if names else (TestCase("tests"),)
    return TestSpec(source=test_code, cases=cases)


def _first_function(program: str) -> str | None:
    try:
        body = ast.parse(program).body
    except SyntaxError:
        return None
    return next((n.name for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)


def load_humanevalfix(path: Path) -> list[Task]:
    """HumanEvalFix (HumanEvalPack, Python): the buggy body under the docstring prompt,
    tested by the row's `check(...)` script (one test, named `check`)."""
    if not path.is_file():
        raise InputError(f"{path} is not a humanevalpack.jsonl file")
    tasks = []
    for lineno, row in _read_lines(path):
        where = f"{path}:{lineno}"
        v = {k: _field(row, k, where) for k in ("task_id", "prompt", "buggy_solution",
                                                 "canonical_solution", "test", "entry_point")}
        spec = TestSpec(source=v["test"], cases=(TestCase("check"),), filename="check.py")
        description = (f"The function `{v['entry_point']}` has a bug: it does not do what its "
                       "docstring says. Fix it.")
        tasks.append(Task(id=f"humanevalfix/{v['task_id']}", suite="humanevalfix", name=v["entry_point"],
                          description=description, buggy_program=v["prompt"] + v["buggy_solution"],
                          tests=spec, fixed_program=v["prompt"] + v["canonical_solution"]))
    if not tasks:
        raise InputError(f"{path}: no tasks")
    return tasks


def task_from_code(task_id: str, program: str, test_code: str, *, description: str = "",
                   fixed_program: str | None = None, suite: str = "adhoc") -> Task:
    """A task built in code, with JSONL semantics for `test_code` (tests, demos, the simulator)."""
    tests = _jsonl_tests(test_code, f"task {task_id}: test_code")
    name = _first_function(program) or task_id.rsplit("/", 1)[-1]
    return Task(id=task_id, suite=suite, name=name, description=description, buggy_program=program,
                tests=tests, fixed_program=fixed_program)
