"""Training and serving events, and their parts of the campaign state.

Lineage: pairs.exported (sha256) -> train.file_uploaded (file id) -> train.job_created
(job id) -> train.job_finished (output model) -> endpoint.started (endpoint, deployment).
A campaign can hold several training runs from the same frozen export (`run_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.campaign.state.pairs import PAIRS, PairsState
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.events.core import add_spend
from dpo_tui.events.fold import CampaignState, invariant, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

TERMINAL = ("completed", "cancelled", "error", "user_error")


@event_type("train.file_uploaded", version=1)
class FileUploaded(Payload):
    export_sha256: str
    file_id: str
    filename: str
    bytes: int
    processing_status: str | None
    validation_report: dict[str, Any] | None = None
    sha256: str | None = None  # of the bytes uploaded (the export's, or its training part when some are held back)
    validation_file_id: str | None = None  # the held-back pairs, uploaded as the job's validation file
    validation_filename: str | None = None
    validation_sha256: str | None = None
    validation_share: float = 0.0
    validation_seed: int | None = None
    held_back_tasks: list[str] = Field(default_factory=list)


@event_type("train.price_estimated", version=1)
class PriceEstimated(Payload):
    run_id: str
    file_id: str
    model: str
    estimated_usd: float
    estimated_tokens: int
    remaining_budget_usd: float
    limits: dict[str, Any]
    source: str = "together estimate-price"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)  # what was priced (empty in older logs)


@event_type("train.job_requested", version=1)
class JobRequested(Payload):
    """Written before the create call: a crash between the two is reattached, never repeated."""

    run_id: str
    file_id: str
    model: str
    suffix: str
    hyperparameters: dict[str, Any]
    plan_hash: str
    split_hash: str
    export_sha256: str
    validation_file_id: str | None = None


@event_type("train.job_created", version=1)
class JobCreated(Payload):
    run_id: str
    job_id: str
    status: str
    reattached: bool = False


@event_type("train.job_status", version=1)
class JobStatus(Payload):
    run_id: str
    job_id: str
    status: str
    new_events: list[dict[str, Any]] = Field(default_factory=list)


@event_type("train.job_finished", version=1)
class JobFinished(Payload):
    run_id: str
    job_id: str
    status: str
    output_model: str | None
    model_object_id: str | None = None
    adapter_object_id: str | None = None  # the registry model of a LoRA job's adapter (attachable to a deployment)
    adapter_object_name: str | None = None  # what chat calls name to reach it there
    token_count: int = 0
    price_usd: float = Field(ge=0)
    total_price_nanodollars: int | None = None


@event_type("train.cancel_requested", version=1)
class CancelRequested(Payload):
    run_id: str
    job_id: str
    reason: str = Field(min_length=1)


@event_type("endpoint.started", version=1)
class EndpointStarted(Payload):
    run_id: str
    role: str  # base | tuned (the eval's) | generator (the rollouts')
    endpoint_id: str
    deployment_id: str
    name: str
    model: str  # what the deployment serves
    chat_model: str  # what chat calls name
    instance: str
    price_cents_per_hour: int
    started_at: str  # measured by the service (UTC); the fold never reads a clock
    adopted: bool = False  # created by a run that died before logging it; found by name, billed from its creation
    replicas: int = Field(1, ge=1)  # price_cents_per_hour is every replica's together


@event_type("endpoint.ready", version=1)
class EndpointReady(Payload):
    endpoint_id: str
    ready_at: str


@event_type("endpoint.reused", version=1)
class EndpointReused(Payload):
    """A running campaign endpoint a crashed run left, used by the resume instead of stopped
    and deployed again (campaign/serving.py `reuse`); it bills on from its start."""

    endpoint_id: str
    deployment_state: str  # as Together reported it when reused
    at: str


@event_type("endpoint.adapter_attached", version=1)
class AdapterAttached(Payload):
    """A run's tuned LoRA attached to a running base deployment (campaign/serving.py
    `attach_adapter`): base and tuned on one deployment, one endpoint's minutes."""

    endpoint_id: str
    deployment_id: str
    run_id: str
    adapter_id: str  # Together's attachment id (dad_...)
    adapter_model_id: str
    chat_model: str  # what the tuned arm's chat calls name
    at: str


@event_type("endpoint.stopped", version=1)
class EndpointStopped(Payload):
    endpoint_id: str
    stopped_at: str
    minutes: int = Field(ge=0)  # billed minutes (started minutes of a running replica)
    cost_usd: float = Field(ge=0)
    reason: str


@event_type("endpoint.billed", version=1)
class EndpointBilled(Payload):
    """Started minutes of a running endpoint booked as they begin (campaign/cap.py), so live
    spend and the cap see them; `endpoint.stopped` books whatever is left."""

    endpoint_id: str
    minutes: int = Field(ge=1)  # billed minutes so far, in total
    cost_usd: float = Field(ge=0)  # their cost, in total
    at: str  # measured by the meter (UTC)


@dataclass
class TrainingRun:
    run_id: str
    file_id: str | None = None
    job_id: str | None = None
    status: str | None = None
    model: str | None = None
    output_model: str | None = None
    model_object_id: str | None = None
    adapter_object_id: str | None = None
    adapter_object_name: str | None = None
    price_usd: float | None = None
    estimated_usd: float | None = None
    estimated_hyperparameters: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    export_sha256: str | None = None  # the export whose file the job trained on (its upload's, by file id)
    requested_export_sha256: str | None = None  # the export the job request named
    split_hash: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    plan_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "file_id": self.file_id, "job_id": self.job_id, "status": self.status,
                "model": self.output_model, "base_model": self.model, "price_usd": self.price_usd,
                "estimated_usd": self.estimated_usd, "hyperparameters": self.hyperparameters,
                "export_sha256": self.export_sha256, "split_hash": self.split_hash, "job_events": len(self.events)}


@dataclass
class TrainingState:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # export sha256 -> upload

    def export_of_file(self, file_id: str | None) -> str | None:
        """The export sha256 of the file Together holds as `file_id` (None: no upload logged)."""
        found = [sha for sha, up in self.files.items() if up["file_id"] == file_id]
        return found[-1] if found else None
    runs: dict[str, TrainingRun] = field(default_factory=dict)
    latest: str | None = None

    def run(self, run_id: str) -> TrainingRun:
        return self.runs.setdefault(run_id, TrainingRun(run_id))

    def to_json(self) -> dict[str, Any]:
        latest = self.runs[self.latest].to_json() if self.latest in self.runs else {
            "file_id": None, "job_id": None, "status": None, "model": None, "price_usd": None, "hyperparameters": {}}
        return {**latest, "runs": {k: r.to_json() for k, r in self.runs.items()}}


@dataclass
class EndpointsState:
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def running(self) -> list[dict[str, Any]]:
        return [e for e in self.by_id.values() if e["state"] != "stopped"]

    def to_json(self) -> dict[str, Any]:
        last = list(self.by_id.values())[-1] if self.by_id else None
        return {"id": last["endpoint_id"] if last else None, "state": last["state"] if last else None,
                "minutes": sum(e.get("minutes", 0) for e in self.by_id.values()),
                "running": len(self.running()),
                "all": [{**{k: e.get(k) for k in ("endpoint_id", "role", "run_id", "state", "chat_model", "minutes",
                                                  "cost_usd", "price_cents_per_hour")},
                         "adapters": dict(e.get("adapters") or {})} for e in self.by_id.values()]}


TRAINING = state_part("training", factory=TrainingState, to_json=TrainingState.to_json)
ENDPOINTS = state_part("endpoint", factory=EndpointsState, to_json=EndpointsState.to_json)


@on("train.file_uploaded")
def _uploaded(state: CampaignState, event: StoredEvent) -> None:
    state.part(TRAINING).files[event.payload["export_sha256"]] = dict(event.payload)


@on("train.price_estimated")
def _estimated(state: CampaignState, event: StoredEvent) -> None:
    run = state.part(TRAINING).run(event.payload["run_id"])
    run.estimated_usd, run.file_id = event.payload["estimated_usd"], event.payload["file_id"]
    run.estimated_hyperparameters = dict(event.payload.get("hyperparameters") or {})


@on("train.job_requested")
def _requested(state: CampaignState, event: StoredEvent) -> None:
    t: TrainingState = state.part(TRAINING)
    p = event.payload
    run = t.run(p["run_id"])
    run.file_id, run.model, run.hyperparameters = p["file_id"], p["model"], p["hyperparameters"]
    run.export_sha256 = t.export_of_file(p["file_id"]) or p["export_sha256"]
    run.requested_export_sha256, run.split_hash, run.status = p["export_sha256"], p["split_hash"], "requested"
    run.plan_hash = p["plan_hash"]
    t.latest = p["run_id"]


@on("train.job_created", "train.job_status")
def _status(state: CampaignState, event: StoredEvent) -> None:
    run = state.part(TRAINING).run(event.payload["run_id"])
    run.job_id, run.status = event.payload["job_id"], event.payload["status"]
    if event.payload["job_id"] not in run.job_ids:
        run.job_ids.append(event.payload["job_id"])
    run.events.extend(event.payload.get("new_events", []))


@on("train.job_finished")
def _finished(state: CampaignState, event: StoredEvent) -> None:
    p = event.payload
    run = state.part(TRAINING).run(p["run_id"])
    run.job_id, run.status, run.output_model = p["job_id"], p["status"], p["output_model"]
    run.model_object_id, run.price_usd = p.get("model_object_id"), p["price_usd"]
    run.adapter_object_id, run.adapter_object_name = p.get("adapter_object_id"), p.get("adapter_object_name")
    add_spend(state, "training", p["price_usd"])


def endpoint_stage(role: str | None) -> str:
    """The spend stage an endpoint's minutes count in: a generator's in the rollouts it serves."""
    return "rollouts" if role == "generator" else "endpoint"


@on("endpoint.started")
def _ep_started(state: CampaignState, event: StoredEvent) -> None:
    state.part(ENDPOINTS).by_id[event.payload["endpoint_id"]] = {**event.payload, "state": "provisioning"}


@on("endpoint.reused")
def _ep_reused(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(ENDPOINTS).by_id.get(event.payload["endpoint_id"])
    if ep is not None:
        ep["reused"] = ep.get("reused", 0) + 1


@on("endpoint.adapter_attached")
def _ep_adapter(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(ENDPOINTS).by_id.get(event.payload["endpoint_id"])
    if ep is not None:
        ep.setdefault("adapters", {})[event.payload["run_id"]] = event.payload["chat_model"]


@on("endpoint.ready")
def _ep_ready(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(ENDPOINTS).by_id.get(event.payload["endpoint_id"])
    if ep is not None:
        ep["state"], ep["ready_at"] = "ready", event.payload["ready_at"]


@on("endpoint.stopped")
def _ep_stopped(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(ENDPOINTS).by_id.get(event.payload["endpoint_id"])
    if ep is not None and ep["state"] != "stopped":
        # what the meter booked while it ran is spent already: add only the rest
        add_spend(state, endpoint_stage(ep.get("role")), max(0.0, event.payload["cost_usd"] - ep.get("billed_usd", 0.0)))
        ep.update(state="stopped", minutes=event.payload["minutes"], cost_usd=event.payload["cost_usd"],
                  stopped_at=event.payload["stopped_at"])


@on("endpoint.billed")
def _ep_billed(state: CampaignState, event: StoredEvent) -> None:
    ep = state.part(ENDPOINTS).by_id.get(event.payload["endpoint_id"])
    if ep is not None and ep["state"] != "stopped" and event.payload["minutes"] > ep.get("billed_minutes", 0):
        add_spend(state, endpoint_stage(ep.get("role")), event.payload["cost_usd"] - ep.get("billed_usd", 0.0))
        ep.update(billed_minutes=event.payload["minutes"], billed_usd=event.payload["cost_usd"],
                  minutes=event.payload["minutes"], cost_usd=event.payload["cost_usd"])


@invariant("train-frozen-split", "train.job_requested")
def _trained_on_frozen(state: CampaignState, event: StoredEvent) -> str | None:
    split = state.part(SPLIT)
    if not split.frozen or split.frozen_hash != event.payload["split_hash"]:
        return f"training requested on split {event.payload['split_hash'][:12]}, not the frozen one"
    return None


@invariant("train-one-job", "train.job_created")
def _one_job_per_run(state: CampaignState, event: StoredEvent) -> str | None:
    run = state.part(TRAINING).runs[event.payload["run_id"]]
    if len(run.job_ids) > 1:
        return f"run {event.payload['run_id']} has more than one job: {run.job_ids}"
    return None


@invariant("train-export-current", "train.job_requested")
def _trained_on_current_decisions(state: CampaignState, event: StoredEvent) -> str | None:
    """The file a job trains on is an export that reflects the pair decisions in force at its launch."""
    t: TrainingState = state.part(TRAINING)
    pairs: PairsState = state.part(PAIRS)
    file_id, named = event.payload["file_id"], event.payload["export_sha256"]
    trained = t.export_of_file(file_id)
    if trained is None:
        return f"the job trains on file {file_id}, which no logged upload of an export produced"
    if trained != named:
        return f"the job names export {named[:12]} but file {file_id} is the upload of export {trained[:12]}"
    x = pairs.export_of(trained)
    if x is None:
        return f"file {file_id} was uploaded from {trained[:12]}, which no pairs.exported event wrote"
    why = pairs.staleness(x)
    if why:
        return f"run {event.payload['run_id']} trains on a stale file: {why}"
    rejected = [pid for pid in x.get("pair_ids") or [] if pairs.decisions.get(pid) == "reject"]
    if rejected:
        return f"run {event.payload['run_id']} trains on pairs the operator rejected: {rejected[:3]}"
    return None
