"""The train stage: upload the frozen export, check limits and price against the budget,
launch the DPO job with every hyperparameter from the plan, monitor it to a terminal
status, cancel on request. Restart-safe: the job request is logged before the create
call, and a restart reattaches to the job instead of launching a second one."""

from __future__ import annotations

import contextlib
import json
import math
import sys

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.campaign.state.metrics import METRICS, metric_row, row_key
from dpo_tui.campaign.state.pairs import PAIRS
from dpo_tui.campaign.state.plan import PLAN
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.campaign.state.train import TERMINAL, TRAINING, TrainingRun
from dpo_tui.domain.export import check_together_jsonl, hold_back_tasks, sha256, split_lines
from dpo_tui.domain.preference_format import pair_problem
from dpo_tui.errors import InputError, Stopped
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.core import SPEND

if TYPE_CHECKING:  # the SDK is not imported to read the state: the console's first frame starts without it
    from dpo_tui.campaign.mgmt import Mgmt


class Detached(Stopped):
    """The front end stopped following a job that is still running (not a failure)."""


class TrainingFailed(InputError):
    """The provider refused the data or the job ended in error."""


class StaleExport(Stopped):
    """The export misses a later pair decision: training waits for a re-export (exit 4)."""


def sdk_hyperparameters(plan: Plan) -> dict[str, Any]:
    """Every argument of fine_tuning.create that shapes training, from the plan, each sent
    explicitly (also when the plan leaves it at its default)."""
    t = plan.training
    return {"training_method": "dpo", "dpo_beta": t.dpo_beta, "n_epochs": t.n_epochs, "batch_size": t.batch_size,
            "learning_rate": t.learning_rate, "lora": t.lora, "lora_r": t.lora_r, "lora_alpha": t.lora_alpha,
            "lora_dropout": t.lora_dropout, "lora_trainable_modules": t.lora_trainable_modules,
            "max_seq_length": t.max_seq_length, "warmup_ratio": t.warmup_ratio,
            "lr_scheduler_type": t.lr_scheduler_type, "min_lr_ratio": t.min_lr_ratio,
            "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm, "random_seed": t.random_seed,
            "dpo_normalize_logratios_by_length": t.dpo_normalize_logratios_by_length, "rpo_alpha": t.rpo_alpha,
            "simpo_gamma": t.simpo_gamma, "n_evals": t.n_evals, "n_checkpoints": t.n_checkpoints}


def hyperparameters(plan: Plan) -> dict[str, Any]:
    """What the job is logged as trained with: the create arguments, the validation share,
    and what the SDK derives from them (simpo_gamma > 0 makes the job reference-free and
    length-normalised)."""
    hp = sdk_hyperparameters(plan)
    simpo = plan.training.simpo_gamma > 0
    return {**hp, "dpo_reference_free": simpo,
            "dpo_normalize_logratios_by_length": hp["dpo_normalize_logratios_by_length"] or simpo,
            "validation_share": plan.training.validation_share}


def check_limits(plan: Plan, limits: Any) -> None:
    """The plan's training knobs against the model's fine-tuning limits (exit 2, naming the field)."""
    t = plan.training
    kind = limits.lora_training if t.lora else limits.full_training
    if kind is None:
        raise InputError(f"training.lora: {plan.models.policy_base} has no full fine-tuning; set training.lora = true")
    problems = [
        ("batch_size", t.batch_size, kind.min_batch_size, kind.max_batch_size_dpo),
        ("max_seq_length", t.max_seq_length, limits.min_max_seq_length, limits.max_seq_length_dpo),
        ("n_epochs", t.n_epochs, 1, limits.max_num_epochs),
        ("n_checkpoints", t.n_checkpoints, 1, limits.max_num_checkpoints),
        ("n_evals", t.n_evals, 0, limits.max_num_evals),
        ("learning_rate", t.learning_rate, limits.min_learning_rate, limits.max_learning_rate)]
    if t.lora:
        problems.append(("lora_r", t.lora_r, 1, kind.max_rank))
    for name, value, low, high in problems:
        if not low <= value <= high:
            raise InputError(f"training.{name}: {value} is outside {plan.models.policy_base}'s DPO limits "
                             f"[{low}, {high}] (Together's model limits)")


def current_export(campaign: Campaign, *, label_swap: bool = False) -> dict[str, Any]:
    pairs = campaign.state.part(PAIRS)
    x = pairs.control_export if label_swap else pairs.export
    if x is None:
        raise InputError("no exported pairs to train on: run the pairs stage first"
                         if not label_swap else "no label-swap control export yet")
    return x


def stale_export(campaign: Campaign, *, label_swap: bool = False) -> str | None:
    """Why the export training would upload misses a later pair decision (None when current)."""
    pairs = campaign.state.part(PAIRS)
    return pairs.staleness(pairs.control_export if label_swap else pairs.export)


def fresh_export(campaign: Campaign, *, label_swap: bool = False) -> dict[str, Any]:
    """The export to train on, refused when a later accept or reject made it stale."""
    x = current_export(campaign, label_swap=label_swap)
    why = stale_export(campaign, label_swap=label_swap)
    if why:
        raise StaleExport(f"{why}: training does not upload it; re-export the pairs (Pairs: e in the console, "
                          "`dpo-tui pairs export`, or `run --yes` with decisions.export_pairs = true)",
                          console=f"{why}: training does not upload it; export the pairs again (e on Pairs)")
    return x


def trains_on_control(campaign: Campaign, run_id: str) -> bool:
    """Whether a run's uploaded file is the label-swap control export (dpo-tui train
    --label-swap-control), so a resumed run keeps training on the same pairs."""
    run = campaign.state.part(TRAINING).runs.get(run_id)
    control = campaign.state.part(PAIRS).control_export
    upload = campaign.state.part(TRAINING).files.get(control["together_sha256"]) if control else None
    return bool(run is not None and run.file_id and upload and upload.get("file_id") == run.file_id)


def upload(campaign: Campaign, m: Mgmt, *, actor: str, label_swap: bool = False, plan: Plan | None = None,
           tokenizer: Any = None) -> str:
    """Upload the export (once per export sha256 and validation share) and return the training
    file's id; an invalid file or a stale export (a pair decided since) stops here. With
    `training.validation_share` > 0 the pairs of a seeded share of the train tasks are held
    back and uploaded as the validation file, the rest as the training file."""
    x = fresh_export(campaign, label_swap=label_swap)
    share = plan.training.validation_share if plan is not None else 0.0
    seed = plan.training.random_seed if plan is not None else 0
    done = campaign.state.part(TRAINING).files.get(x["together_sha256"])
    if done is not None and (done.get("validation_share") or 0.0) == share \
            and (not share or done.get("validation_seed") == seed):
        return done["file_id"]
    path = Path(x["together_path"])
    data = path.read_bytes()
    if sha256(data) != x["together_sha256"]:
        raise InputError(f"{path} changed since it was exported (sha256 differs from the log); export again")
    check_before_upload(path, data, max_seq_length=plan.training.max_seq_length if plan is not None else None,
                        tokenizer=tokenizer)
    held: set[str] = set()
    validation: dict[str, Any] = {}
    if share:
        train_bytes, held, val_path = _hold_back(x, path, data, share, seed)
        val = upload_processed(m, val_path)
        _refused(val, val_path)
        validation = {"validation_file_id": val.id, "validation_filename": val_path.name,
                      "validation_sha256": sha256(val_path.read_bytes()), "validation_share": share,
                      "validation_seed": seed, "held_back_tasks": sorted(held)}
        path = path.with_name(path.name.replace(".together.jsonl", f".train-v{share:g}-s{seed}.jsonl"))
        _write_once(path, train_bytes)
        data = train_bytes
    resp = upload_processed(m, path)
    report = resp.model_dump().get("validation_report") if hasattr(resp, "model_dump") else None
    campaign.append("train.file_uploaded", {
        "export_sha256": x["together_sha256"], "file_id": resp.id, "filename": path.name, "bytes": len(data),
        "processing_status": getattr(resp, "processing_status", None), "validation_report": report,
        "sha256": sha256(data), **validation}, actor=actor)
    _refused(resp, path)
    return resp.id


def _refused(resp: Any, path: Path) -> None:
    if getattr(resp, "processing_status", None) == "INVALID_FORMAT":
        report = resp.model_dump().get("validation_report") if hasattr(resp, "model_dump") else None
        reason = (report or {}).get("error") or (report or {})
        raise TrainingFailed(f"Together refused {path.name} (file {resp.id}): INVALID_FORMAT: {reason}")


def check_before_upload(path: Path, data: bytes, *, max_seq_length: int | None = None,
                        tokenizer: Any = None) -> None:
    """The file Together would get, checked before it is sent: the SDK's own `check_file`
    (UTF-8, a JSON object per line, enough samples, size), then Together's preference format
    (domain/preference_format.py, the simulator's server-side rules too), then the product's
    own checks: chosen != rejected, and prompt + chosen + rejected within max_seq_length."""
    from together.lib.utils.files import check_file

    report = check_file(path, purpose="fine-tune")
    if not report["is_check_passed"]:
        line = f" line {report['line_number']}" if report.get("line_number") else ""
        raise TrainingFailed(f"{path}{line}: Together's check_file: {report['message']}")
    check = check_together_jsonl(data)
    if not check.ok:
        raise TrainingFailed(f"{path} line {check.problems[0][0]}: {check.problems[0][1]}")
    count = None
    if tokenizer is not None:
        def count(obj: dict[str, Any]) -> int:
            return int(tokenizer.count_chat(obj["input"]["messages"], add_generation_prompt=True)) + sum(
                int(tokenizer.count_completion(content_text(obj[k][0]["content"])))
                for k in ("preferred_output", "non_preferred_output"))
    number = 0
    for raw in data.decode("utf-8").splitlines():
        number += 1
        if raw.strip() and (bad := pair_problem(json.loads(raw), max_seq_length=max_seq_length, count=count)):
            raise TrainingFailed(f"{path} line {number}: {bad[1]} (rule: {bad[0]})")


def content_text(content: Any) -> str:
    """A message's text (a string, or the text parts of a content list)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _write_once(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


def _hold_back(x: dict[str, Any], path: Path, data: bytes, share: float, seed: int) -> tuple[bytes, set[str], Path]:
    """(training bytes, held-back task ids, validation file path) of the export."""
    manifest_path = Path(x["manifest_path"])
    try:
        manifest = manifest_path.read_bytes()
    except OSError as exc:
        raise InputError(f"{manifest_path}: cannot read the export's manifest ({exc})") from None
    if x.get("manifest_sha256") and sha256(manifest) != x["manifest_sha256"]:
        raise InputError(f"{manifest_path} changed since it was exported (sha256 differs from the log); export again")
    tasks = [json.loads(line)["task_id"] for line in manifest.decode("utf-8").splitlines() if line.strip()]
    held = hold_back_tasks(tasks, share, seed)
    if not held:
        raise InputError(f"training.validation_share: the export has pairs from {len(set(tasks))} task(s); "
                         "holding tasks back for validation needs at least 2")
    train_bytes, val_bytes = split_lines(data, tasks, held)
    val_path = path.with_name(path.name.replace(".together.jsonl", f".validation-v{share:g}-s{seed}.jsonl"))
    _write_once(val_path, val_bytes)
    return train_bytes, held, val_path


def upload_processed(m: Mgmt, path: Path, *, grace_s: float = 30, timeout_s: float = 600) -> Any:
    """Upload and wait for the file's final processing status. A duplicate upload (a retry
    after a lost reply) returns the existing file, so no second copy is made; a file whose
    upload was interrupted before processing stays PENDING: after `grace_s` it is deleted
    and uploaded once more."""
    resp = m.call("files.upload", m.client.files.upload, file=path, purpose="fine-tune", check=True)
    try:
        return wait_processed(m, resp, timeout_s=grace_s)
    except TrainingFailed:
        m.call("files.delete", m.client.files.delete, resp.id)
    resp = m.call("files.upload", m.client.files.upload, file=path, purpose="fine-tune", check=True)
    return wait_processed(m, resp, timeout_s=timeout_s)


def wait_processed(m: Mgmt, resp: Any, *, timeout_s: float = 600, poll_s: float = 0.5) -> Any:
    """Poll the file until its processing status is final (COMPLETED or INVALID_FORMAT)."""
    deadline = time.monotonic() + timeout_s
    while getattr(resp, "processing_status", None) not in ("COMPLETED", "INVALID_FORMAT"):
        if time.monotonic() > deadline:
            raise TrainingFailed(f"file {resp.id} still {resp.processing_status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
        resp = m.call("files.retrieve", m.client.files.retrieve, resp.id)
    return resp


def remaining_budget(campaign: Campaign) -> float:
    from dpo_tui.campaign.cap import remaining_usd

    left = remaining_usd(campaign)
    return left if math.isfinite(left) else -campaign.state.part(SPEND).total_usd  # no cap yet: nothing is allowed


def own_estimate(campaign: Campaign, plan: Plan, rate_usd_per_mtok: float) -> tuple[float, int]:
    """(USD, trained tokens) from the export's own token counts x epochs x the table's rate."""
    built = campaign.state.part(PAIRS).built or {"pairs": []}
    tokens = sum(p["tokens"] for p in built["pairs"] if p["dropped_by"] is None) * plan.training.n_epochs
    return tokens * rate_usd_per_mtok / 1e6, tokens


def estimate(campaign: Campaign, m: Mgmt, plan: Plan, run_id: str, file_id: str, *,
             actor: str, fallback_rate_usd_per_mtok: float) -> dict[str, Any]:
    t = plan.training
    limits = m.call("fine_tuning.model_limits", m.client.fine_tuning.model_limits, model_name=plan.models.policy_base)
    check_limits(plan, limits)
    hp = hyperparameters(plan)
    validation = validation_file(campaign, file_id)
    est = m.call("fine_tuning.estimate_price", m.client.fine_tuning.estimate_price,
        training_file=file_id, model=plan.models.policy_base, n_epochs=t.n_epochs, n_evals=t.n_evals,
        **({"validation_file": validation} if validation else {}),
        training_method={"method": "dpo", "dpo_beta": t.dpo_beta, "rpo_alpha": t.rpo_alpha,
                         "simpo_gamma": t.simpo_gamma, "dpo_reference_free": hp["dpo_reference_free"],
                         "dpo_normalize_logratios_by_length": hp["dpo_normalize_logratios_by_length"]},
        training_type={"type": "Lora", "lora_r": t.lora_r, "lora_alpha": t.lora_alpha} if t.lora else {"type": "Full"})
    if getattr(est, "estimation_available", True):
        usd, tokens = float(est.estimated_total_price or 0.0), int(est.estimated_train_token_count or 0)
        source = "together estimate-price"
    else:
        reason = getattr(est, "unavailable_reason", "unknown")
        if reason == "train_file_invalid":
            raise TrainingFailed(f"Together cannot estimate file {file_id}: train_file_invalid")
        usd, tokens = own_estimate(campaign, plan, fallback_rate_usd_per_mtok)
        source = f"own estimate from the export's tokens x the price table (Together: {reason})"
    payload = {"run_id": run_id, "file_id": file_id, "model": plan.models.policy_base, "estimated_usd": usd,
               "estimated_tokens": tokens, "source": source,
               "remaining_budget_usd": remaining_budget(campaign), "limits": limits.model_dump(mode="json"),
               "hyperparameters": hp}
    campaign.append("train.price_estimated", payload, actor=actor)
    return payload


def validation_file(campaign: Campaign, file_id: str) -> str | None:
    """The validation file uploaded beside training file `file_id` (None: none held back)."""
    for up in campaign.state.part(TRAINING).files.values():
        if up["file_id"] == file_id:
            return up.get("validation_file_id")
    return None


def _create(m: Mgmt, **kwargs: Any) -> Any:
    """fine_tuning.create with the SDK's console notes (it prints one for SimPO) on stderr, so
    stdout stays the JSON summary."""
    with contextlib.redirect_stdout(sys.stderr):
        return m.call("fine_tuning.create", m.client.fine_tuning.create, **kwargs)


def _suffix(campaign: Campaign, plan: Plan, run_id: str) -> str:
    return f"{plan.training.suffix}-{campaign.store.campaign_id[:8]}-{run_id}"[:64]


def _find_job(m: Mgmt, suffix: str, file_id: str):
    for job in m.call("fine_tuning.list", m.client.fine_tuning.list).data:
        if (getattr(job, "suffix", None) == suffix or suffix in (getattr(job, "x_model_output_name", "") or "")) \
                and getattr(job, "training_file", file_id) == file_id:
            return job
    return None


def launch(campaign: Campaign, m: Mgmt, plan: Plan, run_id: str, file_id: str, *,
           actor: str, label_swap: bool = False) -> str:
    """The job id of `run_id`: reattached if it exists, created once otherwise."""
    run: TrainingRun | None = campaign.state.part(TRAINING).runs.get(run_id)
    if run is not None and run.job_id:
        return run.job_id
    suffix = _suffix(campaign, plan, run_id)
    if run is not None and run.status == "requested":
        job = _find_job(m, suffix, file_id)  # the create may have reached the server before a crash
        if job is not None:
            campaign.append("train.job_created", {"run_id": run_id, "job_id": job.id, "status": job.status,
                                                  "reattached": True}, actor="system")
            return job.id
    else:
        split, x = campaign.state.part(SPLIT), fresh_export(campaign, label_swap=label_swap)
        uploaded = campaign.state.part(TRAINING).files.get(x["together_sha256"])
        if uploaded is None or uploaded["file_id"] != file_id:
            raise InputError(f"file {file_id} is not the upload of the current export {x['together_sha256'][:12]}: "
                             "prepare the run again")
        campaign.append("train.job_requested", {
            "run_id": run_id, "file_id": file_id, "model": plan.models.policy_base, "suffix": suffix,
            "hyperparameters": hyperparameters(plan), "plan_hash": campaign.state.part(PLAN).hash,
            "split_hash": split.frozen_hash, "export_sha256": x["together_sha256"],
            "validation_file_id": validation_file(campaign, file_id)}, actor=actor)
    validation = validation_file(campaign, file_id)
    job = _create(m, training_file=file_id, model=plan.models.policy_base, suffix=suffix,
                  validation_file=validation or "", **sdk_hyperparameters(plan),
                  recover=lambda: _find_job(m, suffix, file_id))
    campaign.append("train.job_created", {"run_id": run_id, "job_id": job.id, "status": job.status}, actor="system")
    return job.id


def _job_event(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k, None) for k in ("type", "message", "created_at", "level", "step", "total_steps")}


READS_METRICS = ("running", "compressing", "uploading")


def read_metrics(campaign: Campaign, m: Mgmt, run_id: str, job_id: str, status: str, *, final: bool) -> int:
    """Append the job's metrics not logged yet as one `training.metrics` event (also an empty
    one when the job ended, so the log says they were read); the number of new rows."""
    got = m.call("fine_tuning.list_metrics", m.client.fine_tuning.list_metrics, job_id)
    done = campaign.state.part(METRICS).runs.get(run_id)
    seen = done.keys() if done is not None and done.job_id == job_id else set()
    rows = [r for r in (metric_row(x) for x in (got.metrics or [])) if r is not None and row_key(r) not in seen]
    if rows or final:
        campaign.append("training.metrics", {"run_id": run_id, "job_id": job_id, "status": status, "rows": rows,
                                             "final": final}, actor="system")
    return len(rows)


def monitor(campaign: Campaign, m: Mgmt, run_id: str, *, poll_s: float = 1.0, metrics_every_s: float = 10.0,
            timeout_s: float = 24 * 3600, on_status: Callable[[str], None] | None = None,
            stop: threading.Event | None = None) -> TrainingRun:
    """Poll the job until a terminal status, logging status changes and new job events.
    `stop` set (the console quits) detaches: the job runs on and the next run reattaches."""
    deadline = time.monotonic() + timeout_s
    read_at = -math.inf
    while True:
        run = campaign.state.part(TRAINING).runs[run_id]
        job = m.call("fine_tuning.retrieve", m.client.fine_tuning.retrieve, run.job_id)
        events = m.call("fine_tuning.list_events", m.client.fine_tuning.list_events, run.job_id).data
        new = [_job_event(e) for e in events[len(run.events):]]
        changed = job.status != run.status
        if changed or new:
            campaign.append("train.job_status", {"run_id": run_id, "job_id": run.job_id, "status": job.status,
                                                 "new_events": new}, actor="system")
            if on_status:
                on_status(job.status)
        if job.status in TERMINAL or (job.status in READS_METRICS and (
                changed or time.monotonic() - read_at >= metrics_every_s)):
            read_metrics(campaign, m, run_id, run.job_id, job.status, final=job.status in TERMINAL)
            read_at = time.monotonic()
        if job.status in TERMINAL:
            price = (job.total_price or 0) / 1e9  # Together reports nanodollars
            campaign.append("train.job_finished", {
                "run_id": run_id, "job_id": run.job_id, "status": job.status,
                "output_model": getattr(job, "x_model_output_name", None) or getattr(job, "output_name", None),
                "model_object_id": getattr(job, "api_model_object_id", None),
                "adapter_object_id": getattr(job, "adapter_object_id", None),
                "adapter_object_name": getattr(job, "adapter_object_name", None),
                "token_count": int(job.token_count or 0), "price_usd": price,
                "total_price_nanodollars": job.total_price}, actor="system")
            return campaign.state.part(TRAINING).runs[run_id]
        if time.monotonic() > deadline:
            raise TrainingFailed(f"job {run.job_id} still {job.status} after {timeout_s:.0f} s")
        if stop is None:
            time.sleep(poll_s)
        elif stop.wait(poll_s):
            raise Detached(f"stopped following job {run.job_id} ({job.status}); it runs on at Together, and the "
                           "next run reattaches to it")


def latest_run_id(campaign: Campaign) -> str | None:
    """The newest training run in the log (the one the console acts on when reopened)."""
    runs = list(campaign.state.part(TRAINING).runs)
    return runs[-1] if runs else None


def cancellable(campaign: Campaign, run_id: str | None) -> Any:
    """The run whose job a cancel would stop (run_id None: the newest run); InputError naming
    why there is none (the console asks only after this, the CLI acts)."""
    runs = campaign.state.part(TRAINING).runs
    rid = run_id if run_id is not None else latest_run_id(campaign)
    run = runs.get(rid or "")
    if run is None or not run.job_id:
        raise InputError("no DPO job has been launched in this campaign" + (f" for run {rid!r}" if runs else ""))
    if run.status in TERMINAL:
        raise InputError(f"job {run.job_id} already {run.status}")
    return run


def cancel_training(campaign: Campaign, open_mgmt: Callable[[], Mgmt], run_id: str | None, *, reason: str,
                    actor: str) -> str:
    """The operator's cancel (console and `dpo-tui cancel`): refused without a written reason or
    a job to stop; logged first, then Together is asked. `open_mgmt` is called only once it is
    not refused (headless, it starts the simulator). Returns the job id."""
    run = cancellable(campaign, run_id)
    if not reason.strip():
        raise InputError("cancelling a training job needs a written reason")
    cancel(campaign, open_mgmt(), run.run_id, reason=reason, actor=actor)
    return run.job_id


def cancel(campaign: Campaign, m: Mgmt, run_id: str, *, reason: str, actor: str) -> None:
    run = cancellable(campaign, run_id)
    campaign.append("train.cancel_requested", {"run_id": run_id, "job_id": run.job_id, "reason": reason}, actor=actor)
    m.call("fine_tuning.cancel", m.client.fine_tuning.cancel, run.job_id)
