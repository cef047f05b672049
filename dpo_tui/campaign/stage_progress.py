"""One progress model for every front end: finished against planned per stage, read from the
folded state and the plan the log recorded, and the run's mode. The console's header, its
Rollouts and Eval panes, the read-only console and the headless progress line all read it,
so they cannot disagree.

Planned numbers are the plan's, never what happened to have started: the rollouts stage is
train tasks x `rollouts.rollouts_per_task` (its pilot `pilot.pilot_size` of those, run first),
the eval is 2 arms x `eval.seeds` x the tasks of `eval.suites` (what `evaluation.eval_specs`
runs). Rates (ETA, $/min) come from `StableRate`: smoothed over finished rollouts, nothing
until enough have finished.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dpo_tui.campaign.pilot import pilot_size
from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.allocation import planned_rollouts
from dpo_tui.campaign.state.budget import BUDGET
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.events.fold import CampaignState

EVAL_ROLES = ("base", "tuned")
MODES = ("running", "paused", "stopping", "waiting")


@dataclass(frozen=True)
class Count:
    """Finished against planned; `planned` None while the plan or the split does not say yet."""

    finished: int = 0
    planned: int | None = None
    running: int = 0  # started, neither finished nor errored
    passed: int = 0
    errored: int = 0

    def text(self) -> str:
        return f"{self.finished}/{self.planned if self.planned is not None else '?'}"

    @property
    def left(self) -> int:
        return max(0, (self.planned or 0) - self.finished)


@dataclass(frozen=True)
class EndpointView:
    endpoint_id: str
    role: str
    state: str  # provisioning | ready | stopped
    provisioning_s: float | None  # start to ready; so far while provisioning
    usd_per_min: float
    cost_usd: float  # booked so far

    def text(self) -> str:
        prov = "" if self.provisioning_s is None else f"{self.provisioning_s:.0f} s"
        if self.state == "provisioning":
            return f"{self.role} endpoint provisioning ({prov} so far)"
        return f"{self.role} endpoint {self.state}" + (f" (provisioned in {prov})" if prov else "")


@dataclass(frozen=True)
class EvalProgress:
    run_id: str | None = None
    samples: Count = Count()
    endpoints: tuple[EndpointView, ...] = ()
    spend_usd: float = 0.0  # this run's eval: its samples' calls and its endpoints' minutes so far
    endpoint_usd_per_min: float = 0.0  # what its running endpoints cost a minute
    decided: str | None = None  # the gate's decision in force, once decided

    @property
    def active(self) -> bool:
        """The eval has begun (an endpoint or a sample) and the gate has not decided."""
        return self.decided is None and bool(self.endpoints or self.samples.finished or self.samples.running
                                              or self.samples.errored)


@dataclass(frozen=True)
class CampaignProgress:
    pilot: Count
    rollouts: Count  # every paid rollout, the pilot's included
    eval: EvalProgress
    phase: str | None  # pilot | rollouts: where the rollouts stage is (None before it starts)
    mode: str | None = None  # running | paused | stopping | waiting (None: nothing runs)

    def current(self, label: str | None = None) -> Count:
        """The count a progress bar shows for `label` (an engine run's: pilot, rollouts, eval),
        else for the rollouts stage's phase."""
        label = label or self.phase
        return {"pilot": self.pilot, "eval": self.eval.samples}.get(label or "", self.rollouts)

    def rollouts_text(self) -> str:
        """The rollouts stage in a few characters: `pilot 5/12` until the pilot is done, then
        `17/32`; `-` before anything started (the header's `roll:` and the body say the same)."""
        if self.phase is None:
            return "-"
        return f"pilot {self.pilot.text()}" if self.phase == "pilot" else self.rollouts.text()

    def eval_text(self) -> str:
        """`7/30` while the eval runs, the gate's decision once it decided, else `-`."""
        if self.eval.decided:
            return self.eval.decided
        return self.eval.samples.text() if self.eval.active else "-"


def run_mode(engine_status: str | None, *, working: bool, stopping: bool = False,
             waiting: bool = False) -> str | None:
    """The run's mode in one word from what a front end knows of it: an engine's status
    (EngineProgress.status), whether a stage runs, whether it is being stopped, whether the
    last run ended waiting for the operator's decision."""
    if stopping or engine_status == "cancelling":
        return "stopping"
    if engine_status == "paused":
        return "paused"
    if working or engine_status == "running":
        return "running"
    return "waiting" if waiting else None


def fold_mode(cp: CampaignProgress) -> str | None:
    """The mode as the log alone shows it (a read-only follower): `running` while rollouts or
    eval samples are in flight (a run killed mid-stage leaves them so until it resumes)."""
    return "running" if cp.rollouts.running or cp.eval.samples.running else None


def mode_text(what: str | None, mode: str | None) -> str | None:
    """The header's words for the mode: `pilot paused`, `stopping pilot`, `waiting for a decision`."""
    if mode is None:
        return None
    if mode == "waiting":
        return f"{what}: waiting for your decision" if what else "waiting for your decision"
    if mode == "stopping":
        return f"stopping {what}" if what else "stopping"
    return f"{what} {mode}" if what else mode


_PLANS: dict[str, Plan] = {}


def recorded_plan(state: CampaignState) -> Plan | None:
    """The plan the log recorded last (the one the run runs under), validated once per hash."""
    p = state.part(PLAN)
    if p.plan is None or p.hash is None:
        return None
    if p.hash not in _PLANS:
        try:
            _PLANS[p.hash] = Plan.model_validate(p.plan)
        except ValueError:
            return None
    return _PLANS[p.hash]


def campaign_progress(state: CampaignState, *, plan: Plan | None = None, run_id: str | None = None,
                      mode: str | None = None, now: datetime | None = None) -> CampaignProgress:
    """Every stage's finished/planned from the fold (call under the campaign's lock when
    another thread appends). `plan`: the plan in force (default: the one the log recorded);
    `run_id`: whose eval (default: the run whose eval samples started last)."""
    plan = plan or recorded_plan(state)
    r, split = state.part(ROLLOUTS), state.part(SPLIT)
    train = len(split.split.train) if split.split is not None else 0
    planned = (planned_rollouts(state, plan.rollouts.allocation, train, plan.rollouts.rollouts_per_task)
               if plan is not None and train else None)
    pilot_planned = pilot_size(plan, train) if plan is not None and train else None
    stage = "rollouts"
    fin, started = r.finished.get(stage, 0), r.started.get(stage, 0)
    err = r.errored.get(stage, 0)
    rollouts = Count(fin, planned, max(0, started - fin - err), r.passed.get(stage, 0), err)
    budget = state.part(BUDGET)
    calibrated = budget.calibrated is not None
    if pilot_planned is not None and (calibrated or fin >= pilot_planned):
        ids = budget.pilot_rollout_ids  # the rollouts the pilot calibrated on: how many of them passed
        pilot_passed = sum(1 for i in ids if (rec := r.by_id.get(i)) is not None and rec.finished
                           and rec.finished["passed"]) if ids else min(r.passed.get(stage, 0), pilot_planned)
        pilot = Count(pilot_planned, pilot_planned, 0, pilot_passed)
    else:
        pilot = Count(fin, pilot_planned, rollouts.running, rollouts.passed, err)
    phase = None if not started and not calibrated else ("rollouts" if calibrated or not pilot_planned else "pilot")
    return CampaignProgress(pilot, rollouts, eval_progress(state, plan, run_id, now=now), phase, mode)


def _eval_planned(state: CampaignState, plan: Plan | None) -> int | None:
    """2 arms x seeds x the eval suites' tasks: the test split and the held-out suite as the
    split logged it (`evaluation.suite_tasks`, `eval_specs`)."""
    sp = state.part(SPLIT)
    if plan is None or sp.split is None:
        return None
    tasks = len(sp.split.test) if "test" in plan.eval.suites else 0
    tasks += len(sp.heldout) if "heldout" in plan.eval.suites else 0
    return 2 * len(plan.eval.seeds) * tasks


def _eval_counts(state: CampaignState, run_id: str | None) -> tuple[str | None, list[int], float]:
    """(the run, [finished, running, passed, errored] of its eval samples, their cost so far)."""
    by_run: dict[str, list[float]] = {}
    last = None
    for rec in state.part(ROLLOUTS).by_id.values():
        if rec.stage != "eval":
            continue
        last = rec.run_id
        c = by_run.setdefault(rec.run_id or "", [0, 0, 0, 0, 0.0])
        if rec.finished is not None:
            c[0] += 1
            c[2] += bool(rec.finished["passed"])
            c[4] += rec.finished["cost_usd"]
        elif rec.errored is not None:
            c[3] += 1
            c[4] += rec.errored.get("cost_usd", 0.0)
        else:
            c[1] += 1
    rid = run_id or last or getattr(state.parts.get("training"), "latest", None)
    c = by_run.get(rid or "", [0, 0, 0, 0, 0.0])
    return rid, [int(x) for x in c[:4]], c[4]


def _parse(ts: str | None) -> datetime | None:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if ts else None


def _endpoints(state: CampaignState, run_id: str | None, now: datetime) -> list[EndpointView]:
    part = state.parts.get("endpoint")
    out = []
    for ep in (part.by_id.values() if part is not None else ()):
        if ep.get("role") not in EVAL_ROLES or not (ep.get("run_id") == run_id or run_id in (ep.get("adapters") or {})):
            continue
        start, ready = _parse(ep.get("started_at")), _parse(ep.get("ready_at"))
        end = ready or (now if ep["state"] == "provisioning" else None)
        prov = (end - start).total_seconds() if start and end else None
        per_min = ep.get("price_cents_per_hour", 0) / 100 / 60
        out.append(EndpointView(ep["endpoint_id"], ep["role"], ep["state"], prov, per_min, ep.get("cost_usd", 0.0)))
    return out


def eval_progress(state: CampaignState, plan: Plan | None, run_id: str | None = None, *,
                  now: datetime | None = None) -> EvalProgress:
    rid, (fin, running, passed, err), calls_usd = _eval_counts(state, run_id)
    eps = _endpoints(state, rid, now or datetime.now(UTC))
    ev = state.parts.get("eval")
    run = ev.runs.get(rid or "") if ev is not None else None
    planned = _eval_planned(state, plan)
    if run is not None and run.looks and run.looks[-1]["decision"] != "continue":  # a sequential eval stopped
        planned = run.looks[-1]["samples_seen"]
    return EvalProgress(rid, Count(fin, planned, running, passed, err), tuple(eps),
                        calls_usd + sum(e.cost_usd for e in eps),
                        sum(e.usd_per_min for e in eps if e.state != "stopped"),
                        run.decision if run is not None else None)


def metered_usd(state: CampaignState) -> float:
    """The campaign's spend less what endpoint minutes booked: what calls cost (a rate of it
    over finished rollouts is smooth; endpoint minutes are booked a minute at a time, so their
    rate is their price, `endpoints_usd_per_min`)."""
    part = state.parts.get("endpoint")
    booked = sum(ep.get("cost_usd", 0.0) for ep in part.by_id.values()) if part is not None else 0.0
    return state.parts["spend"].total_usd - booked


def endpoints_usd_per_min(state: CampaignState) -> float:
    """What the running endpoints (any role: the eval's, a dedicated generator) cost a minute."""
    part = state.parts.get("endpoint")
    return sum(ep.get("price_cents_per_hour", 0) / 100 / 60 for ep in part.running()) if part is not None else 0.0


@dataclass
class StableRate:
    """Rollouts per second and calls' $ per minute, smoothed over finished rollouts: each
    time the finished count grows the meter notes (time, finished, $); the rate is over the
    newest `window` of those notes and is None until they span `min_finished` finished rollouts.
    A clock sample with nothing finished moves nothing. `key` names what is counted (e.g. the
    phase): a new key, or a count that went down, starts over."""

    min_finished: int = 8
    window: int = 40
    clock: Any = time.monotonic
    _key: Any = None
    _notes: deque = field(default_factory=deque)

    def observe(self, key: Any, finished: int, usd: float, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if key != self._key or (self._notes and finished < self._notes[-1][1]):
            self._key, self._notes = key, deque()
        if not self._notes or finished > self._notes[-1][1]:
            self._notes.append((now, finished, usd))
            while len(self._notes) > self.window + 1:
                self._notes.popleft()

    def _span(self) -> tuple[float, int, float] | None:
        if len(self._notes) < 2:
            return None
        (t0, f0, u0), (t1, f1, u1) = self._notes[0], self._notes[-1]
        if f1 - f0 < self.min_finished or t1 <= t0:
            return None
        return t1 - t0, f1 - f0, u1 - u0

    def per_s(self) -> float | None:
        span = self._span()
        return span[1] / span[0] if span else None

    def usd_per_min(self) -> float | None:
        span = self._span()
        return max(0.0, span[2]) / (span[0] / 60) if span else None

    def eta_s(self, left: int, now: float | None = None) -> float | None:
        """Seconds to finish `left` more at the stable rate, counted from the last finish."""
        rate = self.per_s()
        if rate is None:
            return None
        since = (self.clock() if now is None else now) - self._notes[-1][0]
        return max(0.0, left / rate - since)


def eta_text(eta_s: float | None, mode: str | None = "running") -> str:
    """`ETA 42s` once the rate is stable; `ETA …` until then; `ETA paused` while paused;
    `ETA -` while nothing runs."""
    if mode == "paused":
        return "ETA paused"
    if mode not in ("running", "stopping"):
        return "ETA -"  # nothing runs
    if eta_s is None:
        return "ETA …"
    return f"ETA {eta_s:.0f}s" if eta_s < 120 else f"ETA {eta_s / 60:.0f} min"


def rate_text(usd_per_min: float | None) -> str:
    return "$…/min" if usd_per_min is None else f"${usd_per_min:.3f}/min"


def live_rates(meter: StableRate, progress: CampaignProgress, state: CampaignState, label: str | None = None,
               now: float | None = None) -> tuple[str, str]:
    """(the ETA, the $/min) of `label`'s count (default: the rollouts stage's phase) as every
    front end shows them: `meter` is fed the state's finished count and calls' spend first;
    the $/min is the calls' stable rate plus the running endpoints' price."""
    count = progress.current(label)
    meter.observe(label or progress.phase, count.finished, metered_usd(state), now)
    usd = meter.usd_per_min()
    return (eta_text(meter.eta_s(count.left, now), progress.mode),
            rate_text(None if usd is None else usd + endpoints_usd_per_min(state)))
