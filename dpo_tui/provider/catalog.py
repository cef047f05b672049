"""Chat prices per model and model availability, from the dated table and the live catalogue.

Precedence of prices: a price table named in the config (`prices_path`, the operator's
override) > the live catalogue `GET /v2/supported-models` where reachable > the shipped
dated table. A model without a known price is an error before any call, never $0.

Availability answers, per model, whether it exists and how it is served (serverless,
dedicated endpoint, fine-tunable base, LoRA hosting) and says plainly what to do otherwise.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import together

from dpo_tui.errors import InputError
from dpo_tui.provider.events import Price
from dpo_tui.provider.needs import NEEDS
from dpo_tui.provider.prices import PriceTable, load_prices

Need = Literal["serverless", "dedicated", "fine_tuning", "lora"]


class UnknownPriceError(InputError):
    """A model has no known chat price: refuse before any call rather than count $0."""


@dataclass
class PriceBook:
    """Chat prices by model, each with its source; `source`/`date` describe the whole book."""

    prices: dict[str, Price] = field(default_factory=dict)
    source: str = ""
    date: str | None = None
    notes: list[str] = field(default_factory=list)

    def price(self, model: str) -> Price:
        p = self.prices.get(model)
        if p is None:
            known = ", ".join(sorted(self.prices)) or "none"
            raise UnknownPriceError(f"no chat price known for model {model!r} (source: {self.source}; "
                                    f"priced models: {known}); add it to the price table (prices_path in the config)")
        return p

    def recorded_payload(self) -> dict[str, Any]:
        return {"source": self.source, "date": self.date,
                "models": {m: p.model_dump() for m, p in sorted(self.prices.items())}}


def table_prices(table: PriceTable, origin: str) -> dict[str, Price]:
    src = f"{origin} dated {table.date}"
    return {m: Price(input_usd_per_mtok=p.input_per_1m, output_usd_per_mtok=p.output_per_1m, source=src)
            for m, p in table.serverless.items()}


def fetch_catalogue(client: together.Together) -> list[Any]:
    """Every SupportedModel (all pages). Raises the SDK's errors; callers decide."""
    return list(client.models.list_supported())


def catalogue_prices(models: list[Any], origin: str) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for m in models:
        pricing = getattr(m, "pricing", None)
        if pricing is None or getattr(pricing, "input", None) is None or getattr(pricing, "output", None) is None:
            continue
        out[m.name] = Price(input_usd_per_mtok=float(pricing.input), output_usd_per_mtok=float(pricing.output),
                            source=origin)
    return out


def build_price_book(prices_path: Path | None, catalogue: list[Any] | None = None, *,
                     catalogue_origin: str = "live catalogue /v2/supported-models") -> PriceBook:
    """Shipped table < live catalogue < the config's own table."""
    shipped = load_prices()
    book = PriceBook(dict(table_prices(shipped, "shipped table")), "shipped table", shipped.date)
    if catalogue is not None:
        live = catalogue_prices(catalogue, catalogue_origin)
        book.prices.update(live)
        book.source, book.date = f"{catalogue_origin} (over the shipped table)", None
        book.notes.append(f"{len(live)} prices from the {catalogue_origin}")
    if prices_path is not None:
        table = load_prices(prices_path)
        book.prices.update(table_prices(table, f"config table {prices_path}"))
        book.source, book.date = f"config table {prices_path} (over {book.source})", table.date
    return book


def price_book_for(settings: Any, catalogue: list[Any] | None) -> PriceBook:
    """The price book for these settings, naming the catalogue by its URL (a simulator's shows as such)."""
    return build_price_book(settings.prices_path, catalogue,
                            catalogue_origin=f"catalogue {settings.base_url}/v2/supported-models")


def dedicated_note(model: str) -> str | None:
    """The shipped table's per-minute price of a dedicated endpoint for `model`, if known."""
    table = load_prices()
    instance = table.dedicated.get(model)
    it = table.instances.get(instance) if instance else None
    if it is None:
        return None
    flag = ", an assumption to verify" if it.assumption else ""
    return f"dedicated endpoint {instance}: ${it.price_cents_per_hour / 100:.2f}/h per replica, billed per minute{flag}"


# -- availability ---------------------------------------------------------------------------


@dataclass
class Availability:
    model: str
    exists: bool
    serverless: bool = False
    dedicated: bool = False
    fine_tuning: bool = False
    adapter_modes: list[str] = field(default_factory=list)
    serverless_endpoint: str | None = None
    context_length: int | None = None
    status: str | None = None
    price: Price | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def served_as(self) -> list[str]:
        return [n for n in ("serverless", "dedicated", "fine_tuning") if getattr(self, n)]

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "exists": self.exists, "served_as": self.served_as,
                "serverless_endpoint": self.serverless_endpoint, "adapter_modes": self.adapter_modes,
                "context_length": self.context_length, "status": self.status,
                "price": self.price.model_dump() if self.price else None, "ok": self.ok, "problems": self.problems}


def availability(model: str, catalogue: list[Any], book: PriceBook | None = None,
                 needs: tuple[str, ...] = ()) -> Availability:
    by_name = {m.name: m for m in catalogue}
    m = by_name.get(model)
    if m is None:
        near = difflib.get_close_matches(model, list(by_name), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        return Availability(model, False, problems=[f"{model} is not in Together's model catalogue{hint}"])
    products = set(m.products or [])
    profiles = list(getattr(m, "deployment_profiles", None) or [])
    av = Availability(
        model, True, serverless="PRODUCT_SERVERLESS" in products,
        dedicated="PRODUCT_DEDICATED" in products and bool(profiles),
        fine_tuning="PRODUCT_FINE_TUNING" in products,
        adapter_modes=sorted({p.adapter_mode for p in profiles if getattr(p, "adapter_mode", None)}),
        serverless_endpoint=getattr(m, "serverless_endpoint", None),
        context_length=_int(getattr(m, "context_length", None)), status=getattr(m, "status", None),
        price=book.prices.get(model) if book else None)
    av.problems = [p for need in needs if (p := _problem(av, need))]
    if av.status == "SUPPORTED_MODEL_STATUS_DEPRECATED":
        av.problems.append(f"{model} is deprecated on Together; pick a current model")
    return av


def _problem(av: Availability, need: str) -> str | None:
    m = av.model
    if need == "serverless" and not av.serverless:
        if av.dedicated:
            return (f"{m} is not served serverless: start a dedicated endpoint for it (billed per minute, counted "
                    f"into the budget), or use a serverless model such as its -Turbo variant for generation")
        return f"{m} is not served serverless and has no dedicated deployment profile: pick another model"
    if need == "serverless" and av.price is None:
        return f"{m} is served serverless but has no known price: add it to the price table"
    if need == "dedicated" and not av.dedicated:
        return f"{m} cannot be deployed on a dedicated endpoint (no PRODUCT_DEDICATED deployment profile)"
    if need == "fine_tuning" and not av.fine_tuning:
        return (f"{m} is not a fine-tunable base on Together (no PRODUCT_FINE_TUNING); fine-tune a base that is, "
                f"e.g. the non-Turbo Instruct model")
    if need == "lora":
        if not av.dedicated or not any(a != "ADAPTER_MODE_DISABLED" for a in av.adapter_modes):
            return f"a LoRA on {m} needs a dedicated endpoint that hosts adapters, and {m} offers none"
    return None


def lora_serving_note(model: str, av: Availability) -> str | None:
    """What serving a LoRA fine-tuned from `model` will take."""
    if av.dedicated:
        return f"a LoRA on {model} needs a dedicated endpoint (billed per minute; dpo-tui starts and stops it)"
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def check_needs(needs: list[str]) -> tuple[str, ...]:
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise InputError(f"unknown serving need {bad[0]!r} (known: {', '.join(NEEDS)})")
    return tuple(needs)


def load_price_book(settings: Any, *, live: bool = True) -> PriceBook:
    """The campaign's price book: the live catalogue where reachable (else the shipped table,
    with a note saying so), under the config's own table if one is set."""
    if not live:
        return build_price_book(settings.prices_path)
    from dpo_tui.provider.client import sync_client

    try:
        catalogue = fetch_catalogue(sync_client(settings))
    except (together.APIError, OSError) as exc:
        book = build_price_book(settings.prices_path)
        book.notes.append(f"live catalogue unreachable ({type(exc).__name__}); using {book.source}")
        return book
    return price_book_for(settings, catalogue)


def ensure_available(catalogue: list[Any], requirements: dict[str, tuple[str, ...]],
                     book: PriceBook | None = None) -> list[Availability]:
    """Before a stage: every model must exist and be served as the stage needs.
    Raises InputError listing every problem, each saying what to do."""
    rows = [availability(model, catalogue, book, check_needs(list(needs))) for model, needs in requirements.items()]
    problems = [p for r in rows for p in r.problems]
    if problems:
        raise InputError("; ".join(problems))
    return rows
