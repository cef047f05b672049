"""What one rollout is (the engine runs it; eval and the rollouts stage make them): apart from
the engine so that audit, which re-derives the eval's specs, loads neither the SDK nor the
provider. A logged test report is read back with `report_from_dict`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dpo_tui.tasks.model import Task
from dpo_tui.tasks.sandbox import TestReport, TestVerdict


@dataclass(frozen=True)
class RolloutSpec:
    rollout_id: str
    task: Task
    stage: str  # pilot | rollouts | eval (the spend bucket and the call keys' stage)
    model: str
    seed: int
    max_iters: int
    reflections: bool
    temperature: float
    max_tokens: int
    arm: str | None = None
    suite: str | None = None
    run_id: str | None = None


def report_from_dict(d: dict[str, Any]) -> TestReport:
    verdicts = [TestVerdict(**v) for v in d.get("verdicts", [])]
    return TestReport(**{**d, "verdicts": verdicts})
