"""Fixtures for the provider tests: the real SDK over HTTP to the in-process simulator.

Retry delays and timeouts are shrunk through Settings (never by patching the SDK), so a
few hundred calls with faults finish in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.config import Settings, load_settings
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.catalog import build_price_book
from dpo_tui.provider.provider import Provider
from dpo_tui.provider.tokenizer import get_tokenizer
from dpo_tui.sim.server import SimServer

MODEL = "Qwen/Qwen2.5-7B-Instruct-Turbo"
FAULTS = "429=0.3,503=0.1,timeout=0.05,reset=0.05"
# A simulated `timeout` hangs this long; the client gives up sooner (FAST["timeout_s"]).
SIM_TIMEOUT = "timeout_s=2.0"
FAST: dict[str, Any] = dict(retry_initial_s=0.005, retry_max_s=0.05, retry_jitter_s=0.005, timeout_s=2.0,
                            connect_timeout_s=1.0, max_attempts=6, concurrency=16, limiter_cooldown_s=0.2)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=11) as server:
        yield server


def fast_settings(base_url: str, **overrides: Any) -> Settings:
    opts = {**FAST, **overrides}
    opts.setdefault("api_key", "sim-dummy-key")
    return load_settings(None, env={}, base_url=base_url, **opts)


def make_provider(db: Path, settings: Settings, **kw: Any) -> tuple[Campaign, Provider]:
    campaign = Campaign.open(db) if db.exists() else Campaign.create(db, name="provider-test", actor="system")
    return campaign, Provider(settings, campaign, build_price_book(None), get_tokenizer(), **kw)


def events_of(campaign: Campaign, *types: str) -> list:
    return [e for e in campaign.store.read(verify=True) if not types or e.type in types]


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You repair Python programs."},
            {"role": "user", "content": f"def add(a, b):\n    return a - b  # case {i}\n\nFix the bug."}]
