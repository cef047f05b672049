from __future__ import annotations

import pytest

from dpo_tui.domain.code import literal_inputs, normalized, similarity
from dpo_tui.domain.split import SplitTask, exclude, find_leaks, make_split, move


def task(i: int, suite: str = "s", program: str | None = None, name: str | None = None, inputs=()) -> SplitTask:
    prog = program or f"def f{i}(x):\n    return x * {i} + {i * 7}\n"
    return SplitTask(f"{suite}/{i}", suite, name or f"f{i}", prog, frozenset(inputs))


def test_split_is_seeded_stratified_and_by_task():
    tasks = [task(i, "a") for i in range(20)] + [task(i, "b") for i in range(10)]
    s1, s2 = make_split(tasks, seed=7), make_split(list(reversed(tasks)), seed=7)
    assert s1 == s2 and s1.hash() == s2.hash()
    assert len(s1.test) == 6 + 3 and len(s1.train) == 14 + 7
    assert not set(s1.train) & set(s1.test)
    assert make_split(tasks, seed=8).hash() != s1.hash()


def test_move_and_exclude_change_the_hash():
    tasks = [task(i) for i in range(10)]
    s = make_split(tasks, seed=1)
    moved = move(s, s.test[0], "train")
    assert moved.side_of(s.test[0]) == "train" and moved.hash() != s.hash()
    ex = exclude(moved, s.train[0], "flaky tests")
    assert ex.side_of(s.train[0]) == "excluded" and ex.excluded == {s.train[0]: "flaky tests"}
    with pytest.raises(ValueError, match="needs a reason"):
        exclude(s, s.train[0], " ")
    with pytest.raises(ValueError, match="unknown task"):
        move(s, "nope", "test")


def test_normalisation_ignores_comments_docstrings_and_layout():
    a = 'def g(x):\n    """Doc."""\n    # comment\n    return x+1\n'
    b = "def g(x):\n\n    return x + 1   # other comment\n"
    assert normalized(a) == normalized(b)
    assert similarity(a, b) == 1.0
    assert similarity(a, "def h(y):\n    while y:\n        y -= 2\n    return y\n") < 0.3


def test_leakage_checks_find_each_kind_with_evidence():
    gcd = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n"
    bubble = ("def bubble(xs):\n    n = len(xs)\n    for i in range(n):\n        for j in range(0, n - i - 1):\n"
              "            if xs[j] > xs[j + 1]:\n                xs[j], xs[j + 1] = xs[j + 1], xs[j]\n    return xs\n")
    bubble_edit = bubble.replace("range(0, n - i - 1)", "range(0, n - i - 2)")  # one constant changed
    tasks = [
        SplitTask("quixbugs/gcd", "quixbugs", "gcd", gcd),
        SplitTask("humanevalfix/13", "humanevalfix", "greatest_common_divisor", gcd),
        SplitTask("x/bubble", "x", "bubble_a", bubble),
        SplitTask("x/near", "x", "bubble_b", bubble_edit),
        SplitTask("x/inputs_a", "x", "alpha", "def alpha(s):\n    return s[::-1]\n", frozenset({"'hello'", "[3, 1, 2]"})),
        SplitTask("x/inputs_b", "x", "beta", "def beta(s):\n    return sorted(s)\n", frozenset({"'hello'", "[3, 1, 2]"})),
    ]
    from dpo_tui.domain.split import Split

    split = Split(train=("quixbugs/gcd", "x/bubble", "x/inputs_a"), test=("humanevalfix/13", "x/near", "x/inputs_b"))
    kinds = {(f.kind, f.train_id, f.test_id) for f in find_leaks(tasks, split)}
    assert ("identical_program", "quixbugs/gcd", "humanevalfix/13") in kinds
    assert ("same_name", "quixbugs/gcd", "humanevalfix/13") in kinds  # both define gcd
    assert ("near_identical_program", "x/bubble", "x/near") in kinds
    assert ("same_name", "x/bubble", "x/near") in kinds  # both define bubble
    assert ("shared_test_inputs", "x/inputs_a", "x/inputs_b") in kinds
    assert all(f.evidence for f in find_leaks(tasks, split))


def test_no_findings_for_unrelated_tasks():
    tasks = [task(i) for i in range(30)]
    split = make_split(tasks, seed=3)
    assert [f for f in find_leaks(tasks, split) if f.kind != "near_identical_program"] == []


def test_literal_inputs_skip_trivial_values():
    src = "def test_a():\n    assert f([5, 3, 9], 'abc') == 1\n    assert f(0) == []\n"
    assert literal_inputs(src) == frozenset({"[5, 3, 9]", "'abc'"})


def test_a_name_whose_words_lie_inside_another_tasks_name_is_a_finding_on_quixbugs():
    from dpo_tui.campaign.suites import split_task
    from dpo_tui.domain.split import Split
    from dpo_tui.tasks.suites import load_suite
    from tests.tasks.upstream import QUIXBUGS

    tasks = [split_task(t) for t in load_suite(f"quixbugs:{QUIXBUGS}")]
    ids = {t.id for t in tasks}
    split = Split(train=tuple(sorted(ids - {"quixbugs/find_first_in_sorted"})), test=("quixbugs/find_first_in_sorted",))
    found = [f for f in find_leaks(tasks, split) if f.kind == "contained_name"]
    assert [(f.train_id, f.test_id) for f in found] == [("quixbugs/find_in_sorted", "quixbugs/find_first_in_sorted")]
    assert "find_in_sorted lies inside the name find_first_in_sorted" in found[0].evidence


def test_short_common_words_inside_other_names_are_not_findings():
    from dpo_tui.domain.split import Split

    prog = "def {0}(xs):\n    return xs\n"
    tasks = [SplitTask("a/sort", "a", "sort", prog.format("sort")), SplitTask("b/sort_list", "b", "sort_list",
             "def sort_list(ys):\n    ys.sort()\n    return list(ys)\n"),
             SplitTask("a/gcd", "a", "gcd", prog.format("gcd")), SplitTask("b/lcm_gcd", "b", "lcm_gcd",
             "def lcm_gcd(p, q):\n    return p * q\n")]
    split = Split(train=("a/sort", "a/gcd"), test=("b/sort_list", "b/lcm_gcd"))
    assert [f for f in find_leaks(tasks, split) if f.kind == "contained_name"] == []
