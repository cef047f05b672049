"""Train/test split by task (never by pair), seeded, stratified by suite, and its
leakage checks between train and test. Pure functions; the split stage service turns
operator actions into events and folds them back into a `Split`."""

from __future__ import annotations

import re

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dpo_tui.domain.code import defined_functions, normalized, shingles, similarity


@dataclass(frozen=True)
class SplitTask:
    id: str
    suite: str
    name: str
    program: str
    test_inputs: frozenset[str] = frozenset()
    size: int = 0  # number of tests, for display


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    test: tuple[str, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)  # task id -> reason

    def side_of(self, task_id: str) -> str | None:
        if task_id in self.excluded:
            return "excluded"
        if task_id in set(self.train):
            return "train"
        if task_id in set(self.test):
            return "test"
        return None

    def to_json(self) -> dict:
        return {"train": sorted(self.train), "test": sorted(self.test), "excluded": dict(sorted(self.excluded.items()))}

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make_split(tasks: Sequence[SplitTask], *, seed: int, test_fraction: float = 0.3,
               stratify_by_suite: bool = True) -> Split:
    """Each stratum's task ids are sorted, shuffled with a generator seeded by (seed, stratum),
    and the first round(n x test_fraction) go to test: the same tasks and seed give the same split."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    strata: dict[str, list[str]] = defaultdict(list)
    for t in tasks:
        strata[t.suite if stratify_by_suite else "*"].append(t.id)
    train: list[str] = []
    test: list[str] = []
    for stratum in sorted(strata):
        ids = sorted(set(strata[stratum]))
        random.Random(f"{seed}:{stratum}").shuffle(ids)
        n_test = round(len(ids) * test_fraction)
        if len(ids) >= 2:
            n_test = min(max(n_test, 1), len(ids) - 1)
        test.extend(ids[:n_test])
        train.extend(ids[n_test:])
    return Split(tuple(sorted(train)), tuple(sorted(test)), {})


def move(split: Split, task_id: str, to: str) -> Split:
    if to not in ("train", "test"):
        raise ValueError(f"a task moves to train or test, not {to!r}")
    known = set(split.train) | set(split.test) | set(split.excluded)
    if task_id not in known:
        raise ValueError(f"unknown task {task_id!r}")
    train = [t for t in split.train if t != task_id]
    test = [t for t in split.test if t != task_id]
    (train if to == "train" else test).append(task_id)
    excluded = {k: v for k, v in split.excluded.items() if k != task_id}
    return Split(tuple(sorted(train)), tuple(sorted(test)), excluded)


def exclude(split: Split, task_id: str, reason: str) -> Split:
    if not reason.strip():
        raise ValueError("excluding a task needs a reason")
    if task_id not in set(split.train) | set(split.test) | set(split.excluded):
        raise ValueError(f"unknown task {task_id!r}")
    return Split(tuple(t for t in split.train if t != task_id), tuple(t for t in split.test if t != task_id),
                 {**split.excluded, task_id: reason})


@dataclass(frozen=True)
class LeakFinding:
    kind: str  # identical_program | near_identical_program | shared_test_inputs | same_name | contained_name
    train_id: str
    test_id: str
    score: float
    evidence: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _name_keys(task: SplitTask) -> set[str]:
    keys = {task.name.lower().strip()}
    keys |= {f.lower() for f in defined_functions(task.program)}
    return {k for k in keys if k and k not in {"main", "check", "solution", "helper", "__init__"}}


def _name_words(name: str) -> tuple[str, ...]:
    """A name as its words: snake_case, camelCase and path parts split (find_in_sorted -> find, in, sorted)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.split("/")[-1])
    return tuple(w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w)


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """`inner`'s words appear in `outer` in order (find_in_sorted inside find_first_in_sorted)."""
    it = iter(outer)
    return all(w in it for w in inner)


def _contained_names(tr: SplitTask, test: list[SplitTask], already: set[str]) -> list[LeakFinding]:
    """Train/test tasks whose names differ but one's words lie inside the other's, in order:
    a name of two or more words, or of one word of six letters or more (never `sort` in `sort_list`)."""
    out = []
    mine = {k: _name_words(k) for k in _name_keys(tr)}
    for te in test:
        if te.id in already:
            continue
        for a, wa in mine.items():
            hit = None
            for b in _name_keys(te):
                wb = _name_words(b)
                for inner, outer, x, y in ((wa, wb, a, b), (wb, wa, b, a)):
                    if (inner != outer and (len(inner) >= 2 or (inner and len(inner[0]) >= 6))
                            and len(outer) > len(inner) and _contains(outer, inner)):
                        hit = (x, y)
            if hit:
                out.append(LeakFinding("contained_name", tr.id, te.id, 0.5,
                                       f"the name {hit[0]} lies inside the name {hit[1]}"))
                break
    return out


def find_leaks(tasks: Iterable[SplitTask], split: Split, *, near_threshold: float = 0.8,
               min_shared_inputs: int = 2) -> list[LeakFinding]:
    """Every train/test pair of tasks that share a program, most of a program, test inputs
    or a task or function name. Pairs are compared through an index of 3-gram shingles,
    so unrelated programs never meet."""
    by_id = {t.id: t for t in tasks}
    train = [by_id[i] for i in split.train if i in by_id]
    test = [by_id[i] for i in split.test if i in by_id]
    findings: list[LeakFinding] = []
    index: dict[str, list[SplitTask]] = defaultdict(list)
    for t in test:
        for sh in shingles(t.program):
            index[sh].append(t)
    names: dict[str, list[SplitTask]] = defaultdict(list)
    inputs: dict[str, list[SplitTask]] = defaultdict(list)
    for t in test:
        for key in _name_keys(t):
            names[key].append(t)
        for value in t.test_inputs:
            inputs[value].append(t)
    for tr in train:
        findings.extend(_program_leaks(tr, index, near_threshold))
        shared_names: dict[str, list[str]] = defaultdict(list)
        for key in _name_keys(tr):
            for te in names.get(key, ()):
                shared_names[te.id].append(key)
        for te_id, keys in sorted(shared_names.items()):
            findings.append(LeakFinding("same_name", tr.id, te_id, 1.0, f"both define or are named {', '.join(sorted(keys))}"))
        findings.extend(_contained_names(tr, test, set(shared_names)))
        shared_inputs: dict[str, list[str]] = defaultdict(list)
        for value in tr.test_inputs:
            for te in inputs.get(value, ()):
                shared_inputs[te.id].append(value)
        for te_id, values in sorted(shared_inputs.items()):
            if len(values) >= min_shared_inputs:
                shown = "; ".join(sorted(values)[:3])
                findings.append(LeakFinding("shared_test_inputs", tr.id, te_id, float(len(values)),
                                            f"{len(values)} shared test inputs, e.g. {shown[:200]}"))
    return sorted(findings, key=lambda f: (f.train_id, f.test_id, f.kind))


def _program_leaks(tr: SplitTask, index: Mapping[str, list[SplitTask]], threshold: float) -> list[LeakFinding]:
    candidates = {te.id: te for sh in shingles(tr.program) for te in index.get(sh, ())}
    out = []
    norm = normalized(tr.program)
    for te in candidates.values():
        if normalized(te.program) == norm:
            out.append(LeakFinding("identical_program", tr.id, te.id, 1.0, "the same program up to comments and layout"))
            continue
        score = similarity(tr.program, te.program)
        if score >= threshold:
            out.append(LeakFinding("near_identical_program", tr.id, te.id, score,
                                   f"token 3-gram similarity {score:.2f} >= {threshold:.2f}"))
    return out
