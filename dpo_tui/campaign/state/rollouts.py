"""Rollout events and their part of the campaign state.

A rollout is one attempt of the repair agent on one task with one seed. It is used by the
pilot, the paid rollouts and the eval runs (its `stage` says which). Each iteration's
candidate program and test verdicts are logged; the model's replies themselves are in
the `call.completed` events of the iteration's call keys.

A rollout whose call gave up on an API error (retries exhausted, or a status that is not
retried) ends `rollout.errored`, not finished: it is no pair, no eval sample and no pilot
measurement, and the next run retries it (its completed calls come back from the log under
their idempotency keys). Logs written before `rollout.errored` existed ended such a rollout
`rollout.finished` with outcome `call_failed`; the fold reads that old event as errored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

RolloutStage = Literal["pilot", "rollouts", "eval"]


@event_type("rollout.started", version=1)
class RolloutStarted(Payload):
    rollout_id: str = Field(min_length=1)
    task_id: str
    stage: RolloutStage
    model: str
    seed: int
    max_iters: int = Field(ge=1)
    reflections: bool
    temperature: float
    max_tokens: int
    arm: str | None = None  # eval: "base" or "tuned"
    suite: str | None = None  # eval: "test" or "heldout"
    run_id: str | None = None  # eval: which training run's eval


@event_type("task.baseline", version=1)
class TaskBaseline(Payload):
    """The buggy program's test report, run once per task: the failing output every first
    prompt shows. Logged so a resumed rollout sends exactly the prompt it sent before."""

    task_id: str
    content_hash: str
    report: dict[str, Any]  # TestReport.to_dict()


@event_type("rollout.iteration", version=1)
class RolloutIteration(Payload):
    rollout_id: str
    iteration: int = Field(ge=1)
    call_key: str
    program: str | None  # the candidate tested; None when the reply had no usable program
    extract_problem: str = ""
    report: dict[str, Any] | None = None  # TestReport.to_dict(); None when nothing was tested


@event_type("rollout.finished", version=1)
class RolloutFinished(Payload):
    rollout_id: str
    # "call_failed" is only in old logs (read as errored, see `rollout.errored`); never written now
    outcome: Literal["passed", "max_iters", "call_failed", "cancelled"]
    passed: bool
    tests: int
    tests_passed: int
    iterations: int
    final_program: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@event_type("rollout.errored", version=1)
class RolloutErrored(Payload):
    """A call of the rollout gave up on an API error: the rollout is unfinished and retried
    by the next run. What it had spent so far is in its calls (spend counts them there)."""

    rollout_id: str
    idempotency_key: str  # the call that gave up
    reason: str
    status: int | None = None  # HTTP status; None for a connection failure
    connection: bool = False  # the call gave up on a connection failure (refused, unresolvable, timeout)
    iterations: int = Field(0, ge=0)
    calls: int = Field(0, ge=0)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)


@dataclass
class RolloutRecord:
    rollout_id: str
    task_id: str
    stage: str
    model: str
    seed: int
    arm: str | None = None
    suite: str | None = None
    run_id: str | None = None
    iterations: list[dict[str, Any]] = field(default_factory=list)  # summaries, no program text
    finished: dict[str, Any] | None = None
    errored: dict[str, Any] | None = None  # the latest `rollout.errored` since it last (re)started; None once finished
    errors: int = 0  # how many times it errored (retries that later finished included)

    @property
    def status(self) -> str:
        if self.finished is not None:
            return self.finished["outcome"]
        return "errored" if self.errored is not None else "running"


@dataclass
class TaskProgress:
    """One task's rollouts in one stage: how many started, finished and passed, what they cost."""

    started: int = 0
    finished: int = 0
    passed: int = 0
    cost_usd: float = 0.0


@dataclass
class RolloutsState:
    by_id: dict[str, RolloutRecord] = field(default_factory=dict)
    by_task: dict[tuple[str, str], TaskProgress] = field(default_factory=dict)  # (stage, task id)
    baselines: dict[str, int] = field(default_factory=dict)  # task id -> seq of its task.baseline
    started: dict[str, int] = field(default_factory=dict)  # stage -> count
    finished: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    errored: dict[str, int] = field(default_factory=dict)  # stage -> rollouts errored now (not finished since)

    def to_json(self) -> dict[str, Any]:
        stages = sorted(set(self.started))
        return {"total": self.started.get("rollouts", 0), "finished": self.finished.get("rollouts", 0),
                "passed": self.passed.get("rollouts", 0), "errored": self.errored.get("rollouts", 0),
                "by_stage": {s: {"total": self.started.get(s, 0), "finished": self.finished.get(s, 0),
                                 "passed": self.passed.get(s, 0), "errored": self.errored.get(s, 0)}
                             for s in stages}}


ROLLOUTS = state_part("rollouts", factory=RolloutsState, to_json=RolloutsState.to_json)


@on("task.baseline")
def _baseline(state: CampaignState, event: StoredEvent) -> None:
    state.part(ROLLOUTS).baselines.setdefault(event.payload["task_id"], event.seq)


@on("rollout.started")
def _started(state: CampaignState, event: StoredEvent) -> None:
    r: RolloutsState = state.part(ROLLOUTS)
    p = event.payload
    if p["rollout_id"] in r.by_id:
        return  # the invariant reports it
    r.by_id[p["rollout_id"]] = RolloutRecord(p["rollout_id"], p["task_id"], p["stage"], p["model"], p["seed"],
                                             p.get("arm"), p.get("suite"), p.get("run_id"))
    r.started[p["stage"]] = r.started.get(p["stage"], 0) + 1
    r.by_task.setdefault((p["stage"], p["task_id"]), TaskProgress()).started += 1


@on("rollout.iteration")
def _iteration(state: CampaignState, event: StoredEvent) -> None:
    rec = state.part(ROLLOUTS).by_id.get(event.payload["rollout_id"])
    if rec is not None:
        p = event.payload
        report = p["report"] or {}
        rec.iterations.append({"iteration": p["iteration"], "passed": bool(report.get("passed")),
                               "tests": report.get("tests", 0), "tests_passed": report.get("tests_passed", 0),
                               "seq": event.seq, "has_program": p["program"] is not None})


def _mark_errored(r: RolloutsState, rec: RolloutRecord, info: dict[str, Any]) -> None:
    if rec.errored is None:
        r.errored[rec.stage] = r.errored.get(rec.stage, 0) + 1
    rec.errored = info
    rec.errors += 1


@on("rollout.errored")
def _errored(state: CampaignState, event: StoredEvent) -> None:
    r: RolloutsState = state.part(ROLLOUTS)
    rec = r.by_id.get(event.payload["rollout_id"])
    if rec is None or rec.finished is not None:
        return  # the invariant reports it
    _mark_errored(r, rec, dict(event.payload) | {"seq": event.seq})


@on("rollout.finished")
def _finished(state: CampaignState, event: StoredEvent) -> None:
    r: RolloutsState = state.part(ROLLOUTS)
    rec = r.by_id.get(event.payload["rollout_id"])
    if rec is None or rec.finished is not None:
        return
    if event.payload["outcome"] == "call_failed":  # an old log's way of saying errored: read it as such
        p = event.payload
        _mark_errored(r, rec, {"rollout_id": rec.rollout_id, "idempotency_key": "", "reason": "call_failed (old log)",
                               "status": None, "connection": False, "iterations": p["iterations"],
                               "calls": p["calls"], "prompt_tokens": p["prompt_tokens"],
                               "completion_tokens": p["completion_tokens"], "cost_usd": p["cost_usd"],
                               "seq": event.seq})
        return
    if rec.errored is not None:  # a retry that finished
        r.errored[rec.stage] -= 1
        rec.errored = None
    rec.finished = {k: v for k, v in event.payload.items() if k != "final_program"} | {"seq": event.seq}
    r.finished[rec.stage] = r.finished.get(rec.stage, 0) + 1
    task = r.by_task[(rec.stage, rec.task_id)]
    task.finished += 1
    task.cost_usd += event.payload["cost_usd"]
    if event.payload["passed"]:
        r.passed[rec.stage] = r.passed.get(rec.stage, 0) + 1
        task.passed += 1


@invariant("rollout-once", "rollout.started")
def _started_once(state: CampaignState, event: StoredEvent) -> str | None:
    rec = state.part(ROLLOUTS).by_id[event.payload["rollout_id"]]
    if rec.task_id != event.payload["task_id"] or rec.seed != event.payload["seed"]:
        return f"rollout {event.payload['rollout_id']} started twice with different tasks or seeds"
    return None


@invariant("rollout-order", "rollout.iteration", "rollout.finished", "rollout.errored")
def _known_rollout(state: CampaignState, event: StoredEvent) -> str | None:
    rec = state.part(ROLLOUTS).by_id.get(event.payload["rollout_id"])
    if rec is None:
        return f"{event.type} for rollout {event.payload['rollout_id']} that never started"
    if event.type == "rollout.finished" and rec.finished and rec.finished["seq"] != event.seq:
        return f"rollout {rec.rollout_id} finished twice"
    if event.type in ("rollout.iteration", "rollout.errored") and rec.finished is not None:
        return f"rollout {rec.rollout_id} has {'an iteration' if event.type == 'rollout.iteration' else 'an error'} " \
               "after it finished"
    iters = [i["iteration"] for i in rec.iterations]
    if event.type == "rollout.iteration" and iters != list(range(1, len(iters) + 1)):
        return f"rollout {rec.rollout_id} iterations out of order: {iters}"
    return None
