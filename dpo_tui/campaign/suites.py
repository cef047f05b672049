"""The plan's suites, loaded once per run: train/test tasks and the held-out suite."""

from __future__ import annotations

from dataclasses import dataclass, field

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.tasks import logged_hashes
from dpo_tui.domain.code import literal_inputs
from dpo_tui.domain.split import SplitTask
from dpo_tui.errors import InputError
from dpo_tui.events.fold import CampaignState
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


def check_unchanged(state: CampaignState, tasks: dict[str, Task], sources: dict[str, str]) -> None:
    """Refuse (exit 2) when a task the log used changed or disappeared from its suite."""
    for tid, (logged, source) in logged_hashes(state).items():
        where = _where(sources.get(tid) or source or "the plan's suites")
        now = tasks.get(tid)
        if now is None:
            raise InputError(f"{where}: task {tid} of this campaign's split is no longer in the suite: restore it, "
                             "or start a new campaign for the new suite")
        if now.content_hash != logged:
            raise InputError(f"{where}: task {tid} changed since the split (logged content {logged[:12]}, now "
                             f"{now.content_hash[:12]}): this campaign used the logged version; restore the suite "
                             "file, or start a new campaign for the new content")


def _where(spec: str) -> str:
    """The suite file a spec names (the built-in fixtures' too)."""
    kind, _, rest = spec.partition(":")
    if kind == "fixtures" and not rest:
        from dpo_tui.paths import fixtures_dir

        return str(fixtures_dir() / "suites" / "fixtures.jsonl")
    return rest if rest and kind in ("jsonl", "quixbugs", "humanevalfix", "fixtures") else spec
