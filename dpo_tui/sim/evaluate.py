"""Measure the simulated models through the real SDK: skill gap and what DPO tuning does.

Uses the product's own task suites, sandboxed test runner and repair-agent loop
(dpo_tui.tasks). The simulator only ever sees the chat messages; the suite's fixed
programs are never sent to it.

    72B vs 7B:   rollouts (max_iters candidate calls) on every task, solved fraction.
    Learning:    sample first-attempt candidates from the base 7B on *train* tasks, test them,
                 pair better (chosen) against worse (rejected), upload, fine-tune with DPO
                 (and a control with chosen/rejected swapped), serve base, tuned and control
                 on dedicated endpoints, and compare pass@1 on *held-out* tasks.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from together import Together

from dpo_tui.sim.mutations import normalize
from dpo_tui.tasks.agent import extract_program, initial_messages, run_rollout
from dpo_tui.tasks.model import Task
from dpo_tui.tasks.sandbox import Limits, TestReport, run_tests

BASE7 = "Qwen/Qwen2.5-7B-Instruct"


class CachedRunner:
    """run_tests with a cache keyed by task and normalised program (a program is tested once)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits(test_cpu_seconds=0.2)
        self.cache: dict[tuple[str, str], TestReport] = {}
        self.runs = 0

    def __call__(self, task: Task, program: str) -> TestReport:
        key = (task.id, normalize(program))
        if key not in self.cache:
            self.runs += 1
            self.cache[key] = run_tests(task, program, limits=self.limits)
        return self.cache[key]


def split(tasks: list[Task], held_out_every: int = 2) -> tuple[list[Task], list[Task]]:
    """Deterministic train / held-out split by a hash of the task id."""
    train, held = [], []
    for t in sorted(tasks, key=lambda t: t.id):
        (held if zlib.crc32(t.id.encode()) % held_out_every == 0 else train).append(t)
    return train, held


def chat_fn(client: Together, model: str, seed: int, temperature: float) -> Callable[[list[dict]], str]:
    def chat(messages: list[dict]) -> str:
        r = client.chat.completions.create(model=model, messages=messages, seed=seed, temperature=temperature)
        return r.choices[0].message.content or ""
    return chat


def solve_rate(client: Together, model: str, tasks: list[Task], runner: CachedRunner, *, seeds: list[int],
               max_iters: int = 4, temperature: float = 0.7) -> tuple[float, dict[str, float]]:
    """Fraction of (task, seed) rollouts that end with every test passing."""
    per: dict[str, float] = {}
    for t in tasks:
        wins = 0
        for s in seeds:
            res = run_rollout(t, chat_fn(client, model, s, temperature), max_iters=max_iters, runner=runner,
                              buggy_report=runner(t, t.buggy_program))
            wins += res.passed
        per[t.name] = wins / len(seeds)
    return sum(per.values()) / max(1, len(per)), per


def first_attempts(client: Together, model: str, task: Task, runner: CachedRunner, *, seeds: list[int],
                   temperature: float = 0.7) -> tuple[list[dict], list[tuple[str, str | None, TestReport | None]]]:
    """The first prompt of a rollout and, per seed, (reply, program, report)."""
    msgs = initial_messages(task, runner(task, task.buggy_program))
    out = []
    for s in seeds:
        reply = chat_fn(client, model, s, temperature)(msgs)
        prog = extract_program(reply).program
        out.append((reply, prog, runner(task, prog) if prog else None))
    return msgs, out


def pass_at_1(client: Together, model: str, tasks: list[Task], runner: CachedRunner, *, seeds: list[int],
              temperature: float = 0.7) -> float:
    hits = total = 0
    for t in tasks:
        _msgs, atts = first_attempts(client, model, t, runner, seeds=seeds, temperature=temperature)
        hits += sum(1 for _r, _p, rep in atts if rep is not None and rep.passed)
        total += len(atts)
    return hits / max(1, total)


def build_pairs(client: Together, model: str, tasks: list[Task], runner: CachedRunner, *, seeds: list[int],
                per_task: int = 4, temperature: float = 1.0) -> list[dict]:
    """Preference lines from first attempts: one that passes more tests than the buggy program
    (chosen) against one that does not improve on it (rejected)."""
    lines: list[dict] = []
    for t in tasks:
        msgs, atts = first_attempts(client, model, t, runner, seeds=seeds, temperature=temperature)
        floor = runner(t, t.buggy_program).tests_passed
        uniq: dict[str, int] = {}
        for reply, _prog, rep in atts:
            if rep is not None:
                uniq.setdefault(reply, rep.tests_passed + (rep.passed * 1000))
        ranked = sorted(uniq.items(), key=lambda kv: -kv[1])
        good = [r for r, sc in ranked if sc > floor]
        bad = [r for r, sc in ranked if sc <= floor]
        for i in range(min(per_task, len(good) * len(bad))):
            lines.append({"input": {"messages": msgs},
                          "preferred_output": [{"role": "assistant", "content": good[i % len(good)]}],
                          "non_preferred_output": [{"role": "assistant", "content": bad[i % len(bad)]}]})
    return lines


def swapped(lines: list[dict]) -> list[dict]:
    return [{**ln, "preferred_output": ln["non_preferred_output"], "non_preferred_output": ln["preferred_output"]}
            for ln in lines]


def fine_tune(client: Together, path: Path, *, suffix: str, epochs: int = 3, lr: float = 1e-5,
              beta: float = 0.1, timeout: float = 120.0) -> Any:
    f = client.files.upload(file=path, purpose="fine-tune")
    if f.processing_status != "COMPLETED":
        raise RuntimeError(f"{path.name}: upload ended {f.processing_status}")
    job = client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo", dpo_beta=beta,
                                    lora=True, n_epochs=epochs, batch_size=8, learning_rate=lr, suffix=suffix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.retrieve(job.id)
        if job.status in ("completed", "cancelled", "error", "user_error"):
            break
        time.sleep(0.05)
    if job.status != "completed":
        raise RuntimeError(f"fine-tune {job.id} ended {job.status}")
    return job


def serve(client: Together, name: str, model_path: str, timeout: float = 30.0) -> tuple[str, Callable[[], None]]:
    """Create an endpoint with one started deployment; returns its chat model name and a stopper."""
    ep = client.endpoints.create(name=name)
    dep = client.endpoints.deployments.create(ep.id, name="d1", model=model_path,
                                              autoscaling={"minReplicas": 1, "maxReplicas": 1})
    client.endpoints.update(ep.id, traffic_split=[{"deploymentId": dep.id, "weight": 1}], update_mask="trafficSplit")
    deadline = time.monotonic() + timeout
    while client.endpoints.deployments.retrieve(dep.id, endpoint_id=ep.id).status.state != "DEPLOYMENT_STATE_READY":
        if time.monotonic() > deadline:
            raise RuntimeError(f"endpoint {name} did not become ready")
        time.sleep(0.05)

    def stop() -> None:
        client.endpoints.deployments.update(dep.id, endpoint_id=ep.id, update_mask="autoscaling",
                                            autoscaling={"minReplicas": 0, "maxReplicas": 0})
        client.endpoints.deployments.delete(dep.id, endpoint_id=ep.id)
        client.endpoints.delete(ep.id)

    return client.endpoints.retrieve(ep.id).name, stop


@dataclass
class LearningResult:
    train_tasks: int
    held_out_tasks: int
    pairs: int
    base: float
    tuned: float
    control: float
    jobs: dict[str, Any] = field(default_factory=dict)
    test_runs: int = 0

    def lines(self) -> list[str]:
        return [f"pairs from {self.train_tasks} train tasks: {self.pairs}",
                f"held-out pass@1 over {self.held_out_tasks} tasks: base {self.base:.3f}, "
                f"DPO-tuned {self.tuned:.3f}, label-swapped control {self.control:.3f}"]


def learning_experiment(client: Together, train: list[Task], held: list[Task], runner: CachedRunner,
                        workdir: Path, *, pair_seeds: list[int], eval_seeds: list[int], epochs: int = 3,
                        lr: float = 1e-5, beta: float = 0.1) -> LearningResult:
    base_path = "projects/proj_pub/models/ml_qwen25_7b"
    base_name, stop_base = serve(client, "eval-base", base_path)
    try:
        pairs = build_pairs(client, base_name, train, runner, seeds=pair_seeds)
        if len(pairs) < 8:
            raise RuntimeError(f"only {len(pairs)} preference pairs from {len(train)} train tasks")
        good_file = workdir / "pairs.jsonl"
        bad_file = workdir / "pairs_swapped.jsonl"
        good_file.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        bad_file.write_text("".join(json.dumps(p) + "\n" for p in swapped(pairs)), encoding="utf-8")
        tuned_job = fine_tune(client, good_file, suffix="eval-dpo", epochs=epochs, lr=lr, beta=beta)
        ctrl_job = fine_tune(client, bad_file, suffix="eval-swapped", epochs=epochs, lr=lr, beta=beta)
        tuned_name, stop_t = serve(client, "eval-tuned", f"projects/proj_sim/models/{tuned_job.api_model_object_id}")
        ctrl_name, stop_c = serve(client, "eval-control", f"projects/proj_sim/models/{ctrl_job.api_model_object_id}")
        try:
            scores = {n: pass_at_1(client, m, held, runner, seeds=eval_seeds)
                      for n, m in (("base", base_name), ("tuned", tuned_name), ("control", ctrl_name))}
        finally:
            stop_t()
            stop_c()
    finally:
        stop_base()
    return LearningResult(len(train), len(held), len(pairs), scores["base"], scores["tuned"], scores["control"],
                          {"tuned": tuned_job.id, "control": ctrl_job.id}, runner.runs)


def preference_accuracy(ref: dict, tuned: dict, pairs: list[dict], refs: Any = None) -> float:
    """Share of (held-out) pairs the tuned policy prefers the right way relative to the
    reference: DPO's implicit-reward accuracy, (w - w_ref) . (f_chosen - f_rejected) > 0."""
    from dpo_tui.sim.learner import pair_delta

    wins = 0.0
    n = 0
    for p in pairs:
        d = pair_delta(p, refs)
        if d is None:
            continue
        m = sum((tuned["weights"].get(k, 0.0) - ref["weights"].get(k, 0.0)) * v for k, v in d.items())
        wins += 1.0 if m > 1e-12 else 0.5 if abs(m) <= 1e-12 else 0.0
        n += 1
    return wins / n if n else 0.5
