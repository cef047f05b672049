"""Fine-tune jobs: Together's statuses over time, events, training, output model, price.

A job advances lazily from its timestamps whenever it is looked at (so a restarted
simulator picks up where it was): pending -> queued -> running -> compressing ->
uploading -> completed, each stage `job_stage_seconds` long (running twice that). The
DPO update runs when training ends; an invalid training file ends in `user_error`.
"""

from __future__ import annotations

import hashlib
import json

from typing import Any

from dpo_tui.sim import catalog
from dpo_tui.sim.dpo_format import read_pairs, validate_dpo
from dpo_tui.sim.learner import train_dpo
from dpo_tui.sim.policy import base_params, content_text
from dpo_tui.sim.state import SimState, iso

STAGES = (("pending", 0.0), ("queued", 1.0), ("running", 2.0), ("compressing", 4.0), ("uploading", 5.0),
          ("completed", 6.0))
TERMINAL = ("completed", "cancelled", "error", "user_error")
_STAGE_EVENTS = {
    "queued": [("job_pending", "Job queued")],
    "running": [("job_start", "Job started"), ("model_downloading", "Downloading model"),
                ("model_download_complete", "Model downloaded"), ("training_data_downloading",
                 "Downloading training data"), ("training_data_download_complete", "Training data downloaded"),
                ("training_start", "Training started")],
    "compressing": [("model_compressing", "Compressing output model"),
                    ("model_compression_complete", "Output model compressed")],
    "uploading": [("model_uploading", "Uploading output model"), ("model_upload_complete", "Output model uploaded")],
    "completed": [("job_complete", "Fine-tuning job finished (simulated)")],
}


def event(state: SimState, type_: str, message: str, level: str = "info", **extra: Any) -> dict:
    base = {"object": "fine-tune-event", "created_at": iso(state.now()), "message": message, "type": type_,
            "level": level, "token_count": None, "step": None, "total_steps": None, "param_count": None,
            "wandb_url": None, "checkpoint_path": None, "model_path": None}
    base.update(extra)
    return base


def pair_tokens(state: SimState, pairs: list[dict]) -> int:
    """Tokens one epoch trains on: each pair's prompt once per answer, plus both answers."""
    tok = state.tokenizer
    total = 0
    for p in pairs:
        prompt = tok.count_chat(p["input"]["messages"]).n
        for key in ("preferred_output", "non_preferred_output"):
            total += prompt + tok.count_completion(content_text(p[key][0].get("content"))).n
    return total


def price_usd(state: SimState, model: str, tokens: int, epochs: int, lora: bool) -> float:
    return state.prices.training_cost(model, tokens, epochs, "dpo", lora)


def advance(state: SimState, job: dict) -> None:
    with state.lock:
        if job["status"] in TERMINAL:
            return
        now = state.now()
        if job["status"] == "cancel_requested":
            _finish(state, job, "cancelled", "job_stopped", "Job cancelled by the user")
            return
        elapsed = (now - job["t0"]) / max(state.job_stage_seconds, 1e-6)
        for status, at in STAGES:
            if elapsed < at or _rank(status) <= _rank(job["status"]):
                continue
            if status == "running" and not _start_training_checks(state, job):
                return
            if status == "compressing":
                _train(state, job)
            job["status"] = status
            job["updated_at"] = iso(now)
            if status == "running":
                job["started_at"] = iso(now)
            job["events"].extend(event(state, t, m) for t, m in _STAGE_EVENTS.get(status, []))
            if status == "completed":
                _register_output(state, job)
        state.store.save("jobs")


def _rank(status: str) -> int:
    names = [s for s, _ in STAGES]
    return names.index(status) if status in names else -1


def _finish(state: SimState, job: dict, status: str, ev: str, msg: str, level: str = "info") -> None:
    job["status"] = status
    job["updated_at"] = iso(state.now())
    job["events"].append(event(state, ev, msg, level))
    state.store.save("jobs")


def _start_training_checks(state: SimState, job: dict) -> bool:
    rec = state.store["files"].get(job["training_file"])
    content = state.store.get_blob(job["training_file"]) if rec else None
    if rec is None or content is None or rec.get("deleted"):
        _finish(state, job, "user_error", "job_error", f"Training file {job['training_file']} not found", "error")
        return False
    verdict = validate_dpo(content)
    if not verdict.valid:
        _finish(state, job, "user_error", "job_error", f"Invalid training file: {verdict.error}", "error")
        return False
    return True


def _train(state: SimState, job: dict) -> None:
    pairs = read_pairs(state.store.get_blob(job["training_file"]) or b"")
    base = catalog.base_model(job["model"])
    params = base_params(base.profile if base else "7b")
    method = job["training_method"]
    epochs = int(job.get("n_epochs") or 1)
    batch = job.get("batch_size")
    batch = 16 if batch in (None, "max") else int(batch)
    validation = read_pairs(state.store.get_blob(job["validation_file"]) or b"") if job.get("validation_file") else []
    tuned, report = train_dpo(params, pairs, beta=float(method.get("dpo_beta") or 0.1), epochs=epochs,
                              learning_rate=float(job.get("learning_rate") or 1e-5), batch_size=batch,
                              seed=int(job.get("random_seed") or 0), refs=state.references,
                              reference_free=bool(method.get("dpo_reference_free")),
                              gamma=float(method.get("simpo_gamma") or 0.0), validation=validation,
                              n_evals=int(job.get("n_evals") or 0))
    tokens = pair_tokens(state, pairs)
    lora = job.get("training_type", {}).get("type", "Lora") == "Lora"
    job["token_count"] = tokens * epochs
    job["total_price"] = int(round(price_usd(state, job["model"], tokens, epochs, lora) * 1e9))
    job["epochs_completed"] = epochs
    job["steps_completed"] = job["total_steps"] = report.steps
    job["param_count"] = 40_370_176 if lora else int(7.6e9)
    for i, loss in enumerate(report.losses, start=1):
        job["events"].append(event(state, "epoch_complete", f"Epoch {i}/{epochs} complete, DPO loss {loss:.4f}",
                                   step=i, total_steps=epochs, token_count=tokens * i))
    job["events"].append(event(state, "training_complete", f"Training complete: {report.used}/{report.pairs} "
                               f"pairs used, {report.steps} steps", token_count=tokens * epochs))
    job["events"].append(event(state, "checkpoint_save", "Final checkpoint saved",
                               checkpoint_path=f"s3://sim-bucket/{job['id']}/final"))
    # What the tuned model samples with depends on what it was trained from, never on the job's
    # id (ids come from an RNG that restarts with the simulator): the same file and settings
    # give the same model, across restarts.
    recipe = [hashlib.sha256(state.store.get_blob(job["training_file"]) or b"").hexdigest(), job["model"],
              method.get("dpo_beta"), epochs, job.get("learning_rate"), batch, job.get("random_seed"), lora]
    if method.get("dpo_reference_free") or method.get("simpo_gamma"):
        recipe += [bool(method.get("dpo_reference_free")), method.get("simpo_gamma")]
    tuned["fingerprint"] = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
    job["_params"] = tuned
    job["_report"] = {"pairs": report.pairs, "used": report.used, "steps": report.steps, "losses": report.losses,
                      "weight_change": report.weight_change}
    job["_metrics"] = report.metrics  # served by GET /v1/fine-tunes/{id}/metrics


def _register_output(state: SimState, job: dict) -> None:
    lora = job.get("training_type", {}).get("type", "Lora") == "Lora"
    base = catalog.base_model(job["model"])
    rec = {"id": job["model_object_id"], "name": job["model_output_name"],
           "adapter_name": job.get("adapter_object_name"), "base": job["model"], "job_id": job["id"],
           "lora": lora, "params": job.pop("_params", None) or base_params(base.profile if base else "7b"),
           "created_at": job["created_at"]}
    state.store.put("models", rec["id"], rec)


def view(job: dict) -> dict:
    """The job as Together's FinetuneResponse (private keys dropped)."""
    out = {k: v for k, v in job.items() if not k.startswith("_") and k not in ("t0",)}
    out["progress"] = {"estimate_available": False, "seconds_remaining": 0}
    # Events are served by /events only: the sync SDK parses create's reply with a type whose
    # event enum is upper-case, while /events uses lower-case types, so none are embedded.
    out["events"] = []
    return out
