"""The real together SDK (strict response validation) against the simulator over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
import together
from together.lib.resources.files import FileAlreadyExistsError

from tests.sim.conftest import GCD, dpo_line, write_jsonl

TURBO72 = "Qwen/Qwen2.5-72B-Instruct-Turbo"  # dedicated-only since the July 2026 catalogue
TURBO7 = "Qwen/Qwen2.5-7B-Instruct-Turbo"  # serverless
BASE7 = "Qwen/Qwen2.5-7B-Instruct"
AUTH = {"Authorization": "Bearer sim-key"}


def test_chat_seeded_repeat_and_usage(client):
    msgs = [{"role": "user", "content": f"Fix this program.\n```python\n{GCD}```\nRecursionError: maximum "
                                        "recursion depth exceeded"}]
    a = client.chat.completions.create(model=TURBO7, messages=msgs, seed=5, temperature=0.8)
    b = client.chat.completions.create(model=TURBO7, messages=msgs, seed=5, temperature=0.8)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert "```python" in a.choices[0].message.content
    assert a.usage.prompt_tokens > 50 and a.usage.completion_tokens > 20
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    texts = {client.chat.completions.create(model=TURBO7, messages=msgs, seed=s, temperature=1.0)
             .choices[0].message.content for s in range(8)}
    assert len(texts) > 1  # the seed matters


def test_every_response_is_labelled_and_unknown_paths_are_json_404(sim, client):
    raw = client.chat.completions.with_raw_response.create(model=TURBO7, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-simulated"] == "true"
    r = httpx.get(sim.base_url + "/v1/nope", headers=AUTH)
    assert r.status_code == 404 and r.headers["x-simulated"] == "true"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.get(sim.base_url + "/v1/v1/chat/completions", headers=AUTH)  # the /v1 trap
    assert r.status_code == 404


def test_unknown_and_non_serverless_models_get_togethers_errors(client):
    with pytest.raises(together.NotFoundError, match="Unable to access model"):
        client.chat.completions.create(model="nobody/no-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(together.BadRequestError, match="non-serverless model"):
        client.chat.completions.create(model=BASE7, messages=[{"role": "user", "content": "x"}])


def test_streaming_chat(client):
    chunks = list(client.chat.completions.create(model=TURBO7, messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, seed=1))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    full = client.chat.completions.create(model=TURBO7, messages=[{"role": "user", "content": "hi"}], seed=1)
    assert text == full.choices[0].message.content


def test_files_upload_list_content_delete_and_duplicate(client, tmp_path):
    path = write_jsonl(tmp_path / "good.jsonl", [dpo_line(), dpo_line("6", "7", "3+3?")])
    f = client.files.upload(file=path, purpose="fine-tune")
    assert f.processing_status == "COMPLETED" and f.file_type == "jsonl" and f.bytes == path.stat().st_size
    got = client.files.retrieve(f.id)
    assert got.id == f.id
    assert f.id in [x.id for x in client.files.list().data]
    assert client.files.content(f.id).read() == path.read_bytes()
    t0 = time.monotonic()
    again = client.files.upload(file=path, purpose="fine-tune")  # 409 + x-should-retry: false -> existing file
    assert again.id == f.id and time.monotonic() - t0 < 1.0
    with pytest.raises(FileAlreadyExistsError):
        client.files.upload(file=path, purpose="fine-tune", raise_if_already_exists=True)
    assert client.files.delete(f.id).deleted is True
    with pytest.raises(together.NotFoundError):
        client.files.retrieve(f.id)


@pytest.mark.parametrize("line,rule", [
    ({"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": "assistant",
      "content": "a"}]}, "required_columns"),
    ({**dpo_line(), "input": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}},
     "last_message_not_assistant"),
    ({**dpo_line(), "preferred_output": [{"role": "assistant", "content": "a"}, {"role": "assistant",
      "content": "b"}]}, "preferred_output_one_message"),
    ({**dpo_line(), "non_preferred_output": [{"role": "user", "content": "b"}]}, "non_preferred_output_role"),
    ({**dpo_line(), "extra": 1}, "extra_column"),
    ({**dpo_line(), "input": {"messages": []}}, "input_messages"),
])
def test_invalid_dpo_file_is_invalid_format_naming_line_and_rule(client, sim, tmp_path, line, rule):
    path = write_jsonl(tmp_path / "bad.jsonl", [dpo_line(), line])
    f = client.files.upload(file=path, purpose="fine-tune")
    assert f.processing_status == "INVALID_FORMAT"
    report = httpx.get(f"{sim.base_url}/v1/files/{f.id}", headers={"Authorization": "Bearer sim-key"}).json()[
        "validation_report"]
    assert report["valid"] is False and report["rule"] == rule and report["line"] == 2
    assert "Line 2" in report["error"] and rule in report["error"]
    est = client.fine_tuning.estimate_price(training_file=f.id, model=BASE7, n_epochs=1)
    assert est.estimation_available is False and est.unavailable_reason == "train_file_invalid"


def test_limits_and_estimate_price(client, tmp_path):
    lim = client.fine_tuning.model_limits(model_name=BASE7)
    assert lim.lora_training.min_batch_size == 8 and lim.lora_training.max_batch_size_dpo >= 8
    f = client.files.upload(file=write_jsonl(tmp_path / "p.jsonl", [dpo_line()] * 3), purpose="fine-tune")
    est = client.fine_tuning.estimate_price(training_file=f.id, model=BASE7, n_epochs=2,
                                            training_method={"method": "dpo", "dpo_beta": 0.1},
                                            training_type={"type": "Lora", "lora_r": 16, "lora_alpha": 32})
    assert est.estimation_available and est.estimated_train_token_count > 0
    assert est.estimated_total_price == pytest.approx(est.estimated_train_token_count * 1.20 / 1e6, rel=1e-3)
    with pytest.raises(together.BadRequestError, match="not supported for fine-tuning"):
        client.fine_tuning.model_limits(model_name=TURBO72)


def _wait_job(client, job_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.retrieve(job_id)
        if job.status in ("completed", "cancelled", "error", "user_error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status}")


def _wait_state(client, ep_id: str, dep_id: str, want: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = client.endpoints.deployments.retrieve(dep_id, endpoint_id=ep_id)
        if dep.status.state == want:
            return dep
        time.sleep(0.03)
    raise AssertionError(f"deployment still {dep.status.state}, wanted {want}")


def test_dpo_finetune_served_on_a_dedicated_endpoint(sim, tmp_path):
    client = together.Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True,
                               max_retries=0, project_id="proj_sim")
    f = client.files.upload(file=write_jsonl(tmp_path / "pairs.jsonl", [dpo_line()] * 8), purpose="fine-tune")
    job = client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo", dpo_beta=0.1,
                                    lora=True, n_epochs=2, batch_size=8, learning_rate=1e-5, suffix="sim-test")
    assert job.status == "pending"
    done = _wait_job(client, job.id)
    assert done.status == "completed"
    assert done.token_count > 0 and isinstance(done.total_price, int) and done.total_price > 0
    out = done.x_model_output_name
    assert out and out.startswith("simproj/")
    types = [e.type for e in client.fine_tuning.list_events(job.id).data]
    assert types[0] == "job_pending" and "training_start" in types and types[-1] == "job_complete"
    assert client.fine_tuning.list_checkpoints(job.id).data[0].checkpoint == "adapter"
    assert job.id in [j.id for j in client.fine_tuning.list().data]
    msgs = [{"role": "user", "content": "hello"}]
    with pytest.raises(together.BadRequestError, match="non-serverless"):
        client.chat.completions.create(model=out, messages=msgs)

    ep = client.endpoints.create(name="dpo-ep")
    dep = client.endpoints.deployments.create(ep.id, name="d1", autoscaling={"minReplicas": 1, "maxReplicas": 1},
                                              model=f"projects/proj_sim/models/{done.api_model_object_id}")
    assert dep.status.state == "DEPLOYMENT_STATE_PROVISIONING"
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_READY")
    client.endpoints.update(ep.id, traffic_split=[{"deploymentId": dep.id, "weight": 1}], update_mask="trafficSplit")
    via_ep = client.chat.completions.create(model="simproj/dpo-ep", messages=msgs, seed=1)
    via_name = client.chat.completions.create(model=out, messages=msgs, seed=1)
    assert via_ep.choices[0].message.content and via_name.choices[0].message.content
    client.endpoints.deployments.update(dep.id, endpoint_id=ep.id, autoscaling={"minReplicas": 0, "maxReplicas": 0},
                                        update_mask="autoscaling")
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_STOPPED")
    with pytest.raises(together.InternalServerError):  # 503: no running replicas
        client.chat.completions.create(model="simproj/dpo-ep", messages=msgs)
    with pytest.raises(together.BadRequestError):  # children first
        client.endpoints.delete(ep.id)
    client.endpoints.deployments.delete(dep.id, endpoint_id=ep.id)
    client.endpoints.delete(ep.id)
    bill = httpx.get(sim.base_url + "/_sim/billing", headers=AUTH).json()
    assert bill["simulated"] is True and bill["total_usd"] > 0  # one started minute of a running replica


def test_base_model_on_an_endpoint_and_catalogue(sim):
    client = together.Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True,
                               max_retries=0, project_id="proj_sim")
    who = client.whoami()
    assert who.project.slug == "simproj"
    hw = client.endpoints.hardware.list()
    assert all(isinstance(h.price_cents_per_hour, int) for h in hw.data)
    models = {m.name: m for m in client.models.list_supported()}
    assert models[TURBO7].pricing.input == 0.30 and models[BASE7].pricing is None
    # the July 2026 snapshot: 72B-Turbo dedicated-only on 2x H100, no serverless price or endpoint
    big = models[TURBO72]
    assert "PRODUCT_SERVERLESS" not in big.products and "PRODUCT_DEDICATED" in big.products
    assert big.pricing is None and big.serverless_endpoint is None
    assert (big.deployment_profiles[0].gpu_count, big.deployment_profiles[0].gpu_type) == (2, "nvidia-h100-80gb")
    prices = {h.name: h.price_cents_per_hour for h in hw.data}
    assert prices["1xnvidia-h100-80gb"] == 549 and prices["1xnvidia-h200-141gb"] == 665
    assert prices["1xnvidia-b200-180gb"] == 899 and prices["2xnvidia-h100-80gb"] == 1098
    assert "PRODUCT_DEDICATED" in models[BASE7].products
    prof = models[BASE7].deployment_profiles[0]
    cfg = client.models.configs.retrieve(prof.config.rsplit("/", 1)[-1], project_id="proj_pub")
    assert cfg.reference_model_id == "ml_qwen25_7b"
    ep = client.endpoints.create(name="base-ep")
    dep = client.endpoints.deployments.create(ep.id, name="b1", autoscaling={"minReplicas": 1, "maxReplicas": 1},
                                              model=prof.model, config=prof.config)
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_READY")
    r = client.chat.completions.create(model="simproj/base-ep/b1", messages=[{"role": "user", "content": "hi"}])
    assert "simulated" in r.choices[0].message.content.lower()
    assert client.endpoints.retrieve(ep.id).deployments[0].state == "DEPLOYMENT_STATE_READY"
    client.endpoints.deployments.update(dep.id, endpoint_id=ep.id, autoscaling={"minReplicas": 0, "maxReplicas": 0},
                                        update_mask="autoscaling")
    client.endpoints.deployments.delete(dep.id, endpoint_id=ep.id)
    client.endpoints.delete(ep.id)


def test_cancel_job(client, tmp_path):
    f = client.files.upload(file=write_jsonl(tmp_path / "c.jsonl", [dpo_line("a", "b")]), purpose="fine-tune")
    job = client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo", lora=True,
                                    batch_size=8)
    assert client.fine_tuning.cancel(job.id).status in ("cancel_requested", "cancelled")
    assert _wait_job(client, job.id).status == "cancelled"


def test_registry_adapters_and_lists_parse_strictly(sim, tmp_path):
    client = together.Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True,
                               max_retries=0, project_id="proj_sim")
    f = client.files.upload(file=write_jsonl(tmp_path / "r.jsonl", [dpo_line("x", "y")] * 2), purpose="fine-tune")
    job = _wait_job(client, client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo",
                                                      lora=True, batch_size=8).id)
    mid = job.api_model_object_id
    reg = client.models.retrieve(mid)
    assert reg.weights.type == "WEIGHTS_TYPE_ADAPTER" and reg.base_model_id == "ml_qwen25_7b"
    assert mid in [m.id for m in client.models.list()]
    assert client.models.retrieve_supported("sm_qwen25_7b").name == BASE7
    assert client.endpoints.hardware.retrieve("1xnvidia-h100-80gb").gpu_count == 1
    ep = client.endpoints.create(name="multi-lora")
    dep = client.endpoints.deployments.create(ep.id, name="base", autoscaling={"minReplicas": 1, "maxReplicas": 1},
                                              model="projects/proj_pub/models/ml_qwen25_7b")
    ad = client.endpoints.adapters.create(endpoint_id=ep.id, deployment_id=dep.id, adapter_model_id=mid)
    assert ad.id.startswith("dad_")
    assert [a.id for a in client.endpoints.adapters.list(endpoint_id=ep.id, deployment_id=dep.id)] == [ad.id]
    assert ep.id in [e.id for e in client.endpoints.list()]
    assert [d.id for d in client.endpoints.deployments.list(ep.id)] == [dep.id]
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_READY")
    r = client.chat.completions.create(model=job.adapter_object_name, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content  # the adapter is served by the deployment it is attached to
    client.endpoints.adapters.delete(ad.id, endpoint_id=ep.id, deployment_id=dep.id, etag="x")
    client.endpoints.deployments.update(dep.id, endpoint_id=ep.id, autoscaling={"minReplicas": 0, "maxReplicas": 0},
                                        update_mask="autoscaling")
    client.endpoints.deployments.delete(dep.id, endpoint_id=ep.id)
    client.endpoints.delete(ep.id)


def test_72b_turbo_is_dedicated_only_as_together_serves_it_now(sim):
    """A serverless chat request for 72B-Turbo gets Together's error for a model it does not
    serve serverless (400, model_not_available); on a dedicated endpoint of its catalogue
    profile (2x H100) it answers, and its replicas bill at the hardware list's price."""
    client = together.Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True,
                               max_retries=0, project_id="proj_sim")
    msgs = [{"role": "user", "content": f"Fix this program.\n```python\n{GCD}```\nRecursionError"}]
    with pytest.raises(together.BadRequestError) as exc:
        client.chat.completions.create(model=TURBO72, messages=msgs, seed=1)
    err = exc.value.body["error"] if "error" in exc.value.body else exc.value.body
    assert err["code"] == "model_not_available" and "non-serverless model " + TURBO72 in err["message"]
    prof = next(m for m in client.models.list_supported() if m.name == TURBO72).deployment_profiles[0]
    ep = client.endpoints.create(name="gen-72b")
    dep = client.endpoints.deployments.create(ep.id, name="d1", autoscaling={"minReplicas": 1, "maxReplicas": 1},
                                              model=prof.model, config=prof.config)
    assert dep.hardware == "2xnvidia-h100-80gb"
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_READY")
    reply = client.chat.completions.create(model="simproj/gen-72b/d1", messages=msgs, seed=1)
    assert reply.usage.prompt_tokens > 0 and "```python" in reply.choices[0].message.content
    client.endpoints.deployments.update(dep.id, endpoint_id=ep.id, update_mask="autoscaling",
                                        autoscaling={"minReplicas": 0, "maxReplicas": 0})
    _wait_state(client, ep.id, dep.id, "DEPLOYMENT_STATE_STOPPED")
