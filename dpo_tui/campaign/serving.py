"""Dedicated endpoints: the eval's (the fine-tune's base and the tuned LoRA served the same
way) and a dedicated generator's for the rollouts (role "generator").

A LoRA of Qwen2.5-7B-Instruct is served only on a dedicated endpoint, so the base is
served on one too (never the serverless FP8 -Turbo model against a LoRA, which would
confound the gate). Endpoints are billed per started minute of a running replica at the
instance's hourly price; every start is logged before it can bill, and every endpoint is
stopped when eval ends, fails or is cancelled, and on the next start after a crash."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dpo_tui.campaign.state.train import ENDPOINTS
from dpo_tui.errors import BudgetCapReached, InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import format_ts

if TYPE_CHECKING:  # the SDK (~0.7 s to import) only where an endpoint is called: audit reads
    # billed_minutes/minute_cost from here
    from dpo_tui.campaign.mgmt import Mgmt

READY, STOPPED = "DEPLOYMENT_STATE_READY", "DEPLOYMENT_STATE_STOPPED"
FAILED = ("DEPLOYMENT_STATE_FAILED",)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _deployment_created(dep: Any) -> datetime:
    """When a deployment was created (its replica bills from then); now when it does not say."""
    created = getattr(dep, "created_at", None)
    if isinstance(created, datetime):
        return created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    return _now()


def billed_minutes(started_at: str, stopped_at: str) -> int:
    seconds = max(0.0, (_parse(stopped_at) - _parse(started_at)).total_seconds())
    return math.ceil(seconds / 60) if seconds > 0 else 0


def minute_cost(minutes: int, price_cents_per_hour: int) -> float:
    return minutes * price_cents_per_hour / 100 / 60


def base_profile(mg: Mgmt, model: str) -> tuple[str, str | None]:
    """(model ref, config) of the catalogue's deployment profile for a base model."""
    for m in mg.call("models.list_supported", lambda: list(mg.client.models.list_supported())):
        if m.name == model:
            profiles = getattr(m, "deployment_profiles", None) or []
            if profiles:
                return profiles[0].model, profiles[0].config
    raise InputError(f"{model} has no dedicated-endpoint deployment profile in the catalogue")


def start(campaign: Campaign, m: Mgmt, *, run_id: str, role: str, model_ref: str,
          config: str | None, price_cents_per_hour: int, instance: str, actor: str,
          ready_timeout_s: float = 1800, poll_s: float = 0.5,
          abort: Callable[[], str | None] | None = None, replicas: int = 1) -> dict[str, Any]:
    """Create an endpoint with one deployment of `model_ref`, wait until it is ready.

    A run killed after Together created the endpoint (or its deployment) but before the log
    said so left it there, unlogged and perhaps billing: it is looked up by name first and
    adopted (logged with `adopted`, billed from its deployment's creation), never refused
    with 409 and never doubled."""
    client = m.client
    slug = m.call("whoami", client.whoami).project.slug
    name = _endpoint_name(campaign, run_id, role)

    def existing_endpoint():
        # the API may give the name with its project prefix ("<slug>/<name>")
        return next((e for e in m.call("endpoints.list", client.endpoints.list).data
                     if e.name.split("/")[-1] == name), None)

    adopted = existing_endpoint()
    ep = adopted or m.call("endpoints.create", client.endpoints.create, name=name, recover=existing_endpoint)
    kw: dict[str, Any] = {"name": "d1", "autoscaling": {"minReplicas": replicas, "maxReplicas": replicas},
                          "model": model_ref}
    if config:
        kw["config"] = config

    def existing_deployment():
        found = m.call("endpoints.retrieve", client.endpoints.retrieve, ep.id)
        summary = next((d for d in (getattr(found, "deployments", None) or [])
                        if str(getattr(d, "name", None) or "").split("/")[-1] == "d1"), None)  # full path names
        if summary is None:
            return None
        return m.call("deployments.retrieve", client.endpoints.deployments.retrieve, summary.id, endpoint_id=ep.id)

    dep = existing_deployment() if adopted is not None else None
    started = _deployment_created(dep) if dep is not None else _now()
    dep = dep or m.call("deployments.create", client.endpoints.deployments.create, ep.id, **kw,
                        recover=existing_deployment)
    chat_model = f"{slug}/{name}/d1"  # pinned to the deployment: base and tuned on the same path
    campaign.append("endpoint.started", {
        "run_id": run_id, "role": role, "endpoint_id": ep.id, "deployment_id": dep.id, "name": name,
        "model": model_ref, "chat_model": chat_model, "instance": instance,
        "price_cents_per_hour": price_cents_per_hour, "started_at": format_ts(started),
        "adopted": adopted is not None, "replicas": replicas}, actor=actor)
    _until_ready(campaign, m, ep.id, dep.id, name=name, role=role, ready_timeout_s=ready_timeout_s, poll_s=poll_s,
                 abort=abort)
    return campaign.state.part(ENDPOINTS).by_id[ep.id]


def _until_ready(campaign: Campaign, m: Mgmt, endpoint_id: str, dep_id: str, *, name: str, role: str,
                 ready_timeout_s: float, poll_s: float, abort: Callable[[], str | None] | None) -> None:
    """Wait until the deployment is ready, route the endpoint to it, log `endpoint.ready`
    (once); a failed or cap-stopped start is stopped and raises."""
    client = m.client
    deadline = time.monotonic() + ready_timeout_s
    while True:
        state = m.call("deployments.retrieve", client.endpoints.deployments.retrieve, dep_id,
                       endpoint_id=endpoint_id).status.state
        if state == READY:
            break
        if state in FAILED or time.monotonic() > deadline:
            stop(campaign, m, endpoint_id, reason=f"deployment {state} before ready")
            raise InputError(f"endpoint {name} did not become ready ({state})")
        why = abort() if abort is not None else None
        if why is not None:  # the budget cap: stop it while it provisions
            stop(campaign, m, endpoint_id,
                 reason=f"the budget cap stopped the {'rollouts' if role == 'generator' else 'eval'}")
            raise BudgetCapReached(why)
        time.sleep(poll_s)
    m.call("endpoints.update", client.endpoints.update, endpoint_id,
           traffic_split=[{"deploymentId": dep_id, "weight": 1}], update_mask="trafficSplit")
    if not campaign.state.part(ENDPOINTS).by_id[endpoint_id].get("ready_at"):
        campaign.append("endpoint.ready", {"endpoint_id": endpoint_id, "ready_at": format_ts(_now())}, actor="system")


REUSABLE = (READY, "DEPLOYMENT_STATE_PROVISIONING", "DEPLOYMENT_STATE_SCALING")


def reuse(campaign: Campaign, m: Mgmt, *, run_id: str, role: str, ready_timeout_s: float = 1800,
          poll_s: float = 0.5, abort: Callable[[], str | None] | None = None) -> dict[str, Any] | None:
    """The campaign's endpoint of (`run_id`, `role`) that the log shows running (started, or
    adopted, by a run that crashed) and Together still deploys: used as it is, its minutes
    billed from its start as before, instead of stopped and deployed again (a resume pays no
    second provisioning). Logged as `endpoint.reused`. None when there is none to use; one
    Together no longer runs is stopped (billed) first."""
    ep = next((e for e in campaign.state.part(ENDPOINTS).running()
               if e.get("run_id") == run_id and e.get("role") == role and e.get("deployment_id")), None)
    if ep is None:
        return None
    import together

    client = m.client
    try:
        state = m.call("deployments.retrieve", client.endpoints.deployments.retrieve, ep["deployment_id"],
                       endpoint_id=ep["endpoint_id"]).status.state
    except together.NotFoundError:
        state = "gone"
    if state not in REUSABLE:
        stop(campaign, m, ep["endpoint_id"], reason=f"left running by an earlier run; not reusable ({state})")
        return None
    campaign.append("endpoint.reused", {"endpoint_id": ep["endpoint_id"], "deployment_state": state,
                                        "at": format_ts(_now())}, actor="system")
    _until_ready(campaign, m, ep["endpoint_id"], ep["deployment_id"], name=ep["name"], role=role,
                 ready_timeout_s=ready_timeout_s, poll_s=poll_s, abort=abort)
    return campaign.state.part(ENDPOINTS).by_id[ep["endpoint_id"]]


ADAPTER_READY, ADAPTER_FAILED = "ADAPTER_LOAD_STATE_READY", "ADAPTER_LOAD_STATE_FAILED"


def attach_adapter(campaign: Campaign, m: Mgmt, ep: dict[str, Any], *, run_id: str, adapter_model_id: str,
                   chat_model: str, ready_timeout_s: float = 900, poll_s: float = 0.5) -> str:
    """Attach run `run_id`'s tuned LoRA to the running base deployment `ep` (Together's
    multi-LoRA: `endpoints.adapters`), wait until every cluster has it loaded, log
    `endpoint.adapter_attached`. An attachment already there (a resume, or a run killed after
    Together made it) is used, never doubled. Returns the model name the tuned arm's calls use."""
    client = m.client
    where = {"endpoint_id": ep["endpoint_id"], "deployment_id": ep["deployment_id"]}

    def existing():
        return next((a for a in m.call("adapters.list", client.endpoints.adapters.list, **where)
                     if a.adapter_model_id == adapter_model_id), None)

    ad = existing() or m.call("adapters.create", client.endpoints.adapters.create, **where,
                              adapter_model_id=adapter_model_id, recover=existing)
    deadline = time.monotonic() + ready_timeout_s
    while True:
        states = [c.state for c in ad.per_cluster or []]
        if states and all(s == ADAPTER_READY for s in states):
            break
        if ADAPTER_FAILED in states or time.monotonic() > deadline:
            raise InputError(f"adapter {adapter_model_id} did not load on {ep['name']} ({', '.join(states) or 'no state'})")
        time.sleep(poll_s)
        ad = m.call("adapters.retrieve", client.endpoints.adapters.retrieve, ad.id, **where)
    if ep.get("adapters", {}).get(run_id) != chat_model:
        campaign.append("endpoint.adapter_attached", {
            **where, "run_id": run_id, "adapter_id": ad.id, "adapter_model_id": adapter_model_id,
            "chat_model": chat_model, "at": format_ts(_now())}, actor="system")
    return chat_model


def _stop_deployment(m: Mgmt, endpoint_id: str, dep_id: str, *, stop_timeout_s: float, poll_s: float) -> None:
    """Scale the deployment to zero, wait until it is stopped, delete it."""
    client = m.client
    m.call("deployments.update", client.endpoints.deployments.update, dep_id, endpoint_id=endpoint_id,
           update_mask="autoscaling", autoscaling={"minReplicas": 0, "maxReplicas": 0})
    deadline = time.monotonic() + stop_timeout_s
    while m.call("deployments.retrieve", client.endpoints.deployments.retrieve, dep_id,
                 endpoint_id=endpoint_id).status.state != STOPPED:
        if time.monotonic() > deadline:
            raise InputError(f"endpoint {endpoint_id} did not stop within {stop_timeout_s:.0f} s: stop it by hand")
        time.sleep(poll_s)
    m.call("deployments.delete", client.endpoints.deployments.delete, dep_id, endpoint_id=endpoint_id)


def endpoint_record(campaign: Campaign, endpoint_id: str) -> dict:
    """The log's record of one of the campaign's endpoints; InputError for an id it never saw
    (checked before any call: a refusal costs nothing)."""
    ep = campaign.state.part(ENDPOINTS).by_id.get(endpoint_id)
    if ep is None:
        raise InputError(f"no endpoint {endpoint_id!r} in this campaign's log")
    return ep


def stop(campaign: Campaign, m: Mgmt, endpoint_id: str, *, reason: str, actor: str = "system",
         stop_timeout_s: float = 600, poll_s: float = 0.5) -> None:
    """Scale to zero, wait until stopped, delete, and log the billed minutes (as `actor`:
    the system when eval ends, an operator who stops it by hand)."""
    ep = endpoint_record(campaign, endpoint_id)
    if ep["state"] == "stopped":
        return
    import together

    dep_id = ep["deployment_id"]
    client = m.client
    try:
        if dep_id:  # (an adopted endpoint a crash left without a deployment has nothing running)
            _stop_deployment(m, endpoint_id, dep_id, stop_timeout_s=stop_timeout_s, poll_s=poll_s)
        m.call("endpoints.delete", client.endpoints.delete, endpoint_id)
    except together.NotFoundError:
        pass  # already gone (deleted by hand, or by a previous attempt)
    stopped_at = format_ts(_now())
    minutes = billed_minutes(ep["started_at"], stopped_at) if dep_id else 0
    campaign.append("endpoint.stopped", {"endpoint_id": endpoint_id, "stopped_at": stopped_at, "minutes": minutes,
                                         "cost_usd": minute_cost(minutes, ep["price_cents_per_hour"]),
                                         "reason": reason}, actor=actor)


def _endpoint_name(campaign: Campaign, run_id: str, role: str) -> str:
    return f"dpo-{campaign.store.campaign_id[:6]}-{run_id}-{role}"[:50]


def adopt_unlogged(campaign: Campaign, m: Mgmt, *, instance: str, price_cents_per_hour: int,
                   by_role: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """Log the endpoints of this campaign that Together has and the log does not (a run killed
    between creating one and logging it), billed from their deployment's creation, so that
    stopping them bills them. `by_role` gives a role's own (instance, cents per hour), e.g. the
    generator's; the others are at `instance` / `price_cents_per_hour`. Returns their ids."""
    client = m.client
    prefix = f"dpo-{campaign.store.campaign_id[:6]}-"
    logged = campaign.state.part(ENDPOINTS).by_id
    slug = None
    found = []
    for ep in m.call("endpoints.list", client.endpoints.list).data:
        bare = ep.name.split("/")[-1]
        if not bare.startswith(prefix) or ep.id in logged:
            continue
        run_id, _, role = bare[len(prefix):].rpartition("-")
        detail = m.call("endpoints.retrieve", client.endpoints.retrieve, ep.id)
        summary = next(iter(getattr(detail, "deployments", None) or []), None)
        dep = (m.call("deployments.retrieve", client.endpoints.deployments.retrieve, summary.id, endpoint_id=ep.id)
               if summary is not None else None)
        slug = slug or m.call("whoami", client.whoami).project.slug
        hw, cents = (by_role or {}).get(role, (instance, price_cents_per_hour))
        campaign.append("endpoint.started", {
            "run_id": run_id or "?", "role": role or "?", "endpoint_id": ep.id,
            "deployment_id": dep.id if dep is not None else "", "name": bare,
            "model": getattr(dep, "model", None) or "?", "chat_model": f"{slug}/{bare}/d1", "instance": hw,
            "price_cents_per_hour": cents,
            "started_at": format_ts(_deployment_created(dep) if dep is not None else _now()), "adopted": True},
            actor="system")
        found.append(ep.id)
    return found


def stop_all(campaign: Campaign, m: Mgmt, *, reason: str, role: str | None = None,
             keep: Callable[[dict[str, Any]], bool] = lambda ep: False) -> list[str]:
    """Stop every endpoint the log shows running (e.g. left by a crash), or only those of
    `role`, but those `keep` says a resume reuses."""
    ids = [e["endpoint_id"] for e in campaign.state.part(ENDPOINTS).running()
           if role in (None, e.get("role")) and not keep(e)]
    for endpoint_id in ids:
        stop(campaign, m, endpoint_id, reason=reason)
    return ids
