"""Paired comparisons of simulated models: per-task pass rates, intervals, and the A/A check.

Base, tuned and control answer the same requests (same messages and seeds) and, since the
simulator's random numbers depend on the request and not on the model, draw the same
numbers: the per-task difference of their pass rates is a low-variance paired statistic.
Its 95% interval here is the normal approximation for the mean of per-task means.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from together import Together

from dpo_tui.sim import evaluate as ev
from dpo_tui.tasks.model import Task


def paired_ci(diffs: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean of `diffs` (one value per task)."""
    if not diffs:
        return 0.0, 0.0, 0.0
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, mean, mean
    half = z * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def per_task_pass(client: Together, model: str, tasks: list[Task], runner: ev.CachedRunner, *,
                  seeds: list[int], temperature: float = 0.7) -> tuple[dict[str, float], list[str]]:
    """First-attempt pass rate per task over `seeds`, and every reply (for the A/A check)."""
    rates: dict[str, float] = {}
    replies: list[str] = []
    for t in tasks:
        _msgs, atts = ev.first_attempts(client, model, t, runner, seeds=seeds, temperature=temperature)
        rates[t.id] = sum(1 for _r, _p, rep in atts if rep is not None and rep.passed) / max(1, len(atts))
        replies.extend(r for r, _p, _rep in atts)
    return rates, replies


def diffs(a: dict[str, float], b: dict[str, float]) -> list[float]:
    return [a[k] - b[k] for k in sorted(a)]


@dataclass
class PairedResult:
    pairs: int
    held_out_tasks: int
    seeds: int
    base: dict[str, float]
    tuned: dict[str, float]
    control: dict[str, float]
    aa_identical: bool
    jobs: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        mean = lambda d: round(statistics.fmean(d.values()), 4) if d else 0.0  # noqa: E731
        _m, tlo, thi = paired_ci(diffs(self.tuned, self.base))
        _m, clo, chi = paired_ci(diffs(self.control, self.base))
        return {"base_pass1": mean(self.base), "tuned_pass1": mean(self.tuned), "control_pass1": mean(self.control),
                "tuned_minus_base_ci": [round(tlo, 4), round(thi, 4)],
                "control_minus_base_ci": [round(clo, 4), round(chi, 4)],
                "aa_identical": self.aa_identical, "pairs": self.pairs}

    def lines(self) -> list[str]:
        s = self.summary()
        return [f"{self.pairs} preference pairs; held-out first-attempt pass@1 over {self.held_out_tasks} tasks x "
                f"{self.seeds} seeds: base {s['base_pass1']:.3f}, DPO-tuned {s['tuned_pass1']:.3f}, "
                f"label-swapped control {s['control_pass1']:.3f}",
                f"paired 95% intervals: tuned - base {s['tuned_minus_base_ci']}, "
                f"control - base {s['control_minus_base_ci']}; A/A identical: {self.aa_identical}"]


def paired_learning(client: Together, train: list[Task], held: list[Task], runner: ev.CachedRunner,
                    workdir: Path, *, pair_seeds: list[int], eval_seeds: list[int], aa_model: str,
                    base_path: str, epochs: int = 3, lr: float = 1e-5, beta: float = 0.1) -> PairedResult:
    """Pairs from the served base on `train`, a tuned and a label-swapped job, all three served
    and judged on `held` with the same seeds; A/A: `aa_model` (same weights) answers alike."""
    base_name, stop_base = ev.serve(client, "paired-base", base_path)
    try:
        pairs = ev.build_pairs(client, base_name, train, runner, seeds=pair_seeds)
        good, bad = workdir / "pairs.jsonl", workdir / "pairs_swapped.jsonl"
        good.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        bad.write_text("".join(json.dumps(p) + "\n" for p in ev.swapped(pairs)), encoding="utf-8")
        tuned_job = ev.fine_tune(client, good, suffix="paired-dpo", epochs=epochs, lr=lr, beta=beta)
        ctrl_job = ev.fine_tune(client, bad, suffix="paired-swapped", epochs=epochs, lr=lr, beta=beta)
        tuned_name, stop_t = ev.serve(client, "paired-tuned", f"projects/proj_sim/models/{tuned_job.api_model_object_id}")
        ctrl_name, stop_c = ev.serve(client, "paired-control", f"projects/proj_sim/models/{ctrl_job.api_model_object_id}")
        try:
            base, base_replies = per_task_pass(client, base_name, held, runner, seeds=eval_seeds)
            tuned, _r = per_task_pass(client, tuned_name, held, runner, seeds=eval_seeds)
            control, _r = per_task_pass(client, ctrl_name, held, runner, seeds=eval_seeds)
            _aa, aa_replies = per_task_pass(client, aa_model, held, runner, seeds=eval_seeds)
        finally:
            stop_t()
            stop_c()
    finally:
        stop_base()
    return PairedResult(len(pairs), len(held), len(eval_seeds), base, tuned, control, aa_replies == base_replies,
                        {"tuned": tuned_job.id, "control": ctrl_job.id})
