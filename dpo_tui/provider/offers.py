"""What the catalogue offers and at what price: the models' serving offers and the hardware list.

Read live (`models.list_supported()` and `endpoints.hardware.list()`, parsed into the SDK's
own types) for the real API when a key is set and the API answers; the simulator's
catalogue (the shipped dated snapshot it serves) for the simulator backend; the same
shipped snapshot, with a warning, for the real API when the live one cannot be read.

The plan is checked against it (`check_serving`): a model asked for a serving it does not
have fails with one line naming the field and what is offered. Prices come from it too
(`offer_prices`): serverless per token from the catalogue, dedicated per replica-hour from
the hardware list, training from the shipped table (no catalogue field has it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from dpo_tui.errors import InputError
from dpo_tui.provider.prices import InstancePrice, PriceTable, ServerlessPrice, load_prices


ADAPTER_MODES = ("ADAPTER_MODE_DYNAMIC", "ADAPTER_MODE_FIXED")  # a deployment that hosts LoRA adapters


@dataclass(frozen=True)
class Offers:
    models: dict[str, Any]  # name -> together.types.SupportedModel
    hardware: dict[str, Any]  # instance name -> together.types.endpoints.InferenceInstanceType
    origin: str  # "catalogue": read from an API; "table": the shipped snapshot
    as_of: str  # the snapshot's date, or the day the live catalogue was read
    where: str  # in words, for messages
    warnings: tuple[str, ...] = field(default=())

    def profile_instance(self, model: str) -> str | None:
        """The hardware of the model's first deployment profile (`{gpuCount}x{gpuType}`), if any."""
        m = self.models.get(model)
        profiles = list(getattr(m, "deployment_profiles", None) or []) if m is not None else []
        return f"{profiles[0].gpu_count}x{profiles[0].gpu_type}" if profiles else None

    def serves(self, model: str, serving: str) -> bool:
        m = self.models.get(model)
        if m is None:
            return False
        products = set(m.products or [])
        if serving == "serverless":
            return "PRODUCT_SERVERLESS" in products
        return "PRODUCT_DEDICATED" in products and bool(getattr(m, "deployment_profiles", None))

    def hosts_adapters(self, model: str) -> bool:
        """The model's first deployment profile hosts LoRA adapters (adapterMode dynamic or fixed)."""
        m = self.models.get(model)
        profiles = list(getattr(m, "deployment_profiles", None) or []) if m is not None else []
        return bool(profiles) and getattr(profiles[0], "adapter_mode", None) in ADAPTER_MODES

    def hardware_text(self, instance: str, replicas: int = 1) -> str:
        hw = self.hardware.get(instance)
        if hw is None:
            return instance
        rep = f" x {replicas} replicas" if replicas > 1 else ""
        return f"{hw.gpu_count}x {hw.gpu_type}{rep}, ${hw.price_cents_per_hour * replicas / 100:.2f}/h"


def snapshot_offers(table: PriceTable | None = None, *, warning: str | None = None) -> Offers:
    """The shipped snapshot: exactly what the simulator serves, parsed into the SDK's types."""
    from together.types import SupportedModel
    from together.types.endpoints import InferenceInstanceType

    from dpo_tui.sim import catalog

    table = table or load_prices()
    models = {m.name: SupportedModel.model_validate(catalog.supported_model(m, table)) for m in catalog.BASE_MODELS}
    hardware = {h["name"]: InferenceInstanceType.model_validate(h) for h in catalog.instance_types(table)}
    where = f"the shipped catalogue snapshot of {table.date}"
    return Offers(models, hardware, "table", table.date, where, (warning,) if warning else ())


def live_offers(settings: Any) -> Offers:
    """The live catalogue and hardware list. Raises the SDK's errors; callers decide."""
    import httpx

    from dpo_tui.provider.client import sync_client

    # as quick as the preflight: an API that does not answer costs seconds, not the retry policy's minutes
    client = sync_client(settings).with_options(
        timeout=httpx.Timeout(10.0, connect=min(5.0, settings.connect_timeout_s)), max_retries=0)
    models = {m.name: m for m in client.models.list_supported()}
    hardware = {h.name: h for h in client.endpoints.hardware.list().data}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    return Offers(models, hardware, "catalogue", today, f"the catalogue at {settings.base_url} read {today}")


def plan_offers(plan: Any, settings: Any | None = None) -> Offers:
    """The offers a plan is checked and priced against: the simulator's snapshot for the
    simulator backend; the live catalogue for the real API when it can be read (a key is
    set and the API answers), else the shipped snapshot with a warning saying why."""
    if plan.backend.kind == "simulator":
        return snapshot_offers()
    import together

    from dpo_tui.config import load_settings

    try:
        settings = settings or load_settings(None, base_url=plan.backend.base_url)
        if settings.api_key is None:
            raise InputError("no API key set")
        return live_offers(settings)
    except (together.APIError, OSError, InputError) as exc:
        why = exc.message if isinstance(exc, InputError) else type(exc).__name__
        table = load_prices()
        return snapshot_offers(table, warning=f"warning: the live catalogue could not be read ({why}); checked and "
                                              f"priced against the shipped snapshot of {table.date}")


def offer_prices(offers: Offers, table: PriceTable | None = None) -> PriceTable:
    """A price table from the offers: serverless prices from the catalogue, dedicated hardware
    from each model's deployment profile at the hardware list's hourly price, training from the
    shipped table. The snapshot's offers give the shipped table itself."""
    table = table or load_prices()
    if offers.origin == "table":
        return table
    serverless = {n: ServerlessPrice(float(m.pricing.input), float(m.pricing.output)) for n, m in offers.models.items()
                  if "PRODUCT_SERVERLESS" in (m.products or []) and m.pricing is not None
                  and m.pricing.input is not None and m.pricing.output is not None}
    instances = {n: InstancePrice(name=n, price_cents_per_hour=int(h.price_cents_per_hour), gpu_type=h.gpu_type,
                                  gpu_count=int(h.gpu_count), gpu_memory_gib=int(h.gpu_memory_gib or 0),
                                  description=h.description or n) for n, h in offers.hardware.items()}
    dedicated = {n: inst for n in offers.models if (inst := offers.profile_instance(n)) is not None}
    return replace(table, date=offers.as_of, source=offers.where, serverless=serverless,
                   dedicated={**table.dedicated, **dedicated}, instances={**table.instances, **instances},
                   origin="catalogue", adapters=frozenset(n for n in offers.models if offers.hosts_adapters(n)))


def price_disagreements(offers: Offers, table: PriceTable) -> list[str]:
    """Where the live catalogue and the shipped table disagree on a price or an offer."""
    out = []
    live = offer_prices(offers, table)
    for model in sorted(set(table.serverless) | set(live.serverless)):
        a, b = table.serverless.get(model), live.serverless.get(model)
        if a != b:
            out.append(f"{model} serverless: table {_per_m(a)}, catalogue {_per_m(b)}")
    for name in sorted(set(table.instances) & set(live.instances)):
        a, b = table.instances[name].price_cents_per_hour, live.instances[name].price_cents_per_hour
        if a != b:
            out.append(f"{name}: table ${a / 100:.2f}/h, catalogue ${b / 100:.2f}/h")
    return out


def _per_m(p: ServerlessPrice | None) -> str:
    return "no serverless offer" if p is None else f"${p.input_per_1m:g}/${p.output_per_1m:g} per 1M in/out"


def _serverless_models(offers: Offers) -> list[str]:
    return sorted(n for n in offers.models if offers.serves(n, "serverless"))


def generator_instance(plan: Any, offers: Offers) -> str | None:
    """The dedicated generator's hardware: the plan's, else the catalogue's deployment profile."""
    return plan.models.generator_hardware or offers.profile_instance(plan.models.generator)


def check_serving(plan: Any, offers: Offers, where: str = "") -> None:
    """Every model served as the plan asks, by the catalogue; InputError in one line otherwise."""
    m = plan.models
    prefix = f"{where}: " if where else ""
    catalogue = f"catalogue of {offers.as_of}"
    if m.generator in offers.models and not offers.serves(m.generator, m.generator_serving):
        other = "dedicated" if m.generator_serving == "serverless" else "serverless"
        hint = ""
        if offers.serves(m.generator, other):
            inst = offers.profile_instance(m.generator) if other == "dedicated" else None
            shown = f" ({offers.hardware_text(inst, m.generator_replicas)})" if inst else ""
            hint = f'set models.generator_serving = "{other}"{shown} or '
        pick = ", ".join(_serverless_models(offers)) if m.generator_serving == "serverless" else ", ".join(
            sorted(n for n in offers.models if offers.serves(n, "dedicated")))
        raise InputError(f"{prefix}models.generator_serving: {m.generator} has no {m.generator_serving} offer "
                         f"({catalogue}); {hint}pick a {m.generator_serving} model: {pick}")
    if m.generator_serving == "dedicated" and (m.generator in offers.models or m.generator_hardware):
        inst = generator_instance(plan, offers)
        if inst is None or inst not in offers.hardware:
            field_ = "models.generator_hardware" if m.generator_hardware else "models.generator"
            raise InputError(f"{prefix}{field_}: hardware {inst or 'none'!r} is not in the hardware list ({catalogue}; "
                             f"offered: {', '.join(sorted(offers.hardware))})")
    base = m.eval_base or m.policy_base
    if base in offers.models and not offers.serves(base, "dedicated"):
        raise InputError(f"{prefix}models.eval_serving: {base} has no dedicated offer ({catalogue}); eval serves "
                         f"base and tuned on dedicated endpoints: pick a base with one")
