"""What a simulated model answers: a repaired program, a reflection, or a plain reply."""

from __future__ import annotations

import random
from typing import Any, Mapping

from dpo_tui.sim.check import extract_examples
from dpo_tui.sim.policy import (REFLECT_RE, Context, _failure_facts, choose, options, parse_context,
                                request_rng, score)

_PLAIN = (
    "This is a simulated reply from {model} (dpo-tui's loopback simulator of the Together API). "
    "It answers program-repair conversations with edited programs; for anything else it says this.",
    "Simulated {model} here: no real model ran. Send a Python program in a ```python block with the "
    "failing test output and I will propose a fix.",
)


def respond(params: Mapping[str, Any], model: str, messages: list[Mapping[str, Any]], *, seed: int | None,
            temperature: float | None, index: int = 0) -> str:
    ctx = parse_context(messages)
    rng = request_rng(params, messages, seed, temperature, index)
    if REFLECT_RE.search(ctx.last_user or "") and ctx.is_repair:
        return reflect(params, ctx)
    if not ctx.is_repair:
        return rng.choice(_PLAIN).format(model=model)
    examples = extract_examples(ctx.failure, ctx.original or ctx.latest or "")
    opt = choose(params, options(ctx), rng, temperature, examples)
    if opt is None:
        return ("I have no new edit to propose: every change I can think of was already tried.\n\n"
                f"```python\n{ctx.latest}```\n")
    why = "Going back to the original program. " if opt.restart else ""
    lead = _lead(ctx, opt.edit.line, rng)
    return (f"{lead}{why}Here is the corrected program:\n\n```python\n{opt.edit.program}```\n\n"
            f"Change: {opt.edit.describe()}.\n")


def _lead(ctx: Context, line: int, rng: random.Random) -> str:
    lines, _w, errs = _failure_facts(ctx.failure)
    if errs:
        return f"The failure looks like a {errs[0]} problem; I edited line {line}. "
    return rng.choice(("Looking at the failing tests, ", "Based on the test output, ", ""))


def reflect(params: Mapping[str, Any], ctx: Context) -> str:
    lines, _w, errs = _failure_facts(ctx.failure)
    opts = options(ctx)
    best = sorted(opts, key=lambda o: -score(params["weights"], o.feats))[:3]
    parts = ["Reflection (simulated):"]
    parts.append(f"- The tests fail with signs of: {', '.join(errs) if errs else 'wrong results'}.")
    if lines:
        parts.append(f"- The output points at line(s) {', '.join(map(str, sorted(lines)[:5]))}.")
    tried = len(ctx.tried) - 1
    if tried > 0:
        parts.append(f"- {tried} earlier attempt(s) in this conversation did not pass; I will not repeat them.")
    if best:
        parts.append("- Next I would try: " + "; ".join(o.edit.describe() for o in best) + ".")
    return "\n".join(parts) + "\n"
