"""The dated price table (fixtures/prices.toml): serverless, training and instance prices.

Loaded once and passed in; nothing here reads a global. Entries marked `assumption` are
our reading of Together's pricing page and must be checked with estimate-price.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dpo_tui.errors import InputError
from dpo_tui.paths import fixture


@dataclass(frozen=True)
class ServerlessPrice:
    input_per_1m: float
    output_per_1m: float


@dataclass(frozen=True)
class TrainingPrice:
    dpo_lora_per_1m: float
    dpo_full_per_1m: float
    sft_lora_per_1m: float
    sft_full_per_1m: float
    minimum_charge: float = 0.0
    assumption: bool = False


@dataclass(frozen=True)
class InstancePrice:
    name: str
    price_cents_per_hour: int
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: int
    description: str
    assumption: bool = False


@dataclass(frozen=True)
class PriceTable:
    date: str
    source: str
    serverless: dict[str, ServerlessPrice] = field(default_factory=dict)
    training: dict[str, TrainingPrice] = field(default_factory=dict)
    dedicated: dict[str, str] = field(default_factory=dict)  # model -> instance name
    instances: dict[str, InstancePrice] = field(default_factory=dict)
    origin: str = "table"  # "table": a dated table file; "catalogue": the live catalogue and hardware list
    # models whose dedicated deployment hosts LoRA adapters (the catalogue's deployment profile
    # `adapterMode` dynamic or fixed): the eval serves base and tuned on one deployment
    adapters: frozenset[str] = frozenset()

    def hosts_adapters(self, model: str) -> bool:
        return model in self.adapters

    def chat_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one serverless call, or None when the model has no serverless price."""
        p = self.serverless.get(model)
        if p is None:
            return None
        return (prompt_tokens * p.input_per_1m + completion_tokens * p.output_per_1m) / 1e6

    def training_rate(self, model: str, method: str = "dpo", lora: bool = True) -> float:
        t = self.training.get(model)
        if t is None:
            raise KeyError(f"no training price for {model}")
        return getattr(t, f"{method}_{'lora' if lora else 'full'}_per_1m")

    def training_cost(self, model: str, tokens: int, epochs: int, method: str = "dpo",
                      lora: bool = True) -> float:
        """USD for training `tokens` per epoch over `epochs` epochs."""
        t = self.training[model]
        usd = tokens * max(1, epochs) * self.training_rate(model, method, lora) / 1e6
        return max(usd, t.minimum_charge)

    def endpoint_cost(self, instance: str, replica_seconds: float) -> float:
        """USD for running replicas, billed per started minute at the hourly price."""
        minutes = math.ceil(replica_seconds / 60.0) if replica_seconds > 0 else 0
        return minutes * self.instances[instance].price_cents_per_hour / 100.0 / 60.0


def load_prices(path: str | Path | None = None) -> PriceTable:
    """Read a price table (default: the shipped fixtures/prices.toml)."""
    p = Path(path) if path is not None else fixture("prices.toml")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read price table {p}: {exc}") from exc
    for key in ("date", "source"):
        if key not in raw:
            raise InputError(f"price table {p} has no `{key}` field")
    try:
        serverless = {m: ServerlessPrice(float(v["input_per_1m"]), float(v["output_per_1m"]))
                      for m, v in raw.get("serverless", {}).items()}
        training = {m: TrainingPrice(**{k: v[k] for k in v}) for m, v in raw.get("training", {}).items()}
        dedicated = {m: str(v["instance"]) for m, v in raw.get("dedicated", {}).items()}
        adapters = frozenset(m for m, v in raw.get("dedicated", {}).items() if v.get("adapters") is True)
        instances = {n: InstancePrice(name=n, **v) for n, v in raw.get("instances", {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"price table {p} is malformed: {exc}") from exc
    return PriceTable(str(raw["date"]), str(raw["source"]), serverless, training, dedicated, instances,
                      adapters=adapters)
