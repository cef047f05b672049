"""The rollout engine: many rollouts of the repair agent, concurrent, logged, resumable.

Each rollout walks the agent's state machine (dpo_tui.tasks.agent): a chat call through
the provider, then the candidate's tests in the sandbox, until the tests pass or
`max_iters` candidates were tried. Every step is an event. On restart the engine replays
each unfinished rollout from the log: a completed call comes back from the log (the
provider never re-issues a completed idempotency key), a logged test report is reused,
and the rollout continues from its first missing step. Test runs go to a thread pool
sized to the cores; each run is its own sandboxed subprocess.

A rollout whose call gives up on an API error ends `rollout.errored`, unfinished: the run
goes on with the others, and the next run retries it like any unfinished rollout (the calls
it completed come back from the log). A backend that stops answering trips the provider's
circuit breaker (BackendUnavailable), which stops the whole run instead of erroring every
rollout in turn.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dpo_tui.campaign.specs import RolloutSpec, report_from_dict
from dpo_tui.campaign.state.rollouts import ROLLOUTS, RolloutRecord, RolloutsState
from dpo_tui.domain.concurrency import ThroughputController
from dpo_tui.errors import BudgetCapReached
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent
from dpo_tui.provider.provider import CallGaveUp, CallKey, ChatResult, Provider
from dpo_tui.tasks import agent
from dpo_tui.tasks.model import Task
from dpo_tui.campaign.state.tasks import calibrated_limits, calibration_payload
from dpo_tui.tasks.calibrate import run_tests_calibrated
from dpo_tui.tasks.sandbox import Limits, Sandbox, TestReport


@dataclass
class EngineProgress:
    total: int = 0
    finished: int = 0
    passed: int = 0
    running: int = 0
    errors: int = 0  # rollouts that errored in this run (a call gave up on an API error)
    status: str = "idle"  # idle | running | paused | cancelling | cancelled | done | budget_cap
    failures: list[str] = field(default_factory=list)


class RolloutEngine:
    def __init__(self, campaign: Campaign, provider: Provider, *, concurrency: int = 8,
                 test_workers: int | None = None, limits: Limits | None = None, sandbox: Sandbox | None = None,
                 templates: agent.PromptTemplates | None = None, actor: str = "system",
                 on_progress: Callable[[EngineProgress], None] | None = None,
                 controller: ThroughputController | None = None) -> None:
        self.campaign, self.provider, self.actor = campaign, provider, actor
        self.controller = controller  # None: the concurrency stays as set (the plan's, the operator's)
        self.limits, self.sandbox = limits or Limits(), sandbox or Sandbox()
        self.templates = templates or agent.PromptTemplates()
        self._pool = ThreadPoolExecutor(max_workers=test_workers or os.cpu_count() or 2,
                                        thread_name_prefix="dpo-tui-tests")
        self._limit = max(1, controller.limit if controller is not None else concurrency)
        self._active = 0
        self._slots: asyncio.Condition | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._cancelled = False
        self._cap_message: str | None = None  # set by stop_for_cap: run() raises BudgetCapReached
        self._loop: asyncio.AbstractEventLoop | None = None
        self._baselines: dict[str, asyncio.Future] = {}
        self.progress = EngineProgress()
        self._on_progress = on_progress

    # -- operator controls (safe from any thread) ---------------------------------------

    def _soon(self, fn: Callable[[], None]) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(fn)
        else:
            fn()

    def pause(self) -> None:
        self._soon(lambda: (self._running.clear(), self._set_status("paused")))

    def resume(self) -> None:
        self._soon(lambda: (self._running.set(), self._set_status("running")))

    def cancel(self) -> None:
        def do() -> None:
            self._cancelled = True
            self._running.set()
            self._set_status("cancelling")
        self._soon(do)

    def stop_for_cap(self, message: str) -> None:
        """Stop as cancel does (calls in flight finish; unfinished rollouts resume later), then
        make run() raise BudgetCapReached(message): the cap, not the operator, stopped it."""
        self._cap_message = message
        self.cancel()

    def set_concurrency(self, n: int, *, measured: bool = False) -> None:
        """Rollouts in flight from now on. Set by hand (the operator), it also stops the
        measured control (domain/concurrency.py) for the rest of this run."""
        if not measured:
            self.controller = None

        async def notify() -> None:
            if self._slots is not None:
                async with self._slots:
                    self._slots.notify_all()

        def do() -> None:
            self._limit = max(1, n)
            if self._loop is not None:
                self._loop.create_task(notify())
        self._soon(do)

    @property
    def concurrency(self) -> int:
        return self._limit

    def _set_status(self, status: str) -> None:
        self.progress.status = status
        self._emit()

    def _emit(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    # -- running ------------------------------------------------------------------------

    @property
    def _state(self) -> RolloutsState:
        return self.campaign.state.part(ROLLOUTS)

    async def run(self, specs: Sequence[RolloutSpec]) -> EngineProgress:
        """Run (or resume) every spec; returns when all are finished, or on cancel.
        Raises BudgetCapReached when the cap stops a call (unfinished rollouts resume later)."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Condition()
        todo = []
        self.progress = EngineProgress(total=len(specs), status="running")
        for spec in specs:
            rec = self._state.by_id.get(spec.rollout_id)
            if rec is not None and rec.finished is not None:
                self.progress.finished += 1
                self.progress.passed += bool(rec.finished["passed"])
            else:
                todo.append(spec)
        self._emit()
        tasks = [asyncio.create_task(self._guarded(spec)) for spec in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if self._cap_message is not None:
            self._set_status("budget_cap")
            raise BudgetCapReached(self._cap_message)
        self._set_status("cancelled" if self._cancelled else "done")
        return self.progress

    async def _guarded(self, spec: RolloutSpec) -> None:
        assert self._slots is not None
        async with self._slots:
            await self._slots.wait_for(lambda: self._active < self._limit or self._cancelled)
            if self._cancelled:
                return
            self._active += 1
        self.progress.running += 1
        try:
            passed = await self._rollout(spec)
            if passed is not None:  # else cancelled or errored: unfinished, resumed by the next run
                self.progress.finished += 1
                self.progress.passed += passed
        finally:
            self.progress.running -= 1
            async with self._slots:
                self._active -= 1
                self._slots.notify_all()
            self._emit()

    async def _checkpoint(self) -> bool:
        """Wait while paused; False when cancelled (the rollout stops, unfinished)."""
        await self._running.wait()
        return not self._cancelled

    async def baselines(self, tasks: Sequence[Task]) -> None:
        """Run and log the baseline of each task that has none (the eval's warm-up,
        campaign/warmup.py); the test pool bounds how many run at once."""
        await asyncio.gather(*(self._baseline(t) for t in tasks))

    async def _baseline(self, task: Task) -> TestReport:
        seq = self._state.baselines.get(task.id)
        if seq is not None:
            return report_from_dict(self.campaign.store.event_at(seq).payload["report"])
        if task.id not in self._baselines:
            async def compute() -> TestReport:
                report = await self._test(task, task.buggy_program)
                if task.id not in self._state.baselines:
                    self.campaign.append("task.baseline", {"task_id": task.id, "content_hash": task.content_hash,
                                                           "report": report.to_dict()}, actor="system")
                return report
            self._baselines[task.id] = asyncio.ensure_future(compute())
        return await self._baselines[task.id]

    async def _test(self, task: Task, program: str) -> TestReport:
        loop = asyncio.get_running_loop()
        logged = calibrated_limits(self.campaign.state, task.id, self.limits)
        fresh: list[Limits] = []
        report = await loop.run_in_executor(self._pool, lambda: run_tests_calibrated(
            task, program, base=self.limits, sandbox=self.sandbox, calibrated=logged, on_calibrated=fresh.append))
        if fresh and calibrated_limits(self.campaign.state, task.id, self.limits) is None:
            self.campaign.append("task.calibrated", calibration_payload(task, self.limits, fresh[0]), actor="system")
        return report

    def _logged_iterations(self, rec: RolloutRecord | None) -> dict[int, dict[str, Any]]:
        if rec is None:
            return {}
        return {i["iteration"]: self.campaign.store.event_at(i["seq"]).payload for i in rec.iterations}

    async def _rollout(self, spec: RolloutSpec) -> bool | None:
        """One rollout to its end; None when it stopped unfinished (cancelled, or errored)."""
        config = agent.RolloutConfig(max_iters=spec.max_iters, reflections=spec.reflections, templates=self.templates)
        state = agent.start(spec.task, await self._baseline(spec.task), config)
        rec = self._state.by_id.get(spec.rollout_id)
        if rec is None:
            self.campaign.append("rollout.started", {
                "rollout_id": spec.rollout_id, "task_id": spec.task.id, "stage": spec.stage, "model": spec.model,
                "seed": spec.seed, "max_iters": spec.max_iters, "reflections": spec.reflections,
                "temperature": spec.temperature, "max_tokens": spec.max_tokens, "arm": spec.arm,
                "suite": spec.suite, "run_id": spec.run_id}, actor=self.actor)
        logged = self._logged_iterations(rec)
        totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        while not state.done:
            if not await self._checkpoint():
                return None
            kind = agent.call_kind(state)
            if kind is not None:
                iteration = state.iteration + (1 if kind == "candidate" else 0)
                key = CallKey(spec.rollout_id, iteration, "repair" if kind == "candidate" else "reflect")
                try:
                    result = await self.provider.chat(
                        key, stage=spec.stage, model=spec.model, messages=[dict(m) for m in state.messages],
                        temperature=spec.temperature, seed=spec.seed, max_tokens=spec.max_tokens)
                except CallGaveUp as exc:
                    self._append_errored(spec, exc, state.iteration, totals)
                    return None
                if not result.from_log:
                    self._follow_serving(spec, result)
                totals["calls"] += 1
                totals["prompt_tokens"] += result.usage.prompt_tokens
                totals["completion_tokens"] += result.usage.completion_tokens
                totals["cost_usd"] += result.cost_usd
                state = agent.on_reply(state, result.text, config)
                if kind == "candidate" and state.phase != "testing" and iteration not in logged:
                    attempt = state.attempts[-1]
                    self._append_iteration(spec, iteration, key, None, attempt.problem, None)
            elif state.phase == "testing":
                iteration = state.iteration
                if iteration in logged and logged[iteration].get("report") is not None:
                    report = report_from_dict(logged[iteration]["report"])
                else:
                    report = await self._test(spec.task, state.pending)
                    key = CallKey(spec.rollout_id, iteration, "repair")
                    self._append_iteration(spec, iteration, key, state.pending, "", report)
                state = agent.on_report(state, report, config)
        score = agent.score(state)
        final = state.final
        outcome = "passed" if score.passed else "max_iters"
        self.campaign.append("rollout.finished", {
            "rollout_id": spec.rollout_id, "outcome": outcome, "passed": score.passed, "tests": score.tests,
            "tests_passed": score.tests_passed, "iterations": score.iterations,
            "final_program": (final.program if final and final.program else ""), **totals}, actor=self.actor)
        return score.passed

    def _follow_serving(self, spec: RolloutSpec, result: ChatResult) -> None:
        """Feed the controller one answered call; a change of concurrency is applied and logged."""
        controller = self.controller  # the operator may take over from another thread
        if controller is None:
            return
        change = controller.observe(result.latency_s, result.usage.completion_tokens, time.monotonic())
        if change is None:
            return
        self.set_concurrency(change.after, measured=True)
        self.campaign.append("engine.concurrency_set", {
            "stage": spec.stage, "run_id": spec.run_id, "before": change.before, "after": change.after,
            "calls": change.calls, "latency_ms_per_token": round(change.latency_ms_per_token, 4),
            "baseline_ms_per_token": round(change.baseline_ms_per_token, 4),
            "tokens_per_s": round(change.tokens_per_s, 1), "reason": change.reason}, actor="system")

    def _append_errored(self, spec: RolloutSpec, exc: CallGaveUp, iterations: int, totals: dict[str, Any]) -> None:
        self.progress.errors += 1
        self.progress.failures.append(f"{spec.rollout_id}: {exc.reason}")
        self.campaign.append("rollout.errored", {
            "rollout_id": spec.rollout_id, "idempotency_key": exc.idempotency_key, "reason": exc.reason,
            "status": exc.status, "connection": exc.connection, "iterations": iterations, **totals},
            actor=self.actor)

    def _append_iteration(self, spec: RolloutSpec, iteration: int, key: CallKey, program: str | None,
                          problem: str, report: TestReport | None) -> None:
        self.campaign.append_batch([NewEvent("rollout.iteration", {
            "rollout_id": spec.rollout_id, "iteration": iteration,
            "call_key": key.idempotency_key(self.campaign.store.campaign_id, spec.stage), "program": program,
            "extract_problem": problem, "report": report.to_dict() if report else None}, self.actor)])

    def close(self) -> None:
        self._pool.shutdown(wait=True)
