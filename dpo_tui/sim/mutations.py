"""A catalogue of mutation operators: every single edit of a Python program they propose.

Operators work on tokens of one line (or insert/delete one line) and never look at any
reference solution. Each candidate records its operator kind and the line it touches so
the policy can score it; candidates that do not compile are dropped.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from dataclasses import dataclass
from functools import lru_cache

CMP_SWAPS = {"<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="), "==": ("!=", "<="),
             "!=": ("==",), "is": ("is not",), "in": ("not in",)}
ARITH_SWAPS = {"+": ("-", "*"), "-": ("+",), "*": ("+", "/", "//"), "/": ("//", "*"), "//": ("/", "%"),
               "%": ("//",), "**": ("*",), "+=": ("-=",), "-=": ("+=",), "^": ("&", "|"), "^=": ("&=", "|="),
               "&": ("|", "^"), "|": ("&",), "<<": (">>",), ">>": ("<<",)}
BUILTIN_SWAPS = {"any": ("all",), "all": ("any",), "min": ("max",), "max": ("min",), "True": ("False",),
                 "False": ("True",), "append": ("extend",), "extend": ("append",)}
KINDS = ("cmp", "arith", "const", "bound", "bool", "negate", "swap", "var", "attr", "unwrap", "fill",
         "builtin", "slice", "return", "delete", "insert")
OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Edit:
    kind: str
    line: int          # 1-based line of the program the edit touches (insert: the new line's number)
    old: str
    new: str
    program: str

    def describe(self) -> str:
        if self.kind == "delete":
            return f"removed line {self.line}: `{self.old.strip()}`"
        if self.kind == "insert":
            return f"added line {self.line}: `{self.new.strip()}`"
        return f"line {self.line}: `{self.old.strip()}` -> `{self.new.strip()}`"


@lru_cache(maxsize=32768)
def normalize(program: str) -> str:
    """A formatting-independent key for a program (its AST, or the stripped text)."""
    try:
        return ast.unparse(ast.parse(program))
    except (SyntaxError, ValueError):
        return "\n".join(ln.rstrip() for ln in program.strip().splitlines() if ln.strip())


def _tokens_by_line(program: str) -> dict[int, list[tokenize.TokenInfo]]:
    out: dict[int, list[tokenize.TokenInfo]] = {}
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(program).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return out
    for t in toks:
        if t.start[0] == t.end[0] and t.type in (tokenize.OP, tokenize.NAME, tokenize.NUMBER):
            out.setdefault(t.start[0], []).append(t)
    return out


def _names(program: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """(local variables, attribute names, containers, function names) of the program."""
    local, attrs, containers, funcs = set(), set(), set(), set()
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return local, attrs, containers, funcs
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            funcs.add(node.name)
            local.update(a.arg for a in node.args.args)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            local.add(node.id)
        elif isinstance(node, ast.Attribute):
            attrs.add(node.attr)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, (ast.List, ast.Set, ast.Dict)) or (
                    isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("set", "list")):
                containers.add(node.targets[0].id)
    return local - funcs, attrs, containers, funcs


def _code_lines(program: str) -> list[int]:
    """Lines holding code (not blank, comment, or docstring/string-only statements)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return []
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines = program.splitlines()
    return [i for i in range(1, len(lines) + 1)
            if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")]


def _atom_end(toks: list[tokenize.TokenInfo], i: int) -> int:
    """Index just past the atom starting at toks[i] (a name/number with trailers), or i."""
    if toks[i].type not in (tokenize.NAME, tokenize.NUMBER) or keyword.iskeyword(toks[i].string):
        return i
    j = i + 1
    while j < len(toks):
        s = toks[j].string
        if s == "." and j + 1 < len(toks) and toks[j + 1].type == tokenize.NAME:
            j += 2
        elif s in ("(", "["):
            k = _match(toks, j)
            if k < 0:
                return i
            j = k + 1
        else:
            break
    return j


def _match(toks: list[tokenize.TokenInfo], j: int) -> int:
    depth = 0
    for k in range(j, len(toks)):
        s = toks[k].string
        if s in OPENERS:
            depth += 1
        elif s in CLOSERS:
            depth -= 1
            if depth == 0:
                return k
    return -1


class _Builder:
    def __init__(self, program: str) -> None:
        self.program = program
        self.lines = program.splitlines()
        self.out: list[Edit] = []
        self.seen: set[str] = {normalize(program)}

    def replace(self, kind: str, lineno: int, c0: int, c1: int, text: str) -> None:
        old = self.lines[lineno - 1]
        new = old[:c0] + text + old[c1:]
        if new != old:
            self._add(kind, lineno, old, new, self.lines[:lineno - 1] + [new] + self.lines[lineno:])

    def _add(self, kind: str, lineno: int, old: str, new: str, lines: list[str]) -> None:
        prog = "\n".join(lines) + "\n"
        try:
            compile(prog, "<candidate>", "exec")
        except (SyntaxError, ValueError):
            return
        key = normalize(prog)
        if key in self.seen:
            return
        self.seen.add(key)
        self.out.append(Edit(kind, lineno, old, new, prog))

    def delete(self, lineno: int) -> None:
        self._add("delete", lineno, self.lines[lineno - 1], "", self.lines[:lineno - 1] + self.lines[lineno:])

    def insert(self, lineno: int, text: str) -> None:
        self._add("insert", lineno, "", text, self.lines[:lineno - 1] + [text] + self.lines[lineno - 1:])


def _line_ops(b: _Builder, ln: int, toks: list[tokenize.TokenInfo], names: tuple) -> None:
    local, attrs, _containers, funcs = names
    for i, t in enumerate(toks):
        s, (_r, c0), c1 = t.string, t.start, t.end[1]
        prev = toks[i - 1].string if i else ""
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        if s in CMP_SWAPS and t.type in (tokenize.OP, tokenize.NAME):
            if s == "in" and prev == "not":
                continue
            for alt in CMP_SWAPS[s]:
                b.replace("cmp", ln, c0, c1, alt)
        elif s in ARITH_SWAPS and t.type == tokenize.OP:
            for alt in ARITH_SWAPS[s]:
                b.replace("arith", ln, c0, c1, alt)
        elif s in ("and", "or"):
            b.replace("bool", ln, c0, c1, "or" if s == "and" else "and")
        elif s == "not" and nxt != "in":
            b.replace("negate", ln, c0, toks[i + 1].start[1], "")
        elif t.type == tokenize.NUMBER and s.isdigit():
            n = int(s)
            for alt in {n + 1, n - 1} - {-1}:
                b.replace("const", ln, c0, c1, str(alt))
            if prev in ("+", "-") and i >= 2:  # drop a `+ 1` / `- 1`
                b.replace("bound", ln, toks[i - 2].end[1], c1, "")
            if nxt in ("+", "-", "*") and i + 2 < len(toks) and prev in ("", "return", "=", "(", ","):
                b.replace("const", ln, c0, toks[i + 2].start[1], "")  # drop a `1 + `
        elif s in BUILTIN_SWAPS and (nxt == "(" or s in ("True", "False")):
            for alt in BUILTIN_SWAPS[s]:
                b.replace("builtin", ln, c0, c1, alt)
        if t.type == tokenize.NAME and (not keyword.iskeyword(s) or s in ("True", "None")) and prev != ".":
            _name_ops(b, ln, toks, i, local, funcs)
        elif t.type == tokenize.NAME and prev == "." and nxt != "(":
            for alt in sorted(attrs - {s}):
                b.replace("attr", ln, c0, c1, alt)
        if s in (")", "]") or (t.type in (tokenize.NAME, tokenize.NUMBER) and not keyword.iskeyword(s)):
            if nxt in (")", "]", ":", ",") and prev != "def":
                for delta in (" + 1", " - 1"):
                    b.replace("bound", ln, c1, c1, delta)
        if s == "[" and nxt == "]":
            for alt in ["[]"] + sorted(local)[:8]:
                b.replace("fill", ln, c0, toks[i + 1].end[1], f"[{alt}]")
    _swap_ops(b, ln, toks)


def _name_ops(b: _Builder, ln: int, toks: list, i: int, local: set, funcs: set) -> None:
    t = toks[i]
    s, c0, c1 = t.string, t.start[1], t.end[1]
    nxt = toks[i + 1].string if i + 1 < len(toks) else ""
    if s in local and nxt not in ("=",) and not (i + 1 < len(toks) and nxt == "," and toks[0].string == "for"):
        for alt in sorted(local - {s}):
            b.replace("var", ln, c0, c1, alt)
    if s in ("True", "None") and toks[0].string in ("while", "if", "elif"):
        for alt in sorted(local):
            b.replace("var", ln, c0, c1, alt)
    if nxt == "(":  # f(x) -> x
        k = _match(toks, i + 1)
        inner = toks[i + 2:k] if k > 0 else []
        if inner and all(x.string != "," for x in inner) and k > i + 2:
            b.replace("unwrap", ln, c0, toks[k].end[1], b.lines[ln - 1][inner[0].start[1]:inner[-1].end[1]])
    if s in local and nxt in (")", ":", ",", "") and toks[0].string in ("for", "return", "yield") or \
            (s in local and nxt in (",", ")") and i > 0 and toks[i - 1].string in ("(", ",")):
        for sl in ("[1:]", "[:-1]"):
            b.replace("slice", ln, c1, c1, sl)


def _swap_ops(b: _Builder, ln: int, toks: list) -> None:
    line = b.lines[ln - 1]
    for i in range(len(toks)):  # A op B -> B op A
        e = _atom_end(toks, i)
        if e == i or e >= len(toks) - 1 or (i and toks[i - 1].string == "."):
            continue
        op = toks[e].string
        if op in ("+", "*", "<", ">", "<=", ">=", "-", "%", "==") or op == ",":
            f = _atom_end(toks, e + 1)
            if f > e + 1:
                a_txt = line[toks[i].start[1]:toks[e - 1].end[1]]
                b_txt = line[toks[e + 1].start[1]:toks[f - 1].end[1]]
                if a_txt != b_txt:
                    b.replace("swap", ln, toks[i].start[1], toks[f - 1].end[1],
                              b_txt + line[toks[e - 1].end[1]:toks[e + 1].start[1]] + a_txt)
    for j, t in enumerate(toks):  # swap adjacent arguments of a call / subscript
        if t.string in "([" and j:
            k = _match(toks, j)
            if k < 0:
                continue
            args, depth, start = [], 0, j + 1
            for m in range(j + 1, k):
                s = toks[m].string
                depth += s in OPENERS
                depth -= s in CLOSERS
                if s == "," and depth == 0:
                    args.append((start, m - 1))
                    start = m + 1
            args.append((start, k - 1))
            for (a0, a1), (b0, b1) in zip(args, args[1:]):
                if a1 >= a0 and b1 >= b0:
                    ta = line[toks[a0].start[1]:toks[a1].end[1]]
                    tb = line[toks[b0].start[1]:toks[b1].end[1]]
                    b.replace("swap", ln, toks[a0].start[1], toks[b1].end[1],
                              tb + line[toks[a1].end[1]:toks[b0].start[1]] + ta)


def _structural_ops(b: _Builder, code: list[int], names: tuple) -> None:
    local, _attrs, containers, funcs = names
    for ln in code:
        text = b.lines[ln - 1]
        stripped = text.strip()
        indent = text[: len(text) - len(text.lstrip())]
        if not stripped.endswith(":") and not stripped.startswith(("def ", "return", "else", "elif")):
            b.delete(ln)
        head = stripped.split("(")[0]
        if "(" in stripped and "=" not in stripped.split("(")[0] and head.isidentifier() and head in funcs:
            b.replace("return", ln, len(indent), len(indent), "return ")
    _insert_ops(b, code, local, containers)


def _indent(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def _insert_points(b: _Builder, code: list[int]) -> list[tuple[int, str, str]]:
    """(line to insert before, indent, loop text): each loop body's end and before each return."""
    points: list[tuple[int, str, str]] = []
    for ln in code:
        text = b.lines[ln - 1]
        s = text.strip()
        if s.startswith("return"):
            points.append((ln, _indent(text), ""))
        if s.startswith(("for ", "while ", "if ", "elif ", "else")) and s.endswith(":"):
            ind = len(_indent(text))
            body = [x for x in code if x > ln]
            last = ln
            for x in body:
                if len(_indent(b.lines[x - 1])) <= ind:
                    break
                last = x
            if last > ln:
                points.append((last + 1, _indent(b.lines[ln]), "\n".join(b.lines[ln - 1:last])))
    return points


def _insert_ops(b: _Builder, code: list[int], local: set, containers: set) -> None:
    items = sorted(local)
    for at, indent, loop in _insert_points(b, code):
        for c in sorted(containers):
            meth = "add" if f"{c} = set(" in b.program else "append"
            for x in items:
                if x != c:
                    b.insert(at, f"{indent}{c}.{meth}({x})")
        in_loop = [n for n in items if re.search(r"\b" + re.escape(n) + r"\b", loop)]
        for a in in_loop:
            if a in containers:
                continue
            for x in in_loop:
                if a != x:
                    b.insert(at, f"{indent}{a} = {x}")


@lru_cache(maxsize=512)
def candidates(program: str) -> tuple[Edit, ...]:
    """Every distinct compiling single edit of `program` the catalogue proposes."""
    b = _Builder(program)
    names = _names(program)
    code = _code_lines(program)
    by_line = _tokens_by_line(program)
    for ln in code:
        toks = by_line.get(ln, [])
        if toks and toks[0].string != "def":
            _line_ops(b, ln, toks, names)
        elif toks:
            _swap_ops(b, ln, toks)
    _structural_ops(b, code, names)
    return tuple(b.out)
