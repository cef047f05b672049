"""What a simulated model answers: a repaired program, a reflection, or a plain reply."""

from __future__ import annotations

import random
from typing import Any, Mapping

from dpo_tui.sim.policy import (REFLECT_RE, Context, _failure_facts, choose, insight, insight_draw, options,
                                parse_context,
                                request_rng, score)
from dpo_tui.sim.references import References

_PLAIN = (
    "This is a simulated reply from {model} (dpo-tui's loopback simulator of the Together API). "
    "It answers program-repair conversations with edited programs; for anything else it says this.",
    "Simulated {model} here: no real model ran. Send a Python program in a ```python block with the "
    "failing test output and I will propose a fix.",
)


def respond(params: Mapping[str, Any], model: str, messages: list[Mapping[str, Any]], *, seed: int | None,
            temperature: float | None, index: int = 0, refs: References | None = None) -> str:
    """The answer; `model` only names the model in a plain reply (it never changes a draw)."""
    ctx = parse_context(messages)
    rng = request_rng(messages, seed, temperature, index)
    if REFLECT_RE.search(ctx.last_user or "") and ctx.is_repair:
        return reflect(params, ctx, refs)
    if not ctx.is_repair:
        return _PLAIN[int(rng.random() * len(_PLAIN)) % len(_PLAIN)].format(model=model)
    sees = insight_draw(ctx, seed, temperature, index) < insight(params, ctx, refs)
    opt = choose(params, options(ctx, refs), rng, temperature, sees)
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


def reflect(params: Mapping[str, Any], ctx: Context, refs: References | None = None) -> str:
    lines, _w, errs = _failure_facts(ctx.failure)
    opts = options(ctx, refs)
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
