"""The split stage: propose a seeded split with leakage findings, let the operator move or
exclude tasks, approve (freeze, hash logged), and unfreeze only with a reason."""

from __future__ import annotations

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.split import SPLIT, SplitState
from dpo_tui.campaign.state.tasks import snapshot_payload
from dpo_tui.campaign.suites import PlanTasks, split_task
from dpo_tui.domain.split import Split, exclude, find_leaks, make_split, move
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent


def _state(campaign: Campaign) -> SplitState:
    return campaign.state.part(SPLIT)


def _findings(tasks: PlanTasks, split: Split, plan: Plan) -> list[dict]:
    """Leaks from train into everything the eval will use: the test split and the held-out suite."""
    evaluated = Split(split.train, tuple(split.test) + tuple(tasks.heldout), split.excluded)
    return [f.to_json() for f in find_leaks([split_task(t) for t in tasks.all().values()], evaluated,
                                            near_threshold=plan.split.near_duplicate_threshold)]


def _task_info(task) -> dict:
    return {"id": task.id, "suite": task.suite, "name": task.name, "tests": len(task.tests.cases),
            "content_hash": task.content_hash}


def propose_split(campaign: Campaign, plan: Plan, tasks: PlanTasks, *, actor: str) -> Split:
    """Propose the plan's seeded split (once; later calls return the current split)."""
    s = _state(campaign)
    if s.split is not None:
        return s.split
    split = make_split([split_task(t) for t in tasks.pool.values()], seed=plan.split.seed,
                       test_fraction=plan.split.test_fraction, stratify_by_suite=plan.split.stratify_by_suite)
    # the tasks as used (what the model will see, what results depend on), then the split of them
    campaign.append_batch([NewEvent("tasks.snapshot", snapshot_payload(tasks.all(), tasks.sources), actor),
                           NewEvent("split.proposed", {
        "seed": plan.split.seed, "test_fraction": plan.split.test_fraction,
        "stratify_by_suite": plan.split.stratify_by_suite,
        "tasks": [_task_info(t) for t in tasks.pool.values()], "train": list(split.train), "test": list(split.test),
        "heldout": [_task_info(t) for t in tasks.heldout.values()],
        "findings": _findings(tasks, split, plan)}, actor)])
    return split


def _editable(campaign: Campaign, task_id: str) -> Split:
    s = _state(campaign)
    if s.split is None:
        raise InputError("no split yet: propose one first")
    if s.frozen:
        raise InputError(f"the split is frozen ({s.frozen_hash[:12]}); unfreeze it with a reason before changing it")
    if task_id not in s.tasks:
        raise InputError(f"unknown task {task_id!r}")
    return s.split


def move_task(campaign: Campaign, plan: Plan, tasks: PlanTasks, task_id: str, to: str, *, actor: str,
              reason: str = "") -> Split:
    split = move(_editable(campaign, task_id), task_id, to)
    campaign.append("split.task_moved", {"task_id": task_id, "to": to, "reason": reason,
                                         "findings": _findings(tasks, split, plan)}, actor=actor)
    return split


def exclude_task(campaign: Campaign, plan: Plan, tasks: PlanTasks, task_id: str, *, reason: str,
                 actor: str) -> Split:
    if not reason.strip():
        raise InputError("excluding a task needs a reason")
    split = exclude(_editable(campaign, task_id), task_id, reason)
    campaign.append("split.task_excluded", {"task_id": task_id, "reason": reason,
                                            "findings": _findings(tasks, split, plan)}, actor=actor)
    return split


def split_to_approve(campaign: Campaign) -> SplitState:
    """The split an approval would freeze (the console asks before it, the CLI does not);
    InputError when there is none yet."""
    s = _state(campaign)
    if s.split is None:
        raise InputError("no split to approve: propose one first")
    return s


def already_frozen(s: SplitState) -> str:
    """What an approval of a frozen split says (it changes nothing)."""
    return f"the split is already frozen ({s.frozen_hash[:12]})"


def approve_split(campaign: Campaign, *, actor: str) -> str:
    """Freeze the split; returns its hash. Approving a frozen split again is a no-op."""
    s = split_to_approve(campaign)
    if s.frozen:
        return s.frozen_hash
    split = s.split
    if not split.train or not split.test:
        raise InputError(f"cannot approve a split with {len(split.train)} train and {len(split.test)} test tasks")
    campaign.append("split.approved", {"hash": split.hash(), "train": list(split.train), "test": list(split.test),
                                       "excluded": dict(split.excluded), "open_findings": len(s.findings)}, actor=actor)
    return split.hash()


def frozen_split(campaign: Campaign) -> SplitState:
    """The frozen split an unfreeze would open; InputError when it is not frozen."""
    s = _state(campaign)
    if not s.frozen:
        raise InputError("the split is not frozen")
    return s


def other_side(campaign: Campaign, task_id: str) -> str:
    """Where a move sends the task when no side is named: train <-> test (an excluded task to train)."""
    s = _state(campaign)
    side = s.split.side_of(task_id) if s.split is not None else None
    return "test" if side == "train" else "train"


def unfreeze_split(campaign: Campaign, *, reason: str, actor: str) -> None:
    s = frozen_split(campaign)
    if not reason.strip():
        raise InputError("unfreezing the split needs a written reason")
    campaign.append("split.unfrozen", {"reason": reason, "previous_hash": s.frozen_hash}, actor=actor)
