"""Program text normalisation shared by leakage checks and pair filters."""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
from functools import lru_cache

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


@lru_cache(maxsize=8192)
def code_tokens(source: str) -> tuple[str, ...]:
    """Python tokens without comments, docstrings, blank lines and indentation. Falls back
    to whitespace splitting for text that does not tokenize (model output can be anything)."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return tuple(source.split())
    out: list[str] = []
    prev_type = tokenize.NEWLINE
    for tok in toks:
        if tok.type in _SKIP:
            if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                prev_type = tokenize.NEWLINE
            continue
        # a string standing alone as a statement is a docstring
        if tok.type == tokenize.STRING and prev_type == tokenize.NEWLINE:
            prev_type = tokenize.STRING
            continue
        out.append(tok.string)
        prev_type = tok.type
    return tuple(out)


def normalized(source: str) -> str:
    """One text per program up to comments, docstrings and layout."""
    return " ".join(code_tokens(source))


@lru_cache(maxsize=8192)
def shingles(source: str, n: int = 3) -> frozenset[str]:
    toks = code_tokens(source)
    if len(toks) < n:
        return frozenset([" ".join(toks)]) if toks else frozenset()
    return frozenset(" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of token 3-gram sets (1.0 for the same normalised program)."""
    sa, sb = shingles(a), shingles(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def defined_functions(source: str) -> frozenset[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    return frozenset(n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


_TRIVIAL = {"0", "1", "-1", "2", "True", "False", "None", "''", '""', "[]", "{}", "()", "set()"}


def literal_inputs(test_source: str) -> frozenset[str]:
    """Literal arguments of calls in test code (the test inputs), as canonical reprs.
    Trivial values (numbers under 100, [], '', True, ...) are left out: sharing them is no evidence."""
    try:
        tree = ast.parse(test_source)
    except (SyntaxError, ValueError):
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for arg in node.args:
            try:
                value = ast.literal_eval(arg)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, bool | int | float) and abs(value) < 100:
                continue  # small numbers are in every test suite: sharing them is no evidence
            text = repr(value)
            if text not in _TRIVIAL and len(text) <= 2000:
                found.add(text)
    return frozenset(found)


def is_identifier_like(word: str) -> bool:
    return word.isidentifier() and not keyword.iskeyword(word)
