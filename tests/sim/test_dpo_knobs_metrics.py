"""DPO's knob set and the training metrics, through the real SDK against the simulator."""

from __future__ import annotations

import math
import time

import httpx
import pytest
import together
from together.types import FineTuningListMetricsResponse

from dpo_tui.sim.learner import train_dpo
from dpo_tui.sim.mutations import candidates
from dpo_tui.sim.policy import base_params
from tests.sim.conftest import GCD, write_jsonl

BASE7 = "Qwen/Qwen2.5-7B-Instruct"
FAIL = "test_gcd FAILED\nRecursionError: maximum recursion depth exceeded\n  File \"gcd.py\", line 5, in gcd"


def _pair(chosen: str, rejected: str) -> dict:
    return {"input": {"messages": [{"role": "user", "content": f"Fix the bug.\n```python\n{GCD}```\n"
                                                               f"Failing tests:\n{FAIL}"}]},
            "preferred_output": [{"role": "assistant", "content": f"```python\n{chosen}```"}],
            "non_preferred_output": [{"role": "assistant", "content": f"```python\n{rejected}```"}]}


def _pairs(n: int = 16) -> list[dict]:
    edits = {e.kind: e for e in candidates(GCD)}
    return [_pair(edits["swap"].program, edits["var"].program)] * n


def _done(client, job_id: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.retrieve(job_id)
        if job.status in ("completed", "cancelled", "error", "user_error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status}")


def _job(client, tmp_path, name: str, **kw):
    train = client.files.upload(file=write_jsonl(tmp_path / f"{name}.jsonl", _pairs()), purpose="fine-tune")
    job = client.fine_tuning.create(training_file=train.id, model=BASE7, training_method="dpo", lora=True,
                                    n_epochs=2, batch_size=8, learning_rate=1e-5, suffix=name, **kw)
    assert _done(client, job.id).status == "completed"
    return job


def test_metrics_are_what_the_learner_computed_with_eval_loss_from_the_validation_file(client, tmp_path):
    val = client.files.upload(file=write_jsonl(tmp_path / "val.jsonl", _pairs(8)), purpose="fine-tune")
    job = _job(client, tmp_path, "dpo-val", dpo_beta=0.1, validation_file=val.id, n_evals=2, n_checkpoints=2,
               rpo_alpha=0.5, dpo_normalize_logratios_by_length=True, random_seed=3)
    got = client.fine_tuning.list_metrics(job.id)
    assert isinstance(got, FineTuningListMetricsResponse)
    train = [r for r in got.metrics if "train/loss" in r]
    evals = [r for r in got.metrics if "eval/loss" in r]
    assert [r["train/global_step"] for r in train] == [1, 2, 3, 4]  # 16 pairs / 8 x 2 epochs
    assert train[0]["train/loss"] == pytest.approx(math.log(2))  # the policy starts at the reference
    assert train[-1]["train/loss"] < train[0]["train/loss"] and train[-1]["train/rewards/accuracies"] == 1.0
    assert all(r["train/learning_rate"] == 1e-5 and r["train/grad_norm"] > 0 and r["train/kl"] >= 0 for r in train)
    assert len(evals) == 2 and evals[-1]["eval/loss"] < math.log(2)
    # the same numbers as the learner itself, run on the same pairs
    _, report = train_dpo(base_params("7b"), _pairs(), beta=0.1, epochs=2, learning_rate=1e-5, batch_size=8,
                          seed=3, validation=_pairs(8), n_evals=2)
    assert got.metrics == report.metrics
    assert len(client.fine_tuning.list_metrics(job.id, global_step_from=3).metrics) == 3  # steps 3, 4 and one eval
    assert len([r for r in client.fine_tuning.list_metrics(job.id, resolution=2).metrics if "train/loss" in r]) == 2


def test_simpo_is_reference_free_in_the_learner(client, tmp_path):
    dpo = _job(client, tmp_path, "plain", dpo_beta=0.1, simpo_gamma=0.0)
    simpo = _job(client, tmp_path, "simpo", dpo_beta=0.1, simpo_gamma=0.5)
    first = lambda job: client.fine_tuning.list_metrics(job.id).metrics[0]["train/loss"]  # noqa: E731
    assert first(dpo) == pytest.approx(math.log(2))
    assert first(simpo) != pytest.approx(math.log(2), abs=1e-3)  # no reference: the margin starts at w . delta - gamma
    ref_free, _ = train_dpo(base_params("7b"), _pairs(), beta=0.1, epochs=2, learning_rate=1e-5, batch_size=8,
                            reference_free=True, gamma=0.5)
    anchored, _ = train_dpo(base_params("7b"), _pairs(), beta=0.1, epochs=2, learning_rate=1e-5, batch_size=8)
    assert ref_free["weights"] != anchored["weights"]


def test_no_metrics_before_training_and_the_route_refuses_bad_knobs(sim, client, tmp_path):
    f = client.files.upload(file=write_jsonl(tmp_path / "x.jsonl", _pairs()), purpose="fine-tune")
    auth = {"Authorization": "Bearer sim-key"}
    body = {"training_file": f.id, "model": BASE7, "training_method": {"method": "dpo", "dpo_beta": 0.1}}
    for change, needle in ((("training_method", {"method": "dpo", "rpo_alpha": -1}), "rpo_alpha must be a number >= 0"),
                           (("training_method", {"method": "dpo", "simpo_gamma": 0.5}), "needs dpo_reference_free"),
                           (("training_method", {"method": "sft", "rpo_alpha": 0.5}), "only supported for DPO"),
                           (("n_evals", 2), "n_evals > 0 needs a validation_file"),
                           (("n_checkpoints", 0), "n_checkpoints must be an integer between 1 and 10"),
                           (("validation_file", "file-nope"), "Validation file file-nope not found")):
        r = httpx.post(sim.base_url + "/v1/fine-tunes", json={**body, change[0]: change[1]}, headers=auth)
        assert r.status_code == 400 and needle in r.text, (change, r.text)
    with pytest.raises(together.NotFoundError):
        client.fine_tuning.list_metrics("ft-nope")
