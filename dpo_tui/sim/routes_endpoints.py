"""Dedicated endpoints (reference §7): endpoints, deployments (autoscaling = start/stop), adapters.

Billing: running replicas accrue replica-seconds, billed per started minute at the instance
type's priceCentsPerHour; `GET /_sim/billing` reports it (a simulator-only route).
"""

from __future__ import annotations

from aiohttp import web

from dpo_tui.sim import catalog
from dpo_tui.sim.routes_catalog import check_project, page
from dpo_tui.sim.server import STATE, ApiError, json_body, read_json
from dpo_tui.sim.serving import advance_deployment, deployment_cost, params_for_model_ref
from dpo_tui.sim.state import iso

routes = web.RouteTableDef()
P = "/v2/projects/{project}/endpoints"


def _dep_view(state, d: dict) -> dict:
    advance_deployment(state, d)
    out = {k: d[k] for k in ("id", "endpointId", "projectId", "name", "model", "modelId", "modelRevisionId",
                             "config", "configId", "hardware", "autoscaling", "trafficMode", "etag", "createdAt",
                             "updatedAt", "inactiveTimeout")}
    out["status"] = {"state": d["state"], "message": d["state"].split("_")[-1].capitalize() + " (simulated)",
                     "readyReplicas": d.get("ready", 0), "scheduledReplicas": d["autoscaling"]["minReplicas"]}
    out["desiredReplicas"] = d["autoscaling"]["minReplicas"]
    return out


def _summary(state, d: dict, share: float) -> dict:
    advance_deployment(state, d)
    return {"id": d["id"], "name": d["name"], "model": d["model"], "modelId": d["modelId"], "state": d["state"],
            "trafficMode": d["trafficMode"], "autoscaling": d["autoscaling"], "createdAt": d["createdAt"],
            "estimatedEffectiveTrafficShare": share, "hardware": d["hardware"],
            "desiredReplicas": d["autoscaling"]["minReplicas"], "readyReplicas": d.get("ready", 0)}


def _ep_view(state, ep: dict) -> dict:
    deps = [state.store["deployments"][i] for i in ep["deployment_ids"] if i in state.store["deployments"]]
    total = sum(s["weight"] for s in ep["trafficSplit"]) or 1.0
    shares = {s["deploymentId"]: s["weight"] / total for s in ep["trafficSplit"]}
    return {"id": ep["id"], "name": ep["name"], "projectId": catalog.PROJECT_ID,
            "endpointType": "ENDPOINT_TYPE_DEDICATED", "visibility": ep["visibility"], "etag": ep["etag"],
            "createdAt": ep["createdAt"], "updatedAt": ep["updatedAt"], "trafficSplit": ep["trafficSplit"],
            "deployments": [_summary(state, d, shares.get(d["id"], 0.0)) for d in deps]}


def _endpoint(request: web.Request) -> dict:
    check_project(request)
    ep = request.app[STATE].store["endpoints"].get(request.match_info["ep"])
    if ep is None:
        raise ApiError(404, f"Endpoint {request.match_info['ep']} not found", code="not_found")
    return ep


def _deployment(request: web.Request, ep: dict) -> dict:
    dep = request.app[STATE].store["deployments"].get(request.match_info["dep"])
    if dep is None or dep["endpointId"] != ep["id"]:
        raise ApiError(404, f"Deployment {request.match_info['dep']} not found", code="not_found")
    return dep


@routes.post(P)
async def create_endpoint(request: web.Request) -> web.Response:
    check_project(request)
    state = request.app[STATE]
    body = await read_json(request)
    bare = str(body.get("name", "")).split("/")[-1]
    if not bare:
        raise ApiError(400, "name is required", param="name")
    name = f"{catalog.PROJECT_SLUG}/{bare}"
    if any(e["name"] == name for e in state.store["endpoints"].values()):
        raise ApiError(409, f"Endpoint {name} already exists", code="already_exists",
                       headers={"x-should-retry": "false"})
    now = iso(state.now())
    ep = {"id": state.new_id("ep_"), "name": name, "visibility": body.get("visibility", "VISIBILITY_PRIVATE"),
          "etag": state.new_id("e", 8), "createdAt": now, "updatedAt": now, "trafficSplit": [], "deployment_ids": []}
    state.store.put("endpoints", ep["id"], ep)
    return json_body(_ep_view(state, ep))


@routes.get(P)
async def list_endpoints(request: web.Request) -> web.Response:
    check_project(request)
    state = request.app[STATE]
    items = [_ep_view(state, e) for e in state.store["endpoints"].values()]
    flt = request.query.get("filter", "")
    if flt.startswith("name="):
        want = flt[5:].strip('"')
        items = [i for i in items if want in (i["name"], i["name"].split("/")[-1])]
    return json_body(page(items, request))


@routes.get(P + "/{ep}")
async def get_endpoint(request: web.Request) -> web.Response:
    return json_body(_ep_view(request.app[STATE], _endpoint(request)))


@routes.patch(P + "/{ep}")
async def update_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ep = _endpoint(request)
    body = await read_json(request)
    if "trafficSplit" in body:
        split = body["trafficSplit"] or []
        for s in split:
            if s.get("deploymentId") not in ep["deployment_ids"]:
                raise ApiError(400, f"trafficSplit names unknown deployment {s.get('deploymentId')}")
        ep["trafficSplit"] = [{"deploymentId": s["deploymentId"], "weight": float(s.get("weight", 1.0))}
                              for s in split]
    if "name" in body:
        ep["name"] = f"{catalog.PROJECT_SLUG}/{str(body['name']).split('/')[-1]}"
    if "visibility" in body:
        ep["visibility"] = body["visibility"]
    ep.update(etag=state.new_id("e", 8), updatedAt=iso(state.now()))
    state.store.save("endpoints")
    return json_body(_ep_view(state, ep))


@routes.delete(P + "/{ep}")
async def delete_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ep = _endpoint(request)
    if ep["deployment_ids"]:
        raise ApiError(400, f"Endpoint {ep['name']} still has deployments; delete its deployments first",
                       code="failed_precondition")
    state.store.delete("endpoints", ep["id"])
    return json_body({})


def _resolve_model(state, body: dict) -> tuple[str, str, str, catalog.BaseModel]:
    ref = body.get("model") or body.get("modelId") or ""
    found = params_for_model_ref(state, ref) if ref else None
    if found is None:
        raise ApiError(400, f"Unknown model {ref!r} for a deployment", param="model")
    base = catalog.base_model(found[1])
    if base is not None:
        if not base.dedicated:
            raise ApiError(400, f"Model {base.name} is not available on dedicated endpoints", param="model")
        return f"{base.registry_path}/revisions/{base.rv_id}", base.ml_id, base.rv_id, base
    rec = next(r for r in state.store["models"].values() if found[1] == r["name"])
    short = rec["id"][3:]
    path = f"projects/{catalog.PROJECT_ID}/models/{rec['id']}/revisions/rv_{short}"
    return path, rec["id"], f"rv_{short}", catalog.base_model(rec["base"])


def _autoscaling(body: dict, current: dict | None = None) -> dict:
    a = dict(body.get("autoscaling") or {})
    lo = a.get("minReplicas", (current or {}).get("minReplicas", 1))
    hi = a.get("maxReplicas", max(lo, (current or {}).get("maxReplicas", lo)))
    if not isinstance(lo, int) or not isinstance(hi, int) or lo < 0 or hi < lo:
        raise ApiError(400, "autoscaling needs 0 <= minReplicas <= maxReplicas", param="autoscaling")
    if (lo == 0) != (hi == 0):
        raise ApiError(400, "minReplicas and maxReplicas must both be 0 to stop a deployment", param="autoscaling")
    return {"minReplicas": lo, "maxReplicas": hi}


@routes.post(P + "/{ep}/deployments")
async def create_deployment(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ep = _endpoint(request)
    body = await read_json(request)
    path, mid, rv, base = _resolve_model(state, body)
    auto = _autoscaling(body)
    hardware = state.prices.dedicated.get(base.name, catalog.DEFAULT_INSTANCE)
    if request.query.get("validateOnly") == "true":
        raise ApiError(400, "validateOnly is not simulated")
    now = state.now()
    dep = {"id": state.new_id("dep_"), "endpointId": ep["id"], "projectId": catalog.PROJECT_ID,
           "name": f"{ep['name']}/{str(body.get('name') or 'd1').split('/')[-1]}", "model": path, "modelId": mid,
           "modelRevisionId": rv, "config": f"projects/{catalog.PUBLIC_PROJECT}/configs/{base.cr_id}",
           "configId": base.cr_id, "hardware": hardware, "autoscaling": auto, "trafficMode": "TRAFFIC_MODE_LIVE",
           "etag": state.new_id("de", 8), "createdAt": iso(now), "updatedAt": iso(now),
           "inactiveTimeout": int(body.get("inactiveTimeout") or 0), "ready": 0, "state_since": now,
           "billed_until": now, "replica_seconds": 0.0,
           "state": "DEPLOYMENT_STATE_PROVISIONING" if auto["minReplicas"] else "DEPLOYMENT_STATE_STOPPED"}
    with state.lock:
        state.store.put("deployments", dep["id"], dep)
        ep["deployment_ids"].append(dep["id"])
        state.store.save("endpoints")
    return json_body(_dep_view(state, dep))


@routes.get(P + "/{ep}/deployments")
async def list_deployments(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ep = _endpoint(request)
    deps = [_dep_view(state, state.store["deployments"][i]) for i in ep["deployment_ids"]]
    return json_body(page(deps, request))


@routes.get(P + "/{ep}/deployments/{dep}")
async def get_deployment(request: web.Request) -> web.Response:
    ep = _endpoint(request)
    return json_body(_dep_view(request.app[STATE], _deployment(request, ep)))


@routes.patch(P + "/{ep}/deployments/{dep}")
async def update_deployment(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dep = _deployment(request, _endpoint(request))
    body = await read_json(request)
    with state.lock:
        advance_deployment(state, dep)
        if "autoscaling" in body:
            auto = _autoscaling(body, dep["autoscaling"])
            stopping = auto["maxReplicas"] == 0
            now = state.now()
            if stopping and dep["state"] not in ("DEPLOYMENT_STATE_STOPPED", "DEPLOYMENT_STATE_STOPPING"):
                dep.update(state="DEPLOYMENT_STATE_STOPPING", state_since=now)
            elif not stopping and dep["state"] in ("DEPLOYMENT_STATE_STOPPED", "DEPLOYMENT_STATE_STOPPING"):
                dep.update(state="DEPLOYMENT_STATE_PROVISIONING", state_since=now, ready=0)
            elif not stopping and dep["state"] == "DEPLOYMENT_STATE_READY":
                dep["ready"] = auto["minReplicas"]
            dep["autoscaling"] = auto
        if "inactiveTimeout" in body:
            dep["inactiveTimeout"] = int(body["inactiveTimeout"] or 0)
        dep.update(etag=state.new_id("de", 8), updatedAt=iso(state.now()))
        state.store.save("deployments")
    return json_body(_dep_view(state, dep))


@routes.delete(P + "/{ep}/deployments/{dep}")
async def delete_deployment(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ep = _endpoint(request)
    dep = _deployment(request, ep)
    with state.lock:
        advance_deployment(state, dep)
        dep["deleted_cost_usd"] = deployment_cost(state, dep)
        state.store.put("meta", f"billing:{dep['id']}", {"name": dep["name"], "hardware": dep["hardware"],
                                                          "replica_seconds": dep.get("replica_seconds", 0.0)})
        ep["deployment_ids"].remove(dep["id"])
        ep["trafficSplit"] = [s for s in ep["trafficSplit"] if s["deploymentId"] != dep["id"]]
        state.store.save("endpoints")
        state.store.delete("deployments", dep["id"])
        for a in [a for a in state.store["adapters"].values() if a["deploymentId"] == dep["id"]]:
            state.store.delete("adapters", a["id"])
    return json_body({})


def _adapter_view(a: dict) -> dict:
    return {k: a[k] for k in ("id", "adapterModelId", "desiredRevisionId", "etag", "adapterModel",
                              "desiredRevision", "perCluster")}


@routes.post(P + "/{ep}/deployments/{dep}/adapters")
async def attach_adapter(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dep = _deployment(request, _endpoint(request))
    body = await read_json(request)
    rec = state.store["models"].get(body.get("adapterModelId", ""))
    if rec is None:
        raise ApiError(404, f"Adapter model {body.get('adapterModelId')} not found", code="not_found")
    rv = body.get("adapterRevisionId") or f"rv_{rec['id'][3:]}"
    a = {"id": state.new_id("dad_"), "deploymentId": dep["id"], "adapterModelId": rec["id"], "desiredRevisionId": rv,
         "etag": state.new_id("ae", 8), "adapterModel": f"projects/{catalog.PROJECT_ID}/models/{rec['id']}",
         "desiredRevision": f"projects/{catalog.PROJECT_ID}/models/{rec['id']}/revisions/{rv}",
         "perCluster": [{"adapterModelId": rec["id"], "clusterId": "sim-1", "state": "ADAPTER_LOAD_STATE_READY",
                         "readyPodCount": 1, "failedPodCount": 0, "totalPodCount": 1}]}
    state.store.put("adapters", a["id"], a)
    return json_body(_adapter_view(a))


@routes.get(P + "/{ep}/deployments/{dep}/adapters")
async def list_adapters(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dep = _deployment(request, _endpoint(request))
    items = [_adapter_view(a) for a in state.store["adapters"].values() if a["deploymentId"] == dep["id"]]
    return json_body(page(items, request))


@routes.delete(P + "/{ep}/deployments/{dep}/adapters/{dad}")
async def detach_adapter(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _deployment(request, _endpoint(request))
    if request.match_info["dad"] not in state.store["adapters"]:
        raise ApiError(404, f"Adapter {request.match_info['dad']} not found", code="not_found")
    state.store.delete("adapters", request.match_info["dad"])
    return json_body({})


@routes.get(P + "/{ep}/abExperiments")
@routes.get(P + "/{ep}/shadowExperiments")
async def empty_experiments(request: web.Request) -> web.Response:
    _endpoint(request)
    return json_body({"data": [], "next_cursor": None})


@routes.get("/_sim/billing")
async def billing(request: web.Request) -> web.Response:
    """Simulator-only: what running replicas have cost so far (per started minute)."""
    state = request.app[STATE]
    rows = [{"deployment": d["name"], "hardware": d["hardware"], "state": d["state"],
             "replica_seconds": round(d.get("replica_seconds", 0.0), 3), "usd": deployment_cost(state, d)}
            for d in state.store["deployments"].values()]
    for key, b in state.store["meta"].items():
        if key.startswith("billing:"):
            rows.append({"deployment": b["name"], "hardware": b["hardware"], "state": "DELETED",
                         "replica_seconds": round(b["replica_seconds"], 3),
                         "usd": state.prices.endpoint_cost(b["hardware"], b["replica_seconds"])})
    return json_body({"simulated": True, "deployments": rows, "total_usd": sum(r["usd"] for r in rows)})
