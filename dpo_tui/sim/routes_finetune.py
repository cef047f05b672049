"""Fine-tunes: model limits, estimate-price, create, retrieve, list, events, cancel, checkpoints."""

from __future__ import annotations

from aiohttp import web

from dpo_tui.sim import catalog
from dpo_tui.sim.dpo_format import read_pairs
from dpo_tui.sim.jobs import TERMINAL, advance, event, pair_tokens, price_usd, view
from dpo_tui.sim.server import STATE, ApiError, json_body, read_json
from dpo_tui.sim.state import iso

routes = web.RouteTableDef()
USER_LIMIT_USD = 1000.0


def _tunable(name: str | None) -> catalog.BaseModel:
    m = catalog.base_model(name or "")
    if m is None or not m.fine_tuning:
        raise ApiError(400, f"Model {name} is not supported for fine-tuning. Supported: "
                       + ", ".join(b.name for b in catalog.BASE_MODELS if b.fine_tuning), param="model",
                       code="model_not_supported")
    return m


@routes.get("/v1/fine-tunes/models/limits")
async def limits(request: web.Request) -> web.Response:
    return json_body(catalog.model_limits(_tunable(request.query.get("model_name"))))


def _file_status(request: web.Request, file_id: str | None) -> tuple[dict | None, str | None]:
    rec = request.app[STATE].store["files"].get(file_id or "")
    if rec is None or rec.get("deleted") or not rec.get("uploaded"):
        return None, None
    return rec, rec.get("processing_status")


@routes.post("/v1/fine-tunes/estimate-price")
async def estimate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json(request)
    model = _tunable(body.get("model"))
    rec, status = _file_status(request, body.get("training_file"))
    if rec is None:
        raise ApiError(404, f"Training file {body.get('training_file')} not found", param="training_file")
    if status == "INVALID_FORMAT":
        return json_body({"estimation_available": False, "unavailable_reason": "train_file_invalid"})
    if status != "COMPLETED":
        return json_body({"estimation_available": False, "unavailable_reason": "train_file_not_validated"})
    epochs = int(body.get("n_epochs") or 1)
    tokens = pair_tokens(state, read_pairs(state.store.get_blob(rec["id"]) or b""))
    ttype = body.get("training_type") or {}
    usd = price_usd(state, model.name, tokens, epochs, ttype.get("type", "Lora") != "Full")
    return json_body({"estimation_available": True, "allowed_to_proceed": usd <= USER_LIMIT_USD,
                      "estimated_total_price": round(usd, 6), "estimated_train_token_count": tokens * epochs,
                      "estimated_eval_token_count": 0, "user_limit": USER_LIMIT_USD})


def _validate_create(body: dict) -> tuple[catalog.BaseModel, dict, dict]:
    model = _tunable(body.get("model"))
    method = body.get("training_method") or {"method": "sft"}
    if method.get("method") not in ("dpo", "sft"):
        raise ApiError(400, "training_method.method must be sft or dpo", param="training_method")
    ttype = body.get("training_type") or {"type": "Lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                                          "lora_trainable_modules": "all-linear"}
    limits = catalog.model_limits(model)["lora_training" if ttype.get("type") != "Full" else "full_training"]
    batch = body.get("batch_size", "max")
    cap = limits["max_batch_size_dpo"] if method["method"] == "dpo" else limits["max_batch_size"]
    if batch != "max" and (not isinstance(batch, int) or not limits["min_batch_size"] <= batch <= cap):
        raise ApiError(400, f"batch_size must be between {limits['min_batch_size']} and {cap}", param="batch_size")
    epochs = body.get("n_epochs", 1)
    if not isinstance(epochs, int) or not 1 <= epochs <= 20:
        raise ApiError(400, "n_epochs must be between 1 and 20", param="n_epochs")
    lr = body.get("learning_rate", 1e-5)
    if not isinstance(lr, (int, float)) or not 1e-8 <= lr <= 1.0:
        raise ApiError(400, "learning_rate must be between 1e-08 and 1.0", param="learning_rate")
    _validate_dpo_knobs(method)
    for key, low, high in (("n_evals", 0, catalog.model_limits(model)["max_num_evals"]),
                           ("n_checkpoints", 1, catalog.model_limits(model)["max_num_checkpoints"])):
        v = body.get(key, low)
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            raise ApiError(400, f"{key} must be an integer between {low} and {high}", param=key)
    if body.get("n_evals") and not body.get("validation_file"):
        raise ApiError(400, "n_evals > 0 needs a validation_file", param="n_evals")
    return model, method, ttype


_DPO_NUMBERS = ("dpo_beta", "rpo_alpha", "simpo_gamma")
_DPO_FLAGS = ("dpo_normalize_logratios_by_length", "dpo_reference_free")


def _validate_dpo_knobs(method: dict) -> None:
    """DPO's knobs (reference §4.2) are numbers >= 0 and flags, and only for DPO."""
    for key in (*_DPO_NUMBERS, *_DPO_FLAGS):
        if key not in method or method[key] is None:
            continue
        if method["method"] != "dpo":
            raise ApiError(400, f"training_method.{key} is only supported for DPO training", param="training_method")
        v = method[key]
        if key in _DPO_FLAGS and not isinstance(v, bool):
            raise ApiError(400, f"training_method.{key} must be a boolean", param="training_method")
        if key in _DPO_NUMBERS and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ApiError(400, f"training_method.{key} must be a number >= 0", param="training_method")
    if (method.get("simpo_gamma") or 0) > 0 and not method.get("dpo_reference_free"):
        raise ApiError(400, "simpo_gamma > 0 is SimPO: it needs dpo_reference_free = true", param="training_method")


@routes.post("/v1/fine-tunes")
async def create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json(request)
    model, method, ttype = _validate_create(body)
    rec, _status = _file_status(request, body.get("training_file"))
    if rec is None:
        raise ApiError(400, f"Training file {body.get('training_file')} not found", param="training_file")
    if body.get("validation_file"):
        vrec, _vstatus = _file_status(request, body["validation_file"])
        if vrec is None:
            raise ApiError(400, f"Validation file {body['validation_file']} not found", param="validation_file")
    job_id = "ft-" + state.new_id("", 32)
    short = job_id[3:11]
    suffix = body.get("suffix")
    out_name = f"{catalog.PROJECT_SLUG}/{model.name.split('/')[-1]}-{suffix + '-' if suffix else ''}{short}"
    lora = ttype.get("type") != "Full"
    now = state.now()
    job = {
        "id": job_id, "status": "pending", "user_id": catalog.USER_ID, "created_at": iso(now), "updated_at": iso(now),
        "started_at": None, "t0": now, "model": model.name, "training_file": rec["id"],
        "validation_file": body.get("validation_file") or "", "model_output_name": out_name,
        "model_output_path": f"s3://sim-bucket/{job_id}/final", "adapter_output_name": None,
        "model_object_id": f"ml_{short}", "model_object_name": out_name, "model_object_revision_id": f"rv_{short}",
        "n_epochs": body.get("n_epochs", 1), "n_checkpoints": body.get("n_checkpoints", 1),
        "n_evals": body.get("n_evals", 0), "batch_size": body.get("batch_size", "max"),
        "learning_rate": body.get("learning_rate", 1e-5), "warmup_ratio": body.get("warmup_ratio", 0.0),
        "max_grad_norm": body.get("max_grad_norm", 1.0), "weight_decay": body.get("weight_decay", 0.0),
        "suffix": suffix, "lr_scheduler": body.get("lr_scheduler"), "training_type": ttype,
        "training_method": method, "random_seed": body.get("random_seed"), "token_count": None,
        "total_price": None, "param_count": None, "epochs_completed": None, "queue_depth": 0,
        "events": [event(state, "job_pending", "Fine-tuning job created (simulated)")],
    }
    if lora:
        job.update(adapter_object_id=f"ml_{short}", adapter_object_name=f"{out_name}-adapter",
                   adapter_object_revision_id=f"rv_{short}")
    if job["lr_scheduler"] is None:
        job.pop("lr_scheduler")
    state.store.put("jobs", job_id, job)
    return json_body(view(job))


def _job(request: web.Request) -> dict:
    state = request.app[STATE]
    job = state.store["jobs"].get(request.match_info["job_id"])
    if job is None:
        raise ApiError(404, f"Fine-tune job {request.match_info['job_id']} not found", code="not_found")
    advance(state, job)
    return job


@routes.get("/v1/fine-tunes")
async def list_jobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    jobs = list(state.store["jobs"].values())
    for j in jobs:
        advance(state, j)
    return json_body({"data": [view(j) for j in sorted(jobs, key=lambda j: j["t0"], reverse=True)]})


@routes.get("/v1/fine-tunes/{job_id}")
async def retrieve(request: web.Request) -> web.Response:
    return json_body(view(_job(request)))


@routes.get("/v1/fine-tunes/{job_id}/events")
async def events(request: web.Request) -> web.Response:
    return json_body({"data": _job(request)["events"]})


@routes.post("/v1/fine-tunes/{job_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = _job(request)
    with state.lock:
        if job["status"] not in TERMINAL:
            job["status"] = "cancel_requested"
            job["updated_at"] = iso(state.now())
            job["events"].append(event(state, "cancel_requested", "Cancellation requested"))
            state.store.save("jobs")
    return json_body(view(job))


@routes.get("/v1/fine-tunes/{job_id}/checkpoints")
async def checkpoints(request: web.Request) -> web.Response:
    job = _job(request)
    if job["status"] != "completed":
        return json_body({"data": []})
    kind = "adapter" if job.get("adapter_object_id") else "model"
    return json_body({"data": [{"checkpoint_type": "Final", "created_at": job["updated_at"],
                                "path": job["model_output_path"], "step": job.get("total_steps") or 0,
                                "checkpoint": kind, "object_id": job["model_object_id"],
                                "object_name": job.get("adapter_object_name") or job["model_output_name"],
                                "object_revision_id": job["model_object_revision_id"]}]})


@routes.get("/v1/fine-tunes/{job_id}/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The metrics the learner computed (one row per step, eval rows where a validation file
    was given), filtered as the SDK's list_metrics asks; none before training has run."""
    rows = list(_job(request).get("_metrics") or [])
    q = request.query
    try:
        lo, hi = int(q.get("global_step_from", -1)), int(q.get("global_step_to", 1 << 62))
        resolution = int(q["resolution"]) if "resolution" in q else None
    except ValueError:
        raise ApiError(400, "global_step_from, global_step_to and resolution must be integers") from None
    rows = [r for r in rows if lo <= r["train/global_step"] <= hi]
    if resolution is not None and resolution > 0:
        train = [r for r in rows if "train/loss" in r]
        if len(train) > resolution:
            keep = {id(train[round(i * (len(train) - 1) / max(1, resolution - 1))]) for i in range(resolution)}
            rows = [r for r in rows if "train/loss" not in r or id(r) in keep]
    return json_body({"metrics": rows})
