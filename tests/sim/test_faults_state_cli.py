"""Faults through the real SDK, persistence across restarts, the `sim serve` command."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
import together

from dpo_tui.errors import InputError
from dpo_tui.sim.faults import FaultInjector, FaultSpec
from dpo_tui.sim.server import SimServer
from tests.sim.conftest import dpo_line, write_jsonl

TURBO7 = "Qwen/Qwen2.5-7B-Instruct-Turbo"
HI = [{"role": "user", "content": "hi"}]


def test_fault_spec_parsing():
    spec = FaultSpec.parse("429=0.5, 503=0.1,latency=20")
    assert spec.rates == {"429": 0.5, "503": 0.1} and spec.latency_ms == 20
    for bad in ("429", "418=0.1", "429=2", "429=0.6,503=0.6", "latency=-1", "slow=abc"):
        with pytest.raises(InputError):
            FaultSpec.parse(bad)


def test_fault_draws_are_seeded():
    a, b = FaultInjector("429=0.3,503=0.2", seed=4), FaultInjector("429=0.3,503=0.2", seed=4)
    seq_a = [a.draw()[0] for _ in range(200)]
    assert seq_a == [b.draw()[0] for _ in range(200)]
    assert 40 < seq_a.count("429") < 80 and 20 < seq_a.count("503") < 60


def test_sdk_retries_ride_through_429(sim):
    sim.set_faults("429=0.5")
    before = sim.state.faults.counts["429"]
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=8,
                               _strict_response_validation=True)
    for i in range(12):
        r = client.chat.completions.create(model=TURBO7, messages=HI, seed=i)
        assert r.choices[0].message.content
    assert sim.state.faults.counts["429"] - before >= 3  # retried through, honouring retry-after-ms
    sim.set_faults("")


def test_429_carries_retry_headers(sim):
    sim.set_faults("429=1")
    r = httpx.post(sim.base_url + "/v1/chat/completions", json={"model": TURBO7, "messages": HI},
                   headers={"Authorization": "Bearer sim-key"})
    sim.set_faults("")
    assert r.status_code == 429 and float(r.headers["retry-after-ms"]) > 0 and "retry-after" in r.headers
    assert r.headers["x-simulated"] == "true"


@pytest.mark.parametrize("spec,exc", [
    ("503=1", together.InternalServerError), ("500=1", together.InternalServerError),
    ("reset=1", together.APIConnectionError), ("malformed=1", Exception),
])
def test_other_faults_surface_as_sdk_errors(sim, spec, exc):
    sim.set_faults(spec)
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0)
    try:
        with pytest.raises(exc):
            r = client.chat.completions.create(model=TURBO7, messages=HI)
            r.choices[0].message.content  # a malformed body may only fail on use
    finally:
        sim.set_faults("")


def test_timeout_and_latency_faults(sim):
    sim.set_faults("timeout=1,timeout_s=3")
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0, timeout=0.5)
    with pytest.raises(together.APITimeoutError):
        client.chat.completions.create(model=TURBO7, messages=HI)
    sim.set_faults("latency=300")
    t0 = time.monotonic()
    client.chat.completions.create(model=TURBO7, messages=HI, timeout=5)
    assert time.monotonic() - t0 >= 0.3
    sim.set_faults("")


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    with SimServer(state_dir=state, job_stage_seconds=0.05) as a:
        c = together.Together(api_key="sim-key", base_url=a.base_url, max_retries=0, _strict_response_validation=True)
        f = c.files.upload(file=write_jsonl(tmp_path / "p.jsonl", [dpo_line()] * 2), purpose="fine-tune")
        job = c.fine_tuning.create(training_file=f.id, model="Qwen/Qwen2.5-7B-Instruct", training_method="dpo",
                                   lora=True, batch_size=8)
    time.sleep(0.5)  # the job's clock keeps running while the simulator is down
    with SimServer(state_dir=state, job_stage_seconds=0.05) as b:
        c = together.Together(api_key="sim-key", base_url=b.base_url, max_retries=0, _strict_response_validation=True)
        assert c.files.retrieve(f.id).processing_status == "COMPLETED"
        assert c.files.content(f.id).read() == (tmp_path / "p.jsonl").read_bytes()
        done = c.fine_tuning.retrieve(job.id)
        assert done.status == "completed"
        assert done.x_model_output_name in {m["name"] for m in b.state.store["models"].values()}


def test_sim_serve_prints_the_url_and_refuses_remote_hosts(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--port", "0", "--state-dir",
                             str(tmp_path / "s")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url + "/v2/supported-models", headers={"Authorization": "Bearer k"})
        assert r.status_code == 200 and r.headers["x-simulated"] == "true"
    finally:
        proc.terminate()
        proc.wait(10)
    res = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "non-loopback" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--faults", "teapot=1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown fault kind" in res.stderr
    for flag, value, said in (("--replica-slots", "0", "--replica-slots must be >= 1"),
                              ("--serving-scale", "-1", "--serving-scale must be >= 0")):
        res = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", flag, value],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and said in res.stderr and "Traceback" not in res.stderr


def test_a_restarted_simulator_never_reuses_an_id(tmp_path):
    """A resumed campaign restarts the simulator on its saved state: the ids it hands out are
    new (the audit's spend re-derivation once met an endpoint id given twice)."""
    from dpo_tui.sim.state import SimState

    first = [SimState(seed=0, state_dir=tmp_path).new_id("ep_") for _ in range(1)]
    again = SimState(seed=0, state_dir=tmp_path)
    more = [again.new_id("ep_") for _ in range(3)]
    third = SimState(seed=0, state_dir=tmp_path).new_id("ep_")
    assert len({*first, *more, third}) == 5
    fresh = SimState(seed=0, state_dir=tmp_path / "other").new_id("ep_")
    assert fresh == first[0]  # a new state starts where a new state always did: runs stay reproducible
