"""The simulated models' repair policy: a softmax over candidate edits scored by features.

A conversation's most recent ```python block is the program to edit (the first one is the
original). Each candidate edit from the mutation catalogue gets a feature vector: its
operator kind, whether its line shows up in the failing output, the error kinds in that
output crossed with the edit's kind and line type, and so on. A policy is a weight per
feature plus a sharpness; a profile's skill is how informed those weights are. DPO
fine-tuning (learner.py) moves the weights. Programs the transcript already shows failing
are never proposed again.
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
EX_SCALE = 4.0          # the `ex` feature is EX_SCALE x the share of the prompt's examples reproduced
_INFORMED["ex"] = 2.0   # trusts what running an edit on the prompt's examples shows
_NAIVE["ex"] = 0.08     # barely uses that evidence: what DPO on good pairs can teach it
# check_k: how many of its likeliest edits the model "thinks through" on the prompt's examples
# (feature `ex`: the share of examples an edit reproduces). check_k is not changed by tuning.
PROFILES: dict[str, dict[str, Any]] = {
    "72b": {"weights": _INFORMED, "sharpness": 1.6, "slip": 0.03, "check_k": 40},
    "7b": {"weights": _NAIVE, "sharpness": 1.0, "slip": 0.05, "check_k": 10},
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
    programs: list[str] = []
    last_user, failure = "", ""
    for m in messages:
        text = content_text(m.get("content"))
        programs.extend(b if b.endswith("\n") else b + "\n" for b in FENCE_RE.findall(text))
        if m.get("role") == "user":
            last_user = text
            if not (REFLECT_RE.search(text) and len(text) < 400):  # a bare "reflect" keeps the failure
                failure = FENCE_RE.sub("", text)
    return Context(programs[0] if programs else None, programs[-1] if programs else None, failure,
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
    kind = edit.kind if edit.kind in KINDS else "other"
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


def options(ctx: Context) -> list[Option]:
    """Candidate edits of the latest program (and of the original: a restart), untried only."""
    out: list[Option] = []
    bases = [(ctx.latest, False)]
    if ctx.original is not None and normalize(ctx.original) != normalize(ctx.latest or ""):
        bases.append((ctx.original, True))
    for program, restart in bases:
        if program is None:
            continue
        for e in candidates(program):
            if normalize(e.program) in ctx.tried:
                continue
            out.append(Option(e, restart, features(e, ctx.failure, restart, program)))
    return out


def request_rng(params: Mapping[str, Any], messages: Any, seed: int | None, temperature: float | None,
                index: int) -> random.Random:
    if seed is None:
        return random.Random()
    blob = json.dumps([params.get("fingerprint", params.get("profile")), messages, seed, temperature, index],
                      sort_keys=True, default=str)
    return random.Random(hashlib.sha256(blob.encode()).hexdigest())


def _logits(params: Mapping[str, Any], opts: list[Option], temperature: float | None) -> list[float]:
    t = 0.7 if temperature is None else temperature
    beta = params.get("sharpness", 1.0) / max(t, 0.05)
    return [beta * score(params["weights"], o.feats) for o in opts]


def _sample(logits: list[float], rng: random.Random) -> int:
    top = max(logits)
    probs = [math.exp(x - top) for x in logits]
    r = rng.random() * sum(probs)
    for i, p in enumerate(probs):
        r -= p
        if r <= 0:
            return i
    return len(probs) - 1


def choose(params: Mapping[str, Any], opts: list[Option], rng: random.Random, temperature: float | None,
           examples: tuple = ()) -> Option | None:
    """Sample an edit; with examples, first check the k likeliest (Gumbel top-k) on them."""
    if not opts:
        return None
    greedy = temperature is not None and temperature <= 1e-6
    if not greedy and rng.random() < params.get("slip", 0.0):
        return opts[rng.randrange(len(opts))]
    logits = _logits(params, opts, temperature)
    k = int(params.get("check_k", 0))
    if examples and k > 0:
        from dpo_tui.sim.check import passes

        keyed = [(x if greedy else x - math.log(-math.log(rng.random() or 1e-12)), i) for i, x in enumerate(logits)]
        short = [i for _x, i in sorted(keyed, reverse=True)[:k]]
        counts = passes([opts[i].edit.program for i in short], examples)
        beta = params.get("sharpness", 1.0) / max(0.05, 0.7 if temperature is None else temperature)
        bonus = beta * params["weights"].get("ex", 0.0) * EX_SCALE / len(examples)
        final = [logits[i] + bonus * c for i, c in zip(short, counts)]
        if greedy:
            return opts[short[max(range(len(short)), key=lambda j: final[j])]]
        return opts[short[_sample(final, rng)]]
    if greedy:
        return opts[max(range(len(opts)), key=lambda i: logits[i])]
    return opts[_sample(logits, rng)]


def log_probs(params: Mapping[str, Any], opts: list[Option]) -> list[float]:
    """Log-probabilities of each option under the policy at temperature 0.7 (no slip)."""
    beta = params.get("sharpness", 1.0) / 0.7
    logits = [beta * score(params["weights"], o.feats) for o in opts]
    top = max(logits)
    z = top + math.log(sum(math.exp(x - top) for x in logits))
    return [x - z for x in logits]
