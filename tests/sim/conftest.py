"""A simulator per test module (fast job and provisioning clocks) and strict SDK clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from together import Together

from dpo_tui.sim.server import SimServer

GCD = '''def gcd(a, b):
    if b == 0:
        return a
    else:
        return gcd(a % b, b)
'''


def dpo_line(chosen: str = "4", rejected: str = "5", prompt: str = "What is 2+2?") -> dict:
    return {"input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sim():
    with SimServer(seed=11, job_stage_seconds=0.05, provision_seconds=0.05) as server:
        yield server


@pytest.fixture
def client(sim):
    sim.set_faults("")
    return Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True, max_retries=0)
