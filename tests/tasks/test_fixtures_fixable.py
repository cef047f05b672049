"""Every fixtures task is one mutation away from its fix, for the operators the simulated
model uses (operator swaps, off-by-one, and/or, not, swapped variables, missing return).
Checked on the AST, without running anything: the fixed program is one of the buggy
program's single mutants."""

from __future__ import annotations

import ast
import copy

import pytest

from dpo_tui.tasks.suites import load_suite

SWAPS = {ast.Lt: [ast.LtE, ast.Gt, ast.GtE], ast.LtE: [ast.Lt, ast.GtE, ast.Gt], ast.Gt: [ast.GtE, ast.Lt, ast.LtE],
         ast.GtE: [ast.Gt, ast.LtE, ast.Lt], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.In: [ast.NotIn],
         ast.NotIn: [ast.In], ast.Is: [ast.IsNot], ast.IsNot: [ast.Is], ast.Add: [ast.Sub], ast.Sub: [ast.Add],
         ast.Mult: [ast.Div, ast.FloorDiv], ast.Div: [ast.Mult, ast.FloorDiv], ast.FloorDiv: [ast.Div],
         ast.And: [ast.Or], ast.Or: [ast.And]}


def _edits(node: ast.AST, names: set[str]):
    """Single-point edits of one node: yields zero-argument functions that apply one."""
    for new in SWAPS.get(type(getattr(node, "op", None)), []):
        yield lambda n=node, new=new: setattr(n, "op", new())
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in SWAPS.get(type(op), []):
                yield lambda n=node, i=i, new=new: n.ops.__setitem__(i, new())
    if isinstance(node, ast.Constant) and type(node.value) is int:
        for d in (-1, 1):
            yield lambda n=node, d=d: setattr(n, "value", n.value + d)
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        for other in sorted(names - {node.id}):
            yield lambda n=node, o=other: setattr(n, "id", o)
    if isinstance(node, ast.If):
        yield lambda n=node: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test))
        if isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not):
            yield lambda n=node: setattr(n, "test", n.test.operand)
    for field in ("args", "comparators"):  # off by one on an argument or a compared value
        value = getattr(node, field, None)
        for i, child in enumerate(value if isinstance(value, list) else []):
            for op in (ast.Add, ast.Sub):
                yield lambda n=node, f=field, i=i, c=child, op=op: getattr(n, f).__setitem__(
                    i, ast.BinOp(c, op(), ast.Constant(1)))
    for field in ("args", "comparators", "left", "right", "value", "slice"):  # `e - 1` -> `e`
        value = getattr(node, field, None)
        for i, child in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(child, ast.BinOp) and isinstance(child.right, ast.Constant) and child.right.value == 1:
                if isinstance(value, list):
                    yield lambda n=node, f=field, i=i, c=child: getattr(n, f).__setitem__(i, c.left)
                else:
                    yield lambda n=node, f=field, c=child: setattr(n, f, c.left)


def mutants(source: str):
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    count = len(list(ast.walk(tree)))
    for k in range(count):
        probe = copy.deepcopy(tree)
        node = list(ast.walk(probe))[k]
        for j, _ in enumerate(list(_edits(node, names))):
            copy_ = copy.deepcopy(tree)
            target = list(ast.walk(copy_))[k]
            list(_edits(target, names))[j]()
            yield ast.unparse(ast.fix_missing_locations(copy_))
        parent_bodies = [getattr(node, "body", None), getattr(node, "orelse", None)]
        for body in (b for b in parent_bodies if isinstance(b, list)):
            for i, stmt in enumerate(body):  # missing return: `expr` -> `return expr`
                if isinstance(stmt, ast.Expr):
                    copy_ = copy.deepcopy(tree)
                    target = list(ast.walk(copy_))[k]
                    owner = target.body if body is node.body else target.orelse
                    owner[i] = ast.Return(owner[i].value)
                    yield ast.unparse(ast.fix_missing_locations(copy_))


@pytest.mark.parametrize("task", load_suite("fixtures"), ids=lambda t: t.id)
def test_fixed_program_is_a_single_mutant_of_the_buggy_one(task):
    fixed = ast.unparse(ast.parse(task.fixed_program))
    assert ast.unparse(ast.parse(task.buggy_program)) != fixed
    assert fixed in set(mutants(task.buggy_program)), f"{task.id} needs more than one mutation"


def test_two_mutations_away_is_not_found():
    fixed = "def f(a, b):\n    return a + b if a < b else b"
    assert "def f(a, b):\n    return a + b if a < b else b" not in set(mutants("def f(a, b):\n    return a - b if a > b else b\n"))
    assert fixed in set(mutants("def f(a, b):\n    return a - b if a < b else b\n"))
