"""Loading suites: ids, counts, hashes, the JSONL format and its errors."""

from __future__ import annotations

import json

import pytest

from dpo_tui.errors import InputError
from dpo_tui.tasks.suites import load_suite
from tests.tasks.upstream import HUMANEVALFIX, QUIXBUGS

GRAPH = {"breadth_first_search", "depth_first_search", "detect_cycle", "minimum_spanning_tree",
         "reverse_linked_list", "shortest_path_length", "shortest_path_lengths", "shortest_paths",
         "topological_ordering"}


def test_quixbugs_40_tasks_with_278_tests():
    tasks = load_suite(f"quixbugs:{QUIXBUGS}")
    assert len(tasks) == 40 and len({t.id for t in tasks}) == 40
    assert all(t.id == f"quixbugs/{t.name}" and t.suite == "quixbugs" for t in tasks)
    assert sum(len(t.tests.cases) for t in tasks) == 278
    graph = {t.name for t in tasks if not any(name == "load_testdata" for name, _ in t.tests.support)}
    assert graph == GRAPH
    gcd = next(t for t in tasks if t.name == "gcd")
    assert "Greatest Common Divisor" in gcd.description
    assert "class Node" in next(t for t in tasks if t.name == "detect_cycle").description
    assert [c.name for c in gcd.tests.cases][:2] == ["test_gcd[0]", "test_gcd[1]"]
    assert all(t.fixed_program and t.fixed_program != t.buggy_program for t in tasks)


def test_content_hash_is_stable_and_covers_program_and_tests():
    a = load_suite(f"quixbugs:{QUIXBUGS}")
    b = load_suite(f"quixbugs:{QUIXBUGS}")
    assert [t.content_hash for t in a] == [t.content_hash for t in b]
    assert len({t.content_hash for t in a}) == 40 and all(len(t.content_hash) == 64 for t in a)


def test_humanevalfix_164_tasks_from_file_or_folder():
    tasks = load_suite(f"humanevalfix:{HUMANEVALFIX}")
    assert len(tasks) == 164
    assert tasks[0].id == "humanevalfix/Python/0" and tasks[0].name == "has_close_elements"
    assert [t.id for t in load_suite(f"humanevalfix:{HUMANEVALFIX / 'humanevalpack.jsonl'}")] == [t.id for t in tasks]
    assert all(len(t.tests.cases) == 1 and t.tests.cases[0].name == "check" for t in tasks)


def test_fixtures_suite():
    tasks = load_suite("fixtures")
    assert 12 <= len(tasks) <= 20
    assert all(t.id.startswith("fixtures/") and t.suite == "fixtures" and t.fixed_program for t in tasks)
    assert all(len(t.tests.cases) >= 3 for t in tasks)


def write(tmp_path, *rows) -> str:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return f"jsonl:{path}"


ROW = {"id": "add", "description": "Add two numbers.", "buggy_program": "def add(a, b):\n    return a - b\n",
       "test_code": "def test_small():\n    assert add(1, 2) == 3\n\ndef test_zero():\n    assert add(0, 0) == 0\n"}


def test_jsonl_test_functions_and_script_tests(tmp_path):
    script = dict(ROW, id="script", test_code="assert add(2, 2) == 4\n")
    tasks = load_suite(write(tmp_path, ROW, script))
    assert [c.name for c in tasks[0].tests.cases] == ["test_small", "test_zero"]
    assert [c.name for c in tasks[1].tests.cases] == ["tests"] and tasks[1].name == "add"
    assert tasks[0].fixed_program is None and tasks[0].suite == "jsonl"


@pytest.mark.parametrize("line, message", [
    ("{not json", "suite.jsonl:2: not valid JSON"),
    (json.dumps(dict(ROW, id="x", test_code=None)), "suite.jsonl:2: field 'test_code' must be a non-empty string"),
    (json.dumps({k: v for k, v in ROW.items() if k != "buggy_program"} | {"id": "y"}),
     "suite.jsonl:2: field 'buggy_program'"),
    (json.dumps(dict(ROW, id="z", test_code="def test_(:\n")), "suite.jsonl:2: field 'test_code': syntax error"),
    (json.dumps(ROW), "suite.jsonl:2: field 'id' repeats 'add' from line 1"),
    ("[1, 2]", "suite.jsonl:2: expected a JSON object"),
])
def test_bad_jsonl_lines_name_file_line_and_field(tmp_path, line, message):
    with pytest.raises(InputError) as err:
        load_suite(write(tmp_path, ROW, line))
    assert message in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("spec, message", [
    ("nosuch:/x", "bad suite spec"), ("quixbugs", "bad suite spec"),
    ("quixbugs:/nonexistent", "does not exist"), ("jsonl:/nonexistent.jsonl", "does not exist"),
])
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        load_suite(spec)


def test_bad_suite_on_the_command_line_exits_2(dpo_tui_proc, tmp_path):
    proc = dpo_tui_proc("tasks", "list", "--suite", f"quixbugs:{tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dpo-tui: error:") and "not a QuixBugs checkout" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tasks_list_json(cli):
    code, out, _ = cli("tasks", "list", "--suite", "fixtures", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["suite"] == "fixtures"
    assert {"id", "name", "tests", "content_hash"} <= set(doc["tasks"][0])
    code, out, _ = cli("tasks", "list", "--suite", f"quixbugs:{QUIXBUGS}")
    assert code == 0 and out.strip().endswith("40 tasks")


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--cpu-limit", "-1"], "--cpu-limit must be positive"),
])
def test_check_rejects_bad_numbers(cli, args, message):
    code, out, err = cli("tasks", "check", "--suite", "fixtures", "--variant", "buggy", *args)
    assert code == 2 and message in err and out == ""


def test_check_rejects_unknown_variant(dpo_tui_proc):
    proc = dpo_tui_proc("tasks", "check", "--suite", "fixtures", "--variant", "other")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
