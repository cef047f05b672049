"""Catalogue and identity: /v2/supported-models, /v3/whoami, hardware, configs, the model registry."""

from __future__ import annotations

from aiohttp import web

from dpo_tui.sim import catalog
from dpo_tui.sim.server import STATE, ApiError, json_body

routes = web.RouteTableDef()


def page(items: list, request: web.Request, default_limit: int = 50) -> dict:
    """A cursor page: {"data": [...], "next_cursor": "c<n>" | null}."""
    try:
        start = int(request.query.get("after", "c0")[1:] or 0)
        limit = max(1, min(int(request.query.get("limit", default_limit)), 1000))
    except ValueError:
        raise ApiError(400, "bad pagination cursor or limit") from None
    chunk = items[start:start + limit]
    nxt = f"c{start + limit}" if start + limit < len(items) else None
    return {"data": chunk, "next_cursor": nxt}


@routes.get("/v2/supported-models")
async def supported(request: web.Request) -> web.Response:
    prices = request.app[STATE].prices
    q = request.query
    items = [catalog.supported_model(m, prices) for m in catalog.BASE_MODELS]
    if q.get("search"):
        term = q["search"].lower()
        exact = [i for i in items if i["name"].lower() == term]
        items = exact or [i for i in items if term in i["name"].lower()]
    if q.get("product"):
        items = [i for i in items if q["product"] in i["products"]]
    if q.get("adapterMode"):
        items = [i for i in items if any(p.get("adapterMode") == q["adapterMode"] for p in i["deploymentProfiles"])]
    return json_body(page(items, request))


@routes.get("/v2/supported-models/{model_id}")
async def supported_one(request: web.Request) -> web.Response:
    mid = request.match_info["model_id"]
    for m in catalog.BASE_MODELS:
        if mid in (f"sm_{m.key}", m.name):
            return json_body(catalog.supported_model(m, request.app[STATE].prices))
    raise ApiError(404, f"Supported model {mid} not found", code="not_found")


@routes.get("/v3/whoami")
async def whoami(request: web.Request) -> web.Response:
    return json_body(catalog.whoami())


@routes.get("/v1/projects")
async def projects(request: web.Request) -> web.Response:
    return json_body({"data": [{"id": catalog.PROJECT_ID, "name": catalog.PROJECT_NAME,
                                "organization_id": catalog.ORG_ID, "organization_name": "Simulated organization",
                                "slug": catalog.PROJECT_SLUG}], "next_cursor": None})


@routes.get("/v2/public/inference-instance-types")
async def hardware(request: web.Request) -> web.Response:
    return json_body({"object": "list", "data": catalog.instance_types(request.app[STATE].prices),
                      "next_cursor": None})


@routes.get("/v2/public/inference-instance-types/{it}")
async def hardware_one(request: web.Request) -> web.Response:
    for it in catalog.instance_types(request.app[STATE].prices):
        if request.match_info["it"] in (it["id"], it["name"]):
            return json_body(it)
    raise ApiError(404, f"Instance type {request.match_info['it']} not found", code="not_found")


def check_project(request: web.Request) -> str:
    pid = request.match_info["project"]
    if pid not in (catalog.PROJECT_ID, catalog.PUBLIC_PROJECT):
        raise ApiError(404, f"Project {pid} not found", code="not_found")
    return pid


@routes.get("/v2/projects/{project}/configs")
async def configs(request: web.Request) -> web.Response:
    check_project(request)
    prices = request.app[STATE].prices
    ref = request.query.get("referenceModelId") or request.query.get("referenceModel", "").rsplit("/", 1)[-1]
    items = [catalog.config(m, prices) for m in catalog.BASE_MODELS if m.dedicated and ref in ("", m.ml_id)]
    return json_body(page(items, request))


@routes.get("/v2/projects/{project}/configs/{cr}")
async def config_one(request: web.Request) -> web.Response:
    check_project(request)
    for m in catalog.BASE_MODELS:
        if m.dedicated and request.match_info["cr"] == m.cr_id:
            return json_body(catalog.config(m, request.app[STATE].prices))
    raise ApiError(404, f"Config {request.match_info['cr']} not found", code="not_found")


def tuned_registry(rec: dict) -> dict:
    base = catalog.base_model(rec["base"])
    return {"id": rec["id"], "name": rec["name"], "organizationId": catalog.ORG_ID, "projectId": catalog.PROJECT_ID,
            "visibility": "VISIBILITY_PRIVATE",
            "weights": {"type": "WEIGHTS_TYPE_ADAPTER" if rec.get("lora") else "WEIGHTS_TYPE_DEFAULT",
                        "architecture": "Qwen2ForCausalLM"},
            "baseModel": base.registry_path if base else "", "baseModelId": base.ml_id if base else "",
            "description": f"DPO fine-tune of {rec['base']} by job {rec['job_id']} (simulated)"}


def registry_items(request: web.Request) -> list[dict]:
    if request.match_info["project"] == catalog.PUBLIC_PROJECT:
        return [catalog.registry_model(m) for m in catalog.BASE_MODELS]
    return [tuned_registry(r) for r in request.app[STATE].store["models"].values()]


@routes.get("/v2/projects/{project}/models")
async def models(request: web.Request) -> web.Response:
    check_project(request)
    return json_body(page(registry_items(request), request))


@routes.get("/v2/projects/{project}/models/{model_id}")
async def model_one(request: web.Request) -> web.Response:
    check_project(request)
    mid = request.match_info["model_id"]
    for item in registry_items(request):
        if mid in (item["id"], item["name"]):
            return json_body(item)
    raise ApiError(404, f"Model {mid} not found", code="not_found")
