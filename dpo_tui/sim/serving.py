"""Which parameters answer a chat `model`: serverless base models, or dedicated deployments.

Deployment state advances lazily from timestamps (PROVISIONING -> READY, STOPPING ->
STOPPED), and running replica-seconds are accumulated for per-minute billing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dpo_tui.sim import catalog
from dpo_tui.sim.policy import base_params
from dpo_tui.sim.server import ApiError
from dpo_tui.sim.state import SimState

RUNNING = ("DEPLOYMENT_STATE_READY", "DEPLOYMENT_STATE_SCALING")


@dataclass(frozen=True)
class Served:
    params: dict[str, Any]
    name: str
    deployment: dict | None = None  # the dedicated deployment serving it (its capacity: capacity.py)


def not_serverless(model: str) -> ApiError:
    return ApiError(400, f"Unable to access non-serverless model {model}. Please visit "
                    f"https://api.together.ai/models/{model} to create and start a new dedicated endpoint "
                    "for the model.", code="model_not_available")


def unknown_model(model: str) -> ApiError:
    return ApiError(404, f"Unable to access model {model}. Please visit https://api.together.ai/models to "
                    "view the list of supported models.", code="model_not_available")


def advance_deployment(state: SimState, dep: dict) -> None:
    """Move a deployment's state along and bill the running time since the last look."""
    now = state.now()
    with state.lock:
        last = dep.get("billed_until", now)
        if dep["state"] in RUNNING or dep["state"] == "DEPLOYMENT_STATE_STOPPING":
            dep["replica_seconds"] = dep.get("replica_seconds", 0.0) + max(0.0, now - last) * dep.get("ready", 0)
        dep["billed_until"] = now
        since = now - dep.get("state_since", now)
        if dep["state"] == "DEPLOYMENT_STATE_PROVISIONING" and since >= state.provision_seconds:
            dep.update(state="DEPLOYMENT_STATE_READY", ready=dep["autoscaling"]["minReplicas"], state_since=now)
        elif dep["state"] == "DEPLOYMENT_STATE_STOPPING" and since >= state.provision_seconds:
            dep.update(state="DEPLOYMENT_STATE_STOPPED", ready=0, state_since=now)


def deployment_cost(state: SimState, dep: dict) -> float:
    advance_deployment(state, dep)
    return state.prices.endpoint_cost(dep["hardware"], dep.get("replica_seconds", 0.0))


def params_for_model_ref(state: SimState, ref: str) -> tuple[dict[str, Any], str] | None:
    """Policy parameters for a registry path, ml_ id, base name or tuned output name."""
    key = ref.split("/revisions/")[0].rsplit("/", 1)[-1] if ref.startswith("projects/") else ref
    for m in catalog.BASE_MODELS:
        if key in (m.ml_id, m.name):
            return base_params(m.profile), m.name
    for rec in state.store["models"].values():
        if key in (rec["id"], rec["name"], rec.get("adapter_name")):
            return rec["params"], rec["name"]
    return None


def _ready_deployments(state: SimState) -> list[dict]:
    out = []
    for dep in list(state.store["deployments"].values()):
        advance_deployment(state, dep)
        if dep["state"] in RUNNING and dep.get("ready", 0) > 0:
            out.append(dep)
    return out


def _serve_deployment(state: SimState, dep: dict, requested: str) -> Served:
    advance_deployment(state, dep)
    if dep["state"] not in RUNNING or dep.get("ready", 0) == 0:
        raise ApiError(503, f"Endpoint {requested} has no running replicas (deployment state "
                       f"{dep['state']}); start it by setting autoscaling minReplicas >= 1",
                       type_="service_unavailable", code="endpoint_not_running", headers={"x-should-retry": "false"})
    found = params_for_model_ref(state, dep["model"])
    if found is None:
        raise ApiError(500, f"deployment {dep['id']} serves an unknown model", type_="server_error")
    return Served(found[0], requested, dep)


def resolve(state: SimState, model: str) -> Served:
    base = catalog.base_model(model)
    if base is not None:
        if base.serverless:
            return Served(base_params(base.profile), model)
        for dep in _ready_deployments(state):  # a base model on a running deployment
            if params_for_model_ref(state, dep["model"]) and params_for_model_ref(state, dep["model"])[1] == model:
                return _serve_deployment(state, dep, model)
        raise not_serverless(model)
    parts = model.split("/")
    if len(parts) in (2, 3) and parts[0] == catalog.PROJECT_SLUG:
        ep = next((e for e in state.store["endpoints"].values() if e["name"] == "/".join(parts[:2])), None)
        if ep is not None:
            return _serve_endpoint(state, ep, parts, model)
    tuned = params_for_model_ref(state, model)
    if tuned is not None:  # a tuned model is served only where a running deployment hosts it
        for dep in _ready_deployments(state):
            hosted = params_for_model_ref(state, dep["model"])
            adapters = [a for a in state.store["adapters"].values() if a["deploymentId"] == dep["id"]]
            if (hosted and hosted[1] == tuned[1]) or any(
                    (params_for_model_ref(state, a["adapterModelId"]) or ({}, ""))[1] == tuned[1] for a in adapters):
                return Served(tuned[0], model, dep)
        raise not_serverless(model)
    raise unknown_model(model)


def _serve_endpoint(state: SimState, ep: dict, parts: list[str], model: str) -> Served:
    deps = [state.store["deployments"][d] for d in ep.get("deployment_ids", []) if d in state.store["deployments"]]
    if len(parts) == 3:
        dep = next((d for d in deps if d["name"] == model), None)
        if dep is None:
            raise unknown_model(model)
        return _serve_deployment(state, dep, model)
    routed = [s["deploymentId"] for s in ep.get("trafficSplit", []) if s.get("weight", 0) > 0]
    if not routed:
        if len(deps) == 1:  # simulator choice: a single deployment serves without a split
            return _serve_deployment(state, deps[0], model)
        raise ApiError(400, f"Endpoint {model} has no traffic split naming a deployment", code="endpoint_unrouted")
    for dep_id in routed:
        dep = state.store["deployments"].get(dep_id)
        if dep is not None:
            advance_deployment(state, dep)
            if dep["state"] in RUNNING:
                return _serve_deployment(state, dep, model)
    return _serve_deployment(state, state.store["deployments"][routed[0]], model)
