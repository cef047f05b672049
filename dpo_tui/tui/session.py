"""The TUI's handle on one campaign: the open log, its plan, and one method per operator
action, each a call into the same services the headless runner uses.

Nothing here computes a domain result; it wires services together, names the operator as
the actor, and serialises access to the live state: the fold runs in whichever thread
appends (a worker), so readers in the UI thread take `lock` while they look.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpo_tui.campaign import budget, outlook, runs
from dpo_tui.campaign import pairs as pairs_stage
from dpo_tui.campaign.decisions import add_note
from dpo_tui.campaign.plan import Plan, load_plan
from dpo_tui.campaign.runids import RUN_ID, run_decision, training_plan
from dpo_tui.campaign.split import (already_frozen, approve_split, exclude_task, frozen_split, move_task, other_side,
                                    propose_split, split_to_approve, unfreeze_split)
from dpo_tui.campaign.state.pairs import PAIRS
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.suites import PlanTasks, load_plan_tasks
from dpo_tui.errors import DpoTuiError, InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import NewEvent, StoredEvent, open_store
from dpo_tui.provider.prices import PriceTable, load_prices


FIRST_FOLD = 20_000  # a read-only console folds this many events before its first frame
CATCH_UP_CHUNK = 2_000  # then folds the rest in a worker, this many per hold of the lock


class GuardedCampaign(Campaign):
    """A Campaign whose appends (and the fold they trigger) hold `lock`, so the UI thread can
    read a consistent state while a worker thread appends."""

    def __init__(self, store, *, fold_limit: int | None = None) -> None:  # noqa: ANN001 - EventStore
        self.lock = threading.RLock()
        super().__init__(store, fold_limit=fold_limit)

    def append(self, type_: str, payload: Any, *, actor: str) -> StoredEvent:
        with self.lock:
            return super().append(type_, payload, actor=actor)

    def append_batch(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        with self.lock:
            return super().append_batch(events)

    def seal(self, reason: str = "stage") -> StoredEvent | None:
        with self.lock:
            return super().seal(reason)

    def refresh(self, limit: int | None = None) -> list[StoredEvent]:
        with self.lock:
            return super().refresh(limit)

    def fold_more(self, limit: int) -> int:
        with self.lock:
            return super().fold_more(limit)


class ReadOnly(DpoTuiError):
    pass


@dataclass
class PlanContext:
    plan: Plan
    path: Path
    tasks: PlanTasks
    prices: PriceTable


class Session:
    def __init__(self, db: str | Path, *, plan_path: str | Path | None = None, readonly: bool = False,
                 actor: str = "operator:unknown", first_fold: int | None = None) -> None:
        """The console shows the first `first_fold` (FIRST_FOLD) events at once; catch_up()
        folds the rest (writes, when writable, are refused by the campaign until it has)."""
        self.db = Path(db).expanduser().resolve()
        self.readonly = readonly
        self.actor = actor
        store = open_store(self.db, readonly=readonly)
        self.log_events = store.head()[0]  # the log's size at open (catch_up's goal)
        self.campaign: GuardedCampaign = GuardedCampaign(store, fold_limit=first_fold or FIRST_FOLD)
        self.catching_up = self.campaign.state.last_seq < self.log_events
        self._plan_path = plan_path
        self.lock = self.campaign.lock
        self.plan_error: str | None = None
        self.plan: PlanContext | None = None
        self._tokenizer = None
        self._backend_lock = threading.Lock()
        self._backend_stack: contextlib.ExitStack | None = None
        self._backend: tuple[Any, str] | None = None
        self._mgmt = None
        self.stop = threading.Event()  # set when the console quits: running stages stop following jobs
        self.run_id, self.train_overrides = RUN_ID, {}  # the training run Train and Eval act on
        self.label_swap = False
        self._load_plan(plan_path, record=not self.catching_up)  # (recorded once the whole log is read)
        self._resume_run()

    def catch_up(self, chunk: int = CATCH_UP_CHUNK) -> int:
        """Fold the next `chunk` events of a log opened partly folded (a worker calls it until
        `catching_up` is False); the plan and the training run are re-read once caught up.
        Returns how many it folded."""
        n = self.campaign.fold_more(chunk)
        if n < chunk or self.campaign.state.last_seq >= self.log_events:
            with self.lock:
                recorded = self.campaign.state.part(PLAN).hash
            if self.plan is None or recorded != self.plan.plan.hash():
                self._load_plan(self._plan_path)
            self._resume_run()
            self.catching_up = False
        return n

    # -- plan ----------------------------------------------------------------------------

    def _load_plan(self, plan_path: str | Path | None, *, record: bool = True) -> None:
        """The plan given with --plan, else the one the campaign recorded (its file, or the
        recorded copy when the file moved); a --plan that differs is recorded when `record`."""
        self.plan_error = None
        recorded = self.campaign.state.part(PLAN)
        try:
            prices = load_prices()
            if plan_path is not None:
                path = Path(plan_path)
                plan = load_plan(path, prices=prices)
            elif recorded.plan is not None:
                last = self._recorded_path()
                path = Path(last) if last else self.db.with_suffix(".plan.toml")
                plan = load_plan(path, prices=prices) if path.exists() else Plan.model_validate(recorded.plan)
                if plan.hash() != recorded.hash:
                    plan = Plan.model_validate(recorded.plan)
            else:
                self.plan_error = "this campaign has no plan yet: open it with --plan PLAN.toml to act on it"
                return
            self.plan = PlanContext(plan, path, load_plan_tasks(plan), prices)
        except DpoTuiError as exc:
            self.plan_error = exc.message
            return
        if record and plan_path is not None and not self.readonly and recorded.hash != plan.hash():
            from dpo_tui.campaign.runner import record_plan  # the runner (and the SDK) only when writing

            record_plan(self.campaign, plan, path, actor=self.actor)

    def _recorded_path(self) -> str | None:
        seq = None
        for row in self.campaign.store.rows(types=["plan.recorded"]):
            seq = row[0]
        return self.event_at(seq).payload["path"] if seq else None

    def event_at(self, seq: int) -> StoredEvent:
        with self.lock:  # one connection: never read while a worker is mid-append
            return self.campaign.store.event_at(seq)

    @property
    def backend_label(self) -> str:
        kind = self.plan.plan.backend.kind if self.plan else self.campaign.state.part(PLAN).backend
        return {"simulator": "simulated", None: "no backend"}.get(kind, kind or "no backend")

    def text(self, typed: str) -> str:
        """Text the operator typed, as it may be logged: secrets masked (the environment's API
        key, the backend's, anything key-like)."""
        from dpo_tui.provider.secrets import operator_text

        key = self._backend[0].api_key if self._backend is not None else None
        return operator_text(typed, [key.get_secret_value() if key is not None else None])

    def need_plan(self) -> PlanContext:
        if self.readonly:
            raise ReadOnly("read-only: actions are disabled (opened with --readonly)")
        if self.plan is None:
            raise InputError(self.plan_error or "no plan")
        return self.plan

    def tokenizer(self):
        if self._tokenizer is None:
            from dpo_tui.provider.tokenizer import get_tokenizer

            self._tokenizer = get_tokenizer()
        return self._tokenizer

    # -- backend -------------------------------------------------------------------------

    def backend(self) -> tuple[Any, str]:
        """(settings, backend label) for this console's life: the embedded simulator started
        once (stages and management actions share it, as jobs and endpoints live in it), or
        the real API's settings. Stopped by close()."""
        from dpo_tui.campaign.runner import backend_settings

        pc = self.need_plan()
        with self._backend_lock:
            if self._backend is None:
                stack = contextlib.ExitStack()
                self._backend = stack.enter_context(backend_settings(pc.plan, self.db))
                self._backend_stack = stack
            return self._backend

    def mgmt(self):
        """The management client (files, fine-tunes, endpoints) on the console's backend."""
        from dpo_tui.campaign.mgmt import mgmt_client

        settings, _label = self.backend()
        with self._backend_lock:
            if self._mgmt is None:
                self._mgmt = mgmt_client(settings, self.campaign)
            return self._mgmt

    # -- budget --------------------------------------------------------------------------

    def power(self) -> dict[str, Any] | None:
        """`dpo-tui power` for this campaign (the pilot's per-task pass rates once it ran, else
        the prior): the Budget pane and the confirmations show it; None without a plan."""
        from dpo_tui.campaign.power import pilot_rates, power_for

        pc = self.plan
        if pc is None:
            return None
        with self.lock:
            rates = pilot_rates(self.campaign)
        return power_for(pc.plan, pc.prices, n_pool=len(pc.tasks.pool), n_heldout=len(pc.tasks.heldout), rates=rates)

    def power_text(self) -> str:
        """The confirmations' line: what the planned eval can detect."""
        from dpo_tui.campaign.power import power_summary

        out = self.power()
        return power_summary(out) if out is not None else ""

    def what_if(self, budget_changes: dict[str, Any], rollouts_changes: dict[str, Any]):
        """The estimate for the plan with these inputs changed (the service's; InputError naming
        the field the plan's own validation refuses)."""
        pc = self.plan
        if pc is None:
            raise InputError(self.plan_error or "no plan")
        return budget.what_if(pc.plan, pc.prices, n_pool=len(pc.tasks.pool), n_heldout=len(pc.tasks.heldout),
                              budget_changes=budget_changes, rollouts_changes=rollouts_changes)

    def record_what_if(self, budget_changes: dict[str, Any], rollouts_changes: dict[str, Any]) -> None:
        pc = self.need_plan()
        budget.record_what_if(self.campaign, pc.plan, pc.prices, n_pool=len(pc.tasks.pool),
                              n_heldout=len(pc.tasks.heldout), budget_changes=budget_changes,
                              rollouts_changes=rollouts_changes, actor=self.actor)

    def cap_state(self) -> dict[str, Any]:
        """The cap in force, who set it, and what is spent and estimated against it."""
        with self.lock:
            return outlook.cap(self.campaign, self.plan.plan if self.plan else None)

    fits_cap = staticmethod(outlook.fits_cap)  # (fits, left): the check a stage's start makes

    @staticmethod
    def refused_by_cap(estimate_usd: float | None, what: str, cap_usd: float, spend_usd: float) -> str | None:
        """Why `what` cannot start under the cap, in the service's words (None: it fits)."""
        from dpo_tui.campaign.approvals import refused_by_cap

        return None if estimate_usd is None else refused_by_cap(what, estimate_usd, cap_usd, spend_usd)

    @staticmethod
    def parse_cap(raw: str) -> float:
        """The operator's cap text as USD; InputError naming what is wrong (the service's rule)."""
        from dpo_tui.campaign.budget import parse_cap

        return parse_cap(raw)

    @staticmethod
    def check_cap_reason(reason: str) -> str:
        from dpo_tui.campaign.budget import check_cap_reason

        return check_cap_reason(reason)

    def set_cap(self, raw: str, reason: str) -> float:
        """Set the budget cap every later call is held against (logged with the reason); a
        campaign without a plan yet can have one too, as with `dpo-tui cap`."""
        from dpo_tui.campaign.budget import set_operator_cap

        if self.readonly:
            raise ReadOnly("read-only: actions are disabled (opened with --readonly)")
        return set_operator_cap(self.campaign, raw, self.text(reason), actor=self.actor)

    # -- split ---------------------------------------------------------------------------

    def propose_split(self) -> None:
        pc = self.need_plan()
        propose_split(self.campaign, pc.plan, pc.tasks, actor=self.actor)

    def move(self, task_id: str, to: str | None = None, reason: str = "") -> str:
        """Move a task to `to` (None: the other side, train <-> test); returns where it went."""
        pc = self.need_plan()
        to = to or other_side(self.campaign, task_id)
        move_task(self.campaign, pc.plan, pc.tasks, task_id, to, actor=self.actor, reason=self.text(reason))
        return to

    def exclude(self, task_id: str, reason: str) -> None:
        pc = self.need_plan()
        exclude_task(self.campaign, pc.plan, pc.tasks, task_id, reason=self.text(reason), actor=self.actor)

    def approve_split(self) -> str:
        self.need_plan()
        return approve_split(self.campaign, actor=self.actor)

    def other_side(self, task_id: str) -> str:
        """Where a move sends the task (train <-> test), as `dpo-tui split move` without --to."""
        with self.lock:
            return other_side(self.campaign, task_id)

    def split_to_approve(self):
        """The split an approval would freeze (InputError, the service's, when there is none)."""
        with self.lock:
            return split_to_approve(self.campaign)

    already_frozen = staticmethod(already_frozen)  # what approving a frozen split says (as `dpo-tui split approve`)

    def frozen_split(self):
        """The frozen split an unfreeze would open (InputError, the service's, when not frozen)."""
        with self.lock:
            return frozen_split(self.campaign)

    def unfreeze_split(self, reason: str) -> None:
        self.need_plan()
        unfreeze_split(self.campaign, reason=self.text(reason), actor=self.actor)

    def built_on_split(self) -> dict[str, Any]:
        """What was done on the frozen split (an unfreeze leaves it in the log, tied to its hash)."""
        with self.lock:
            return outlook.built_on_split(self.campaign)

    # -- rollouts ------------------------------------------------------------------------

    def rollout_plan(self) -> dict[str, Any]:
        """What "start rollouts" would do next and what it is estimated to cost (the service's)."""
        pc = self.need_plan()
        with self.lock:
            return outlook.rollouts(self.campaign, pc.plan)

    def note(self, text: str, stage: str | None = None) -> int:
        """An operator's note (the service `dpo-tui note` calls): the console's notes on a
        running stage (pause, resume, cancel, concurrency)."""
        if self.readonly:
            raise ReadOnly("read-only: actions are disabled (opened with --readonly)")
        return add_note(self.campaign, self.text(text), stage=stage, actor=self.actor)

    def approve(self, decision: str, stage: str, *, reason: str, estimate_usd: float | None) -> bool:
        """The operator's go after a confirmation, through the service `dpo-tui approve` calls
        (it re-checks the cap); refused when the stage has moved on from what was shown."""
        from dpo_tui.campaign import approvals

        pc = self.need_plan()
        with self.lock:
            p = approvals.pending(self.campaign, pc.plan, pc.prices, stage, self.run_id, label_swap=self.label_swap)
            if p["decision"] != decision or p["estimate_usd"] != estimate_usd:
                raise InputError(f"the {stage} stage moved on since the confirmation (it now waits for "
                                 f"{p['decision']} at ${p['estimate_usd'] or 0:.3f}): look again")
            approvals.approve(self.campaign, pc.plan, pc.prices, stage, self.run_id, reason=self.text(reason),
                              actor=self.actor, label_swap=self.label_swap)
        return True

    def run_stages(self, until: str, *, progress, on_engine: Callable | None = None) -> tuple[int, str, str]:
        """Run the plan's stages up to `until` through the runner's own path (blocking: call it
        from a worker thread). Decisions the operator has not recorded stop it (waiting)."""
        import asyncio

        from dpo_tui.campaign.runner import make_ctx
        from dpo_tui.campaign.runner import run_stages as run_plan_stages

        pc = self.need_plan()
        settings, backend = self.backend()
        ctx = make_ctx(pc.plan, pc.path, self.campaign, pc.tasks, settings, backend, yes=False, progress=progress,
                       run_id=self.run_id, train_plan=training_plan(pc.plan, self.train_overrides),
                       label_swap=self.label_swap, client=self._mgmt)  # the console's client, once it exists
        ctx.on_engine, ctx.stop, ctx.console = on_engine, self.stop, True
        return asyncio.run(run_plan_stages(ctx, until))

    def train_plan(self) -> dict[str, Any]:
        """What "train" would do next: prepare (upload and Together's price estimate, free) or
        launch (the estimate to confirm against the remaining budget)."""
        pc = self.need_plan()
        stale = self.export_staleness()
        with self.lock:
            p = outlook.training(self.campaign, pc.plan, self.run_id, overrides=self.train_overrides, stale=stale,
                                 decision=run_decision("launch_training", self.run_id))
            if p["phase"] == "launch":
                p["launch"] = outlook.launch(self.campaign, training_plan(pc.plan, self.train_overrides), self.run_id)
            return p

    @staticmethod
    def launch_lines(launch: dict[str, Any]) -> list[str]:
        """What a launch commits to, as the service words it (the CLI's waiting message too)."""
        return outlook.launch_lines(launch)

    def eval_plan(self) -> dict[str, Any]:
        pc = self.need_plan()
        with self.lock:
            return outlook.evaluation(self.campaign, pc.plan, pc.prices, self.run_id,
                                      decision=run_decision("run_eval", self.run_id))

    def gate(self) -> dict[str, Any] | None:
        """The latest eval run's gate (None before it decided) and the decisions an override can choose."""
        with self.lock:
            return outlook.gate(self.campaign)

    @staticmethod
    def check_override_reason(reason: str) -> str:
        """The service's own rule for an override's written reason (InputError when refused)."""
        from dpo_tui.campaign.evaluation import check_override_reason

        return check_override_reason(reason)

    def override_gate(self, decision: str, reason: str) -> None:
        """Override the latest eval run's gate decision, as the operator, with a written reason
        (the service `dpo-tui override` calls too)."""
        from dpo_tui.campaign import evaluation

        self.need_plan()
        evaluation.override_gate(self.campaign, decision, reason=self.text(reason), actor=self.actor)

    # -- pairs ---------------------------------------------------------------------------

    def preview_funnel(self, min_margin: float, per_task_cap: int) -> dict[str, int]:
        """The funnel these thresholds would give (the service's; nothing is logged)."""
        pc = self.plan
        if pc is None:
            raise InputError(self.plan_error or "no plan")
        with self.lock:
            return pairs_stage.preview_funnel(self.campaign, pc.plan, pc.tasks, self.tokenizer(),
                                              min_margin=min_margin, per_task_cap=per_task_cap)

    def set_pair_thresholds(self, min_margin: float, per_task_cap: int, reason: str) -> dict[str, int] | None:
        """Apply the Pairs pane's thresholds as a logged decision (the service `dpo-tui pairs
        thresholds` calls): the funnel is rebuilt with them."""
        pc = self.need_plan()
        with self.lock:
            return pairs_stage.set_thresholds(self.campaign, pc.plan, pc.tasks, self.tokenizer(), min_margin=min_margin,
                                              per_task_cap=per_task_cap, reason=reason, actor=self.actor)

    def pair_thresholds(self) -> dict[str, Any] | None:
        """The thresholds in force, the operator's (`operator`: True) else the plan's; None
        without either."""
        with self.lock:
            t = self.campaign.state.part(PAIRS).thresholds
            if t is None and self.plan is not None:
                f = pairs_stage.filters_in_force(self.campaign, self.plan.plan)
                t = {"min_margin": f.min_margin, "per_task_cap": f.per_task_cap}
        return None if t is None else {**t, "operator": self.campaign.state.part(PAIRS).thresholds is not None}

    def build_pairs(self) -> None:
        pc = self.need_plan()
        pairs_stage.build(self.campaign, pc.plan, pc.tasks, self.tokenizer(), actor=self.actor)

    def decide_pair(self, pair_id: str, decision: str, reason: str = "") -> None:
        pc = self.need_plan()
        pairs_stage.decide(self.campaign, pc.plan, pc.tasks, self.tokenizer(), pair_id, decision,
                           reason=self.text(reason) or f"{decision}ed in the TUI", actor=self.actor)

    def export_pairs(self) -> dict[str, Any]:
        pc = self.need_plan()
        return pairs_stage.export_decided(self.campaign, pc.plan, pc.tasks, self.tokenizer(), actor=self.actor,
                                          reason="exported in the TUI")

    def export_plan(self) -> dict[str, Any] | None:
        """What an export would write (kept pairs, why the current one is stale); None before pairs are built."""
        stale = self.export_staleness()
        with self.lock:
            return outlook.export(self.campaign, stale=stale, plan=self.plan.plan if self.plan else None)

    def build_plan(self) -> dict[str, Any]:
        """What building the pairs works from: the rollout stage's finished/planned counts."""
        with self.lock:
            return outlook.build(self.campaign, self.plan.plan if self.plan else None)

    @staticmethod
    def exported_files(export: dict[str, Any]) -> list[str]:
        return outlook.exported_files(export)

    def export_staleness(self) -> str | None:
        """Why the current export misses a later accept or reject (None when it is current)."""
        from dpo_tui.campaign.train import stale_export

        with self.lock:
            return stale_export(self.campaign, label_swap=self.label_swap)

    def rollout_program(self, rollout_id: str) -> str:
        with self.lock:
            rec = self.campaign.state.part(ROLLOUTS).by_id.get(rollout_id)
            seq = rec.finished["seq"] if rec and rec.finished else None
        return self.event_at(seq).payload["final_program"] if seq else ""

    # -- training and endpoints ------------------------------------------------------------

    def _resume_run(self) -> None:
        """Act on the newest training run in the log, with the hyperparameters it was launched
        (or priced) with, so reopening the console carries on where it stopped."""
        if self.plan is None:
            return
        with self.lock:
            self.run_id, self.train_overrides, self.label_swap = runs.resumed_run(self.campaign, self.plan.plan)

    def check_new_run(self, run_id: str, raw: dict[str, str]) -> dict[str, Any]:
        """Validate a new run's id and hyperparameters (the service's); returns the overrides."""
        pc = self.need_plan()
        with self.lock:
            return runs.check_new_run(self.campaign, pc.plan, run_id, raw)

    def new_run(self, run_id: str, raw: dict[str, str]) -> None:
        """Train and Eval act on a new run from here on (nothing is logged until it is prepared)."""
        overrides = self.check_new_run(run_id, raw)
        self.run_id, self.train_overrides, self.label_swap = run_id.strip(), overrides, False

    def next_run_id(self) -> str:
        with self.lock:
            return runs.next_run_id(self.campaign)

    def training_run(self) -> dict[str, Any] | None:
        """The run Train acts on as the log has it, with its job events (only its id when the
        log has nothing of it yet; None before any training)."""
        with self.lock:
            part = self.campaign.state.parts.get("training")
            run = part.runs.get(self.run_id) if part is not None else None
            if run is None:
                return {"run_id": self.run_id, "events": []} if self.run_id != RUN_ID else None
            return {**run.to_json(), "events": list(run.events)}

    def training_metrics(self) -> dict[str, Any]:
        """The Train run's metrics as the log has them (curves, last values, failure signs)."""
        with self.lock:
            part = self.campaign.state.parts.get("training_metrics")
            run = part.runs.get(self.run_id) if part is not None else None
            return run.to_json() if run is not None else {}

    def cancel_training(self, reason: str) -> str:
        """Ask Together to cancel the run's job (logged first, with the reason): the service
        `dpo-tui cancel` calls too."""
        from dpo_tui.campaign import train

        self.need_plan()
        return train.cancel_training(self.campaign, self.mgmt, self.run_id, reason=self.text(reason), actor=self.actor)

    def cancellable(self) -> None:
        """InputError when there is no job to cancel (the service's message), before asking why."""
        from dpo_tui.campaign import train

        with self.lock:
            train.cancellable(self.campaign, self.run_id)

    def running_endpoints(self) -> list[dict[str, Any]]:
        from dpo_tui.campaign.state.train import ENDPOINTS

        with self.lock:
            return [dict(e) for e in self.campaign.state.part(ENDPOINTS).running()]

    def stop_endpoint(self, endpoint_id: str, reason: str) -> None:
        """Stop one dedicated endpoint by hand (scale to zero, delete, log its billed minutes)."""
        from dpo_tui.campaign import serving

        self.need_plan()
        with self.lock:
            serving.endpoint_record(self.campaign, endpoint_id)  # an unknown id: refused before any call
        serving.stop(self.campaign, self.mgmt(), endpoint_id, reason=self.text(reason), actor=self.actor)

    def close(self) -> None:
        self.stop.set()
        with self._backend_lock:
            stack, self._backend_stack, self._backend, self._mgmt = self._backend_stack, None, None, None
        if stack is not None:
            stack.close()
        self.campaign.close()
