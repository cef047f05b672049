"""The tasks as used, in the log: a `tasks.snapshot` at split time, and the resume check.

Whatever the model saw and the results depend on is in the log: each task's description,
buggy program and tests (the harness's form), with its content hash and the suite it came
from. The fixed program is never shown to a model; its sha256 is logged (it sets the
calibrated CPU limits, logged as `task.calibrated` when measured). The pair export rebuilds prompts from this snapshot, not from the
suite file; on resume, a task whose content no longer matches its logged hash stops the
run (exit 2) before anything is appended. Audit re-derives each snapshot entry's hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type
from dpo_tui.tasks.model import Task, TestCase, TestSpec, content_hash

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent
    from dpo_tui.tasks.sandbox import Limits


class TaskContent(Payload):
    id: str
    suite: str
    name: str
    description: str
    buggy_program: str
    tests: dict[str, Any]                  # TestSpec.payload()
    content_hash: str
    source: str                            # the suite spec it was loaded from (as in the plan)
    fixed_program_sha256: str | None = None


@event_type("tasks.snapshot", version=1)
class TasksSnapshot(Payload):
    tasks: list[TaskContent]


@event_type("task.calibrated", version=1)
class TaskCalibrated(Payload):
    """Per-test CPU limits calibrated on the task's fixed program (tasks/calibrate.py): a
    resumed run uses these, not a new measurement."""

    task_id: str
    content_hash: str
    base_cpu_seconds: float
    per_test_cpu: list[tuple[str, float]]


@dataclass
class TasksState:
    content: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> TaskContent as logged
    calibrated: dict[tuple[str, float], list[tuple[str, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": len(self.content),
                "hashes": {tid: c["content_hash"] for tid, c in sorted(self.content.items())},
                "calibrated": sorted({tid for tid, _cpu in self.calibrated})}


TASKS = state_part("tasks", factory=TasksState, to_json=TasksState.to_json)


@on("tasks.snapshot")
def _snapshot(state: CampaignState, event: StoredEvent) -> None:
    s: TasksState = state.part(TASKS)
    for t in event.payload["tasks"]:
        s.content.setdefault(t["id"], t)  # the first content logged for a task is the one used


@on("task.calibrated")
def _calibrated(state: CampaignState, event: StoredEvent) -> None:
    p = event.payload
    state.part(TASKS).calibrated.setdefault((p["task_id"], float(p["base_cpu_seconds"])),
                                            [(str(n), float(c)) for n, c in p["per_test_cpu"]])


def calibrated_limits(state: CampaignState, task_id: str, base: Limits) -> Limits | None:
    """The logged calibration of `task_id` under this base CPU limit, or None."""
    per_test = state.part(TASKS).calibrated.get((task_id, float(base.test_cpu_seconds)))
    return None if per_test is None else replace(base, per_test_cpu=tuple(per_test))


def calibration_payload(task: Task, base: Limits, limits: Limits) -> dict[str, Any]:
    return {"task_id": task.id, "content_hash": task.content_hash, "base_cpu_seconds": base.test_cpu_seconds,
            "per_test_cpu": [list(x) for x in limits.per_test_cpu]}


def spec_from_payload(p: dict[str, Any]) -> TestSpec:
    return TestSpec(source=p["source"], cases=tuple(TestCase(*c) for c in p["cases"]),
                    program_module=p.get("program_module"), support=tuple(tuple(s) for s in p.get("support", [])),
                    filename=p.get("filename", "tests.py"))


@invariant("task-content", "tasks.snapshot")
def _hashes_rederive(state: CampaignState, event: StoredEvent) -> str | None:
    for t in event.payload["tasks"]:
        again = content_hash(t["buggy_program"], spec_from_payload(t["tests"]))
        if again != t["content_hash"]:
            return f"task {t['id']}: logged content hashes to {again[:12]}, not its logged {t['content_hash'][:12]}"
    return None


def snapshot_payload(tasks: dict[str, Task], sources: dict[str, str]) -> dict[str, Any]:
    return {"tasks": [{
        "id": t.id, "suite": t.suite, "name": t.name, "description": t.description, "buggy_program": t.buggy_program,
        "tests": t.tests.payload(), "content_hash": t.content_hash, "source": sources.get(t.id, t.suite),
        "fixed_program_sha256": hashlib.sha256(t.fixed_program.encode()).hexdigest() if t.fixed_program else None,
    } for t in tasks.values()]}


def logged_task(state: CampaignState, task_id: str) -> Task | None:
    """The task as the log says it was used (no fixed program), or None without a snapshot."""
    c = state.part(TASKS).content.get(task_id)
    if c is None:
        return None
    return Task(id=c["id"], suite=c["suite"], name=c["name"], description=c["description"],
                buggy_program=c["buggy_program"], tests=spec_from_payload(c["tests"]), content_hash=c["content_hash"])


def logged_hashes(state: CampaignState) -> dict[str, tuple[str, str | None]]:
    """task id -> (content hash, source) as logged: the snapshot, else the proposed split's hashes."""
    snap = state.part(TASKS).content
    if snap:
        return {tid: (c["content_hash"], c["source"]) for tid, c in snap.items()}
    from dpo_tui.campaign.state.split import SPLIT

    split = state.part(SPLIT)
    return {t["id"]: (t["content_hash"], None) for t in [*split.tasks.values(), *split.heldout]}
