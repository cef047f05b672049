"""The simulated models' repair policy: a softmax over candidate edits scored by features.

A conversation's most recent ```python block is the program to edit (the original is the
program the first message shows). Each candidate edit from the mutation catalogue gets a
feature vector: its operator kind, whether its line shows up in the failing output, the
error kinds in that output crossed with the edit's kind and line type, and so on. When the
simulator knows the task's reference fix (references.py), that fix is one of the
candidates, and on each request the model perceives it with a probability set by its
profile's `insight`, the bug's difficulty and the failed attempts so far; a perceived fix
scores `weights["fix"]` more. The answer is drawn from softmax(sharpness / T * score), with
a `slip` rate of a random edit. Nothing is executed: the simulator runs no candidate code.

Every random draw comes from a stream fixed by the request (common random numbers), never
by the model, so base and tuned differ only where their weights rank edits differently.
DPO fine-tuning (learner.py) moves the weights, `fix` among them. Programs the transcript
already shows failing are never proposed again.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping

from dpo_tui.sim.mutations import KINDS, Edit, candidates, normalize
from dpo_tui.sim.references import Reference, References, code_key

FENCE_RE = re.compile(r"```(?:python|py|Python)[ \t]*\n(.*?)```", re.S)
ERRORS = {
    "rec": ("RecursionError", "maximum recursion depth"),
    "loop": ("Timeout", "timed out", "timeout", "hang", "TimeLimit", "time limit"),
    "index": ("IndexError", "KeyError", "out of range"),
    "type": ("TypeError", "AttributeError", "NameError", "UnboundLocalError", "ValueError", "ZeroDivisionError"),
    "assert": ("AssertionError", "assert ", "expected", "!=", " == "),
}
REFLECT_RE = re.compile(r"reflect|what went wrong|why did .* fail|analy[sz]e (the|your) (failure|attempt)", re.I)

# Skill profiles. Weights are generic debugging priors, not tuned to any benchmark's answers.
_INFORMED = {
    "k:cmp": 1.6, "k:bound": 1.3, "k:const": 1.0, "k:swap": 1.1, "k:arith": 1.0, "k:var": 0.5, "k:attr": 0.6,
    "k:bool": 0.8, "k:negate": 0.6, "k:builtin": 0.9, "k:unwrap": 0.7, "k:fill": 0.8, "k:slice": 0.6,
    "k:return": 0.6, "k:insert": 0.3, "k:delete": -1.0, "k:other": -1.0,
    "trace": 1.6, "names": 1.2, "ctl": 0.5, "ret": 0.3, "restart": 0.8, "reccall": 0.4,
    "rec&reccall": 1.8, "rec&swap": 0.6, "rec&slice": 0.8, "rec&bound": 0.6, "loop&ctl": 1.0, "loop&arith": 1.2,
    "loop&cmp": 0.8, "index&bound": 1.2, "index&cmp": 0.6, "index&var": 0.6, "type&var": 0.8, "type&attr": 1.0,
    "type&unwrap": 0.8, "assert&ret": 0.4, "assert&insert": 0.4, "assert&fill": 0.4,
}
_NAIVE = {  # a weaker model: flat, partly misleading priors; barely reads the traceback
    "k:cmp": 0.4, "k:bound": 0.2, "k:const": 0.6, "k:swap": 0.1, "k:arith": 0.5, "k:var": 0.9, "k:attr": 0.3,
    "k:bool": 0.3, "k:negate": 0.3, "k:builtin": 0.3, "k:unwrap": 0.2, "k:fill": 0.1, "k:slice": 0.1,
    "k:return": 0.2, "k:insert": 0.4, "k:delete": 0.5, "k:other": 0.0,
    "trace": 0.3, "names": 0.2, "ctl": 0.2, "ret": 0.2, "restart": -0.5, "reccall": 0.1,
}
# Skill: how clearly a profile perceives the true fix of a bug it has a reference for
# (references.py). Per request the model "sees" the fix with probability
# sigmoid(insight - difficulty + feedback * failed_attempts) (a CRN draw); when it does, the
# reference edit carries the feature `fix` = 1 and its score gains weights["fix"]. `insight`
# and `feedback` are what the model can read (DPO does not change them); the weights,
# `fix` among them, are what DPO moves (learner.py). Calibrated in README "The simulator".
_INFORMED["fix"] = 6.0
_NAIVE["fix"] = 4.0
PROFILES: dict[str, dict[str, Any]] = {
    "72b": {"weights": _INFORMED, "sharpness": 1.6, "slip": 0.03, "insight": 1.3, "feedback": 0.15},
    "7b": {"weights": _NAIVE, "sharpness": 1.0, "slip": 0.05, "insight": 0.0, "feedback": 0.1},
}


def base_params(profile: str) -> dict[str, Any]:
    p = PROFILES[profile]
    return {"profile": profile, **{k: (dict(v) if isinstance(v, dict) else v) for k, v in p.items()}}


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


@dataclass
class Context:
    """What a repair request says: the programs so far and the latest failure output."""

    original: str | None
    latest: str | None
    failure: str
    tried: set[str] = field(default_factory=set)
    last_user: str = ""

    @property
    def is_repair(self) -> bool:
        return self.latest is not None


def parse_context(messages: Iterable[Mapping[str, Any]]) -> Context:
    """The original program is the last block of the first message that has one (a task's
    description may show helper code before the program); the latest is the last block."""
    programs: list[str] = []
    original: str | None = None
    last_user, failure = "", ""
    for m in messages:
        text = content_text(m.get("content"))
        blocks = [b if b.endswith("\n") else b + "\n" for b in FENCE_RE.findall(text)]
        if blocks and original is None:
            original = blocks[-1]
            blocks = blocks[-1:]
        programs.extend(blocks)
        if m.get("role") == "user":
            last_user = text
            if not (REFLECT_RE.search(text) and len(text) < 400):  # a bare "reflect" keeps the failure
                failure = FENCE_RE.sub("", text)
    return Context(original, programs[-1] if programs else None, failure,
                   {normalize(p) for p in programs}, last_user)


_LOC_RE = re.compile(r'File "([^"]+)", line (\d+)|([\w./-]+\.py):(\d+)')


def _is_test_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"


@lru_cache(maxsize=256)
def _failure_facts(failure: str) -> tuple[frozenset[int], frozenset[str], tuple[str, ...]]:
    lines = {int(m.group(2) or m.group(4)) for m in _LOC_RE.finditer(failure)
             if not _is_test_file(m.group(1) or m.group(3))}
    words = frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", failure))
    errs = tuple(k for k, pats in ERRORS.items() if any(p in failure for p in pats))
    return frozenset(lines), words, errs


def _funcs(program: str) -> set[str]:
    return set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", program, re.M))


def features(edit: Edit, failure: str, restart: bool, program: str) -> dict[str, float]:
    lines, words, errs = _failure_facts(failure)
    text = (edit.old or edit.new).strip()
    kind = edit.kind if edit.kind in KINDS or edit.kind == "rewrite" else "other"
    f: dict[str, float] = {f"k:{kind}": 1.0}
    if edit.line in lines or (len(text) > 6 and text in failure):
        f["trace"] = 1.0
    idents = [w for w in re.findall(r"[A-Za-z_]\w*", text) if w not in ("return", "if", "while", "for", "in",
                                                                         "and", "or", "not", "def", "else")]
    if idents:
        f["names"] = sum(w in words for w in idents) / len(idents)
    if text.startswith(("if ", "while ", "elif ", "for ")):
        f["ctl"] = 1.0
    if text.startswith(("return", "yield")):
        f["ret"] = 1.0
    if restart:
        f["restart"] = 1.0
    if any(re.search(rf"\b{re.escape(fn)}\s*\(", text) for fn in _funcs(program)) and not text.startswith("def"):
        f["reccall"] = 1.0
    for e in errs:
        f[f"{e}&{kind}"] = 1.0
        for extra in ("ctl", "ret", "reccall"):
            if extra in f:
                f[f"{e}&{extra}"] = 1.0
    return f


def score(weights: Mapping[str, float], f: Mapping[str, float]) -> float:
    return sum(weights.get(k, 0.0) * v for k, v in f.items())


@dataclass(frozen=True)
class Option:
    edit: Edit
    restart: bool
    feats: dict[str, float]
    is_fix: bool = False   # the edit is the reference fix (it gains `fix` when the model sees it)


def _reference_edit(ref: Reference, original: str) -> Edit:
    lines = original.splitlines()
    line = ref.lines[0] if ref.lines else 1
    new = ref.answer.splitlines()
    old = lines[line - 1] if 0 < line <= len(lines) else ""
    return Edit("rewrite", line, old, new[line - 1] if 0 < line <= len(new) else "", ref.answer)


def _may_be(e: Edit, ref: Reference) -> bool:
    """A cheap filter before comparing code keys: the edit touches (next to) a line the fix changes."""
    return not ref.lines or any(abs(e.line - n) <= 1 for n in ref.lines)


def options(ctx: Context, refs: References | None = None) -> list[Option]:
    """Candidate edits of the latest program (and of the original: a restart), untried only;
    with a known reference fix, that fix is always among them (as a rewrite if no catalogued
    edit produces it)."""
    out: list[Option] = []
    ref = refs.lookup(ctx.original) if refs is not None else None
    found = False
    bases = [(ctx.latest, False)]
    if ctx.original is not None and normalize(ctx.original) != normalize(ctx.latest or ""):
        bases.append((ctx.original, True))
    for program, restart in bases:
        if program is None:
            continue
        for e in candidates(program):
            if normalize(e.program) in ctx.tried:
                continue
            hit = ref is not None and not found and _may_be(e, ref) and code_key(e.program) == ref.key
            found = found or hit
            out.append(Option(e, restart, features(e, ctx.failure, restart, program), hit))
    if ref is not None and not found and ctx.original is not None and normalize(ref.answer) not in ctx.tried:
        restart = normalize(ctx.original) != normalize(ctx.latest or "")
        e = _reference_edit(ref, ctx.original)
        out.append(Option(e, restart, features(e, ctx.failure, restart, ctx.original), True))
    return out


def insight(params: Mapping[str, Any], ctx: Context, refs: References | None) -> float:
    """The chance the model sees the true fix on this request: its reading skill against the
    bug's difficulty, better after each failed attempt the transcript shows."""
    ref = refs.lookup(ctx.original) if refs is not None else None
    if ref is None:
        return 0.0
    attempts = min(4, max(0, len(ctx.tried) - 1))
    x = float(params.get("insight", 0.0)) - ref.difficulty() + float(params.get("feedback", 0.0)) * attempts
    return 1.0 / (1.0 + math.exp(-x))


def request_rng(messages: Any, seed: int | None, temperature: float | None, index: int) -> random.Random:
    """Common random numbers: the stream depends on the request (conversation, seed,
    temperature, choice index), never on the model, so two models draw the same numbers and
    differ only where their weights rank the edits differently. No seed: fresh randomness
    (greedy decoding still gets a stream fixed by the conversation)."""
    greedy = temperature is not None and temperature <= 1e-6
    if seed is None and not greedy:
        return random.Random()
    blob = json.dumps([messages, seed, temperature, index], sort_keys=True, default=str)
    return random.Random(hashlib.sha256(blob.encode()).hexdigest())


def _beta(params: Mapping[str, Any], temperature: float | None) -> float:
    return float(params.get("sharpness", 1.0)) / max(0.7 if temperature is None else temperature, 0.05)


def _scores(params: Mapping[str, Any], opts: list[Option], sees: bool) -> list[float]:
    w = params["weights"]
    bonus = w.get("fix", 0.0) if sees else 0.0
    return [score(w, o.feats) + (bonus if o.is_fix else 0.0) for o in opts]


def insight_draw(ctx: Context, seed: int | None, temperature: float | None, index: int) -> float:
    """The uniform the insight chance is compared with: one per rollout (the original program
    and the request's seed), so a model that misses a bug tends to keep missing it, and each
    failed attempt's feedback raises the chance it crosses."""
    return request_rng(["insight", ctx.original], seed, temperature, index).random()


def choose(params: Mapping[str, Any], opts: list[Option], rng: random.Random, temperature: float | None,
           sees: bool = False) -> Option | None:
    """Gumbel-max sampling from softmax(beta * score): every draw is made in the same order
    whatever the model, so equal weights give equal answers."""
    if not opts:
        return None
    u_slip, u_pick = rng.random(), rng.random()
    noise = [-math.log(-math.log(rng.random() or 1e-12) or 1e-12) for _ in opts]
    greedy = temperature is not None and temperature <= 1e-6
    if not greedy and u_slip < params.get("slip", 0.0):
        return opts[min(len(opts) - 1, int(u_pick * len(opts)))]
    scores = _scores(params, opts, sees)
    if greedy:
        return opts[max(range(len(opts)), key=lambda i: scores[i])]
    beta = _beta(params, temperature)
    return opts[max(range(len(opts)), key=lambda i: beta * scores[i] + noise[i])]


def _softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    z = sum(e)
    return [v / z for v in e]


def fix_probability(params: Mapping[str, Any], opts: list[Option], p_insight: float,
                    temperature: float | None = 0.7) -> float:
    """The exact chance that `choose` returns the reference fix (slip, insight and softmax)."""
    i = next((j for j, o in enumerate(opts) if o.is_fix), None)
    if i is None:
        return 0.0
    beta = _beta(params, temperature)
    seen = _softmax([beta * x for x in _scores(params, opts, True)])[i]
    unseen = _softmax([beta * x for x in _scores(params, opts, False)])[i]
    slip = float(params.get("slip", 0.0))
    return slip / len(opts) + (1 - slip) * (p_insight * seen + (1 - p_insight) * unseen)


def log_probs(params: Mapping[str, Any], opts: list[Option], sees: bool = False) -> list[float]:
    """Log-probabilities of each option under the policy at temperature 0.7 (no slip)."""
    return [math.log(max(p, 1e-300)) for p in _softmax([_beta(params, 0.7) * x for x in _scores(params, opts, sees)])]
