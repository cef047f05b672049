"""The plan's suites, loaded once per run: train/test tasks and the held-out suite."""

from __future__ import annotations

from dataclasses import dataclass, field

from dpo_tui.campaign.plan import Plan
from dpo_tui.domain.code import literal_inputs
from dpo_tui.domain.split import SplitTask
from dpo_tui.errors import InputError
from dpo_tui.tasks.model import Task
from dpo_tui.tasks.suites import load_suite


@dataclass(frozen=True)
class PlanTasks:
    pool: dict[str, Task]  # tasks to split into train and test
    heldout: dict[str, Task]
    sources: dict[str, str] = field(default_factory=dict)  # task id -> the suite spec it came from

    def all(self) -> dict[str, Task]:
        return {**self.pool, **self.heldout}


def load_plan_tasks(plan: Plan) -> PlanTasks:
    pool: dict[str, Task] = {}
    sources: dict[str, str] = {}
    for spec in plan.suites.train_test:
        for task in load_suite(spec):
            if task.id in pool:
                raise InputError(f"task id {task.id} appears twice in suites.train_test")
            pool[task.id] = task
            sources[task.id] = spec
    heldout: dict[str, Task] = {}
    for spec in plan.suites.heldout:
        for task in load_suite(spec):
            if task.id in pool:
                raise InputError(f"held-out task {task.id} is also in suites.train_test")
            heldout[task.id] = task
            sources.setdefault(task.id, spec)
    if plan.suites.heldout_limit is not None:
        heldout = dict(list(heldout.items())[: plan.suites.heldout_limit])
    if len(pool) < 2:
        raise InputError(f"suites.train_test has {len(pool)} task(s); a train/test split needs at least 2")
    return PlanTasks(pool, heldout, sources)


def split_task(task: Task) -> SplitTask:
    return SplitTask(task.id, task.suite, task.name, task.buggy_program,
                     literal_inputs(task.tests.source), len(task.tests.cases))
