"""QuixBugs (Python side) from a checkout in its upstream layout.

40 tasks: `python_programs/<task>.py` (buggy), `correct_python_programs/<task>.py`
(fixed, only for checking the suite), `python_testcases/test_<task>.py` (pytest files).
The upstream pytest modules are used unchanged: the sandbox harness executes them with a
tiny `pytest` stand-in (parametrize, skip, approx, use_correct=False, run_slow=False), the
candidate importable as `python_programs.<task>`, `node` from `python_testcases/node.py`
and `load_testdata` with the task's JSON cases embedded. So the two cases upstream skips
(the slow knapsack case, levenshtein case 4) are skipped here too, by the test code itself.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from dpo_tui.errors import InputError
from dpo_tui.tasks.model import Task, TestCase, TestSpec

_LOAD_TESTDATA = '''import json
_DATA = json.loads({data!r})


def load_json_testcases(algorithm):
    return _DATA[algorithm]
'''


def load_quixbugs(root: Path) -> list[Task]:
    root = Path(root)
    programs, fixed, testdir = root / "python_programs", root / "correct_python_programs", root / "python_testcases"
    for folder in (programs, fixed, testdir, root / "json_testcases"):
        if not folder.is_dir():
            raise InputError(f"{root} is not a QuixBugs checkout: {folder.name}/ is missing")
    node_source = (testdir / "node.py").read_text()
    names = sorted(p.stem for p in programs.glob("*.py") if p.stem != "node" and not p.stem.endswith("_test"))
    if not names:
        raise InputError(f"{programs} holds no programs")
    return [_load_task(root, name, node_source) for name in names]


def _load_task(root: Path, name: str, node_source: str) -> Task:
    test_path = root / "python_testcases" / f"test_{name}.py"
    if not test_path.is_file():
        raise InputError(f"QuixBugs task {name}: {test_path} is missing")
    test_source = test_path.read_text()
    buggy = (root / "python_programs" / f"{name}.py").read_text()
    fixed_path = root / "correct_python_programs" / f"{name}.py"
    json_path = root / "json_testcases" / f"{name}.json"
    cases, data = _cases(test_source, json_path, test_path)
    support = [("node", node_source)]
    if data is not None:
        support.append(("load_testdata", _LOAD_TESTDATA.format(data=json.dumps({name: data}))))
    spec = TestSpec(source=test_source, cases=tuple(cases), program_module=f"python_programs.{name}",
                    support=tuple(support), filename=f"test_{name}.py")
    description = _docstring(buggy) or f"Fix the function {name}."
    if data is None:  # graph tasks: the tests build graphs with Node, never shown otherwise
        description += ("\n\nThe tests build their inputs with this class (node.py):\n\n"
                        f"```python\n{node_source.strip()}\n```")
    return Task(id=f"quixbugs/{name}", suite="quixbugs", name=name, description=description,
                buggy_program=buggy, tests=spec,
                fixed_program=fixed_path.read_text() if fixed_path.is_file() else None)


def _cases(test_source: str, json_path: Path, test_path: Path) -> tuple[list[TestCase], list | None]:
    try:
        tree = ast.parse(test_source)
    except SyntaxError as exc:
        raise InputError(f"{test_path}:{exc.lineno}: cannot parse the test module") from exc
    data = None
    cases: list[TestCase] = []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test")):
            continue
        if any(_is_parametrize(d) for d in node.decorator_list):
            if data is None:
                if not json_path.is_file():
                    raise InputError(f"{test_path}: parametrized tests but {json_path} is missing")
                data = [json.loads(line) for line in json_path.read_text().splitlines() if line.strip()]
            cases += [TestCase(f"{node.name}[{i}]", node.name, i) for i in range(len(data))]
        else:
            cases.append(TestCase(node.name, node.name, None))
    if not cases:
        raise InputError(f"{test_path}: no test functions found")
    return cases, data


def _is_parametrize(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "parametrize"


def _docstring(source: str) -> str:
    """The trailing (or leading) module-level string of a QuixBugs program: its spec."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return ""
    strings = [n.value.value for n in body if isinstance(n, ast.Expr)
               and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]
    return strings[-1].strip() if strings else ""
