"""Training metrics as events: what `fine_tuning.list_metrics` returned for a job, read
while it runs and once it ends (campaign/train.py), folded into per-run curves and the
known failure signs (domain/train_signs.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpo_tui.domain.train_signs import failure_signs
from dpo_tui.events.fold import CampaignState, on, state_part
from dpo_tui.events.types import Payload, event_type

if TYPE_CHECKING:  # annotations only: the fold does no I/O
    from dpo_tui.events.store import StoredEvent

# Together's metric names (as list_metrics returns them, W&B style) -> the log's
NAMES = {"train/global_step": "step", "train/epoch": "epoch", "train/loss": "loss",
         "train/rewards/accuracies": "accuracy", "train/kl": "kl", "train/learning_rate": "lr",
         "train/grad_norm": "grad_norm", "eval/loss": "eval_loss"}
FIELDS = ("epoch", "loss", "accuracy", "kl", "lr", "grad_norm", "eval_loss")


def metric_row(raw: dict[str, Any]) -> dict[str, Any] | None:
    """One list_metrics row in the log's names; NaN and infinities become None, named in
    `non_finite` (JSON has no NaN). None: a row without a step."""
    step = raw.get("train/global_step", raw.get("global_step", raw.get("step")))
    if not isinstance(step, (int, float)) or not math.isfinite(step):
        return None
    row: dict[str, Any] = {"step": int(step), "non_finite": []}
    for name, key in NAMES.items():
        if key == "step" or name not in raw:
            continue
        v = raw[name]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isfinite(v):
                row[key] = float(v)
            else:
                row[key] = None
                row["non_finite"].append(key)
    return row


def row_key(row: dict[str, Any]) -> tuple[int, bool]:
    return row["step"], "eval_loss" in row and "loss" not in row


@event_type("training.metrics", version=1)
class TrainingMetrics(Payload):
    run_id: str
    job_id: str
    status: str  # the job's status when they were read
    rows: list[dict[str, Any]] = Field(default_factory=list)  # new rows only (step, loss, accuracy, ...)
    final: bool = False  # read after the job ended


@dataclass
class RunMetrics:
    job_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    final: bool = False

    def keys(self) -> set[tuple[int, bool]]:
        return {row_key(r) for r in self.rows}

    def to_json(self) -> dict[str, Any]:
        train = [r for r in self.rows if "loss" in r]
        evals = [r for r in self.rows if "eval_loss" in r]
        last = train[-1] if train else {}
        return {"job_id": self.job_id, "steps": len(train), "final": self.final,
                "loss": [r.get("loss") for r in train], "accuracy": [r.get("accuracy") for r in train],
                "eval_loss": [r.get("eval_loss") for r in evals],
                "last": {k: last.get(k) for k in ("step", *FIELDS) if k in last}, "warnings": list(self.warnings)}


@dataclass
class MetricsState:
    runs: dict[str, RunMetrics] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: r.to_json() for k, r in self.runs.items()}


METRICS = state_part("training_metrics", factory=MetricsState, to_json=MetricsState.to_json)


@on("training.metrics")
def _metrics(state: CampaignState, event: StoredEvent) -> None:
    p = event.payload
    run = state.part(METRICS).runs.setdefault(p["run_id"], RunMetrics())
    if run.job_id != p["job_id"]:
        run.job_id, run.rows = p["job_id"], []
    seen = run.keys()
    run.rows.extend(r for r in p["rows"] if row_key(r) not in seen)
    run.rows.sort(key=row_key)
    run.final = run.final or p["final"]
    run.warnings = failure_signs(run.rows)
