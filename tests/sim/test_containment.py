"""The simulator runs no request code: a hostile program inside a chat request or inside an
uploaded pair, sent through the real SDK, is read and answered but never executed (nothing
written, the key never echoed), with or without bubblewrap; and what a web page could send
to its loopback port is refused."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from pathlib import Path

import httpx
import pytest
import together

from dpo_tui.tasks.sandbox import SandboxUnavailable
from dpo_tui.sim import evaluate as ev
from tests.sim.conftest import write_jsonl

TURBO72 = "Qwen/Qwen2.5-72B-Instruct-Turbo"
TURBO7 = "Qwen/Qwen2.5-7B-Instruct-Turbo"  # serverless (72B-Turbo is dedicated-only in the July 2026 catalogue)
BASE7 = "Qwen/Qwen2.5-7B-Instruct"


def _hostile(targets: list[str], body: str) -> str:
    """A program that, at import, writes the environment's API key to each of `targets`."""
    return ("import os\n"
            f"for _p in {targets!r}:\n"
            "    try:\n"
            "        with open(_p, 'w') as _f:\n"
            "            _f.write(os.environ.get('TOGETHER_API_KEY', 'no key'))\n"
            "    except OSError:\n"
            "        pass\n"
            f"{body}")


SQUARE_BUGGY = "def square(x):\n    return x + x\n"
SQUARE_FIXED = "def square(x):\n    return x * x\n"
FAILURE = ("FAIL test_square\n  File \"test_square.py\", line 4, in test_square\n"
           "    assert square(*input_data) == expected\n"
           "where input_data = [3], expected = 9\nAssertionError")


@pytest.fixture
def traps(tmp_path, monkeypatch):
    """The caller's cwd (a fresh directory) and a fresh /tmp name, plus a key in the environment."""
    key = "tgp_v1_" + secrets.token_urlsafe(24)
    monkeypatch.setenv("TOGETHER_API_KEY", key)
    cwd = tmp_path / "caller-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    paths = [str(cwd / "pwned.txt"), f"/tmp/dpo-tui-pwned-{uuid.uuid4().hex}", "pwned-relative.txt"]
    yield key, paths, cwd
    for p in paths[:2]:
        Path(p).unlink(missing_ok=True)


def _nothing_written(paths: list[str], cwd: Path) -> None:
    for p in paths[:2]:
        assert not Path(p).exists(), f"the request's program wrote {p} on the host"
    assert list(cwd.iterdir()) == [], "the request's program wrote into the caller's cwd"


def test_a_hostile_program_in_a_chat_request_is_never_run(sim, traps):
    key, paths, cwd = traps
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0, project_id="proj_sim")
    program = _hostile(paths, SQUARE_BUGGY)
    msgs = [{"role": "user", "content": f"Fix the bug.\n```python\n{program}```\nFailing tests:\n{FAILURE}"}]
    served, stop = ev.serve(client, "hostile-72b", "projects/proj_pub/models/ml_qwen25_72b_turbo")  # dedicated-only
    try:
        for seed in range(4):
            reply = client.chat.completions.create(model=served, messages=msgs, seed=seed, temperature=0.7)
            assert "```python" in reply.choices[0].message.content
            assert key not in reply.choices[0].message.content
    finally:
        stop()
    _nothing_written(paths, cwd)


def _repair_pair(targets: list[str]) -> dict:
    prompt = _hostile(targets, SQUARE_BUGGY)
    chosen, rejected = _hostile(targets, SQUARE_FIXED), _hostile(targets, "def square(x):\n    return x - x\n")
    return {"input": {"messages": [{"role": "user", "content": f"Fix the bug.\n```python\n{prompt}```\n"
                                                               f"Failing tests:\n{FAILURE}"}]},
            "preferred_output": [{"role": "assistant", "content": f"```python\n{chosen}```"}],
            "non_preferred_output": [{"role": "assistant", "content": f"```python\n{rejected}```"}]}


def test_a_hostile_program_in_an_uploaded_pair_is_never_run(sim, traps, tmp_path):
    key, paths, cwd = traps
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0)
    f = client.files.upload(file=write_jsonl(tmp_path / "pairs.jsonl", [_repair_pair(paths)] * 8),
                            purpose="fine-tune")
    job = client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo", dpo_beta=0.1,
                                    lora=True, n_epochs=1, batch_size=8, learning_rate=1e-5)
    deadline = time.monotonic() + 60
    while (job := client.fine_tuning.retrieve(job.id)).status not in ("completed", "error", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.05)
    assert job.status == "completed"
    _nothing_written(paths, cwd)


def test_the_simulator_runs_no_process_and_starts_without_bubblewrap(monkeypatch, traps):
    """Nothing the simulator serves with starts a process or execs code (evaluate.py and
    paired.py are measurement tools that test answers with the product's sandboxed runner,
    outside the server); with no bwrap on PATH the simulator still starts and answers."""
    root = Path(__file__).resolve().parents[2] / "dpo_tui" / "sim"
    for path in sorted(set(root.glob("*.py")) - {root / "evaluate.py", root / "paired.py"}):
        text = path.read_text()
        for banned in ("subprocess", "tasks.sandbox", "run_sandboxed", "exec(", "eval(", "os.system", "Popen"):
            assert banned not in text, f"{path.name} uses {banned}"
    from dpo_tui.sim.server import SimServer

    key, paths, cwd = traps
    monkeypatch.setenv("PATH", "/nonexistent")
    with SimServer(seed=2, job_stage_seconds=0.01, provision_seconds=0.01) as server:
        client = together.Together(api_key="sim-key", base_url=server.base_url, max_retries=0)
        msgs = [{"role": "user", "content": f"```python\n{_hostile(paths, SQUARE_BUGGY)}```\n{FAILURE}"}]
        reply = client.chat.completions.create(model=TURBO7, messages=msgs, seed=1, temperature=0.7)
    assert "```python" in reply.choices[0].message.content
    _nothing_written(paths, cwd)


# ---------------------------------------------------------------- what a web page could send
def _counts(sim) -> dict:
    return {kind: len(sim.state.store[kind]) for kind in ("files", "jobs")}


@pytest.mark.parametrize("headers,status", [
    ({"Content-Type": "text/plain"}, 401),                                       # a CORS simple request
    ({"Content-Type": "text/plain", "Authorization": "Bearer sim-key"}, 415),
    ({"Content-Type": "application/json", "Authorization": "Basic c2ltOmtleQ=="}, 401),
    ({"Content-Type": "application/json", "Authorization": "Bearer sim-key", "Origin": "https://evil.example"}, 403),
    ({"Content-Type": "text/plain", "Origin": "null"}, 403),
])
def test_requests_a_browser_could_send_are_refused_with_no_side_effect(sim, headers, status, tmp_path):
    before = _counts(sim)
    program = _hostile([str(tmp_path / "pwned.txt")], SQUARE_BUGGY)
    chat = {"model": TURBO72, "messages": [{"role": "user", "content": f"```python\n{program}```\n{FAILURE}"}]}
    for path, body in (("/v1/chat/completions", json.dumps(chat)), ("/v1/files", "purpose=fine-tune&file_name=x.jsonl"),
                       ("/v1/fine-tunes", json.dumps({"training_file": "file-x", "model": BASE7,
                                                      "training_method": "dpo"}))):
        r = httpx.post(sim.base_url + path, content=body, headers=headers)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert _counts(sim) == before
    assert not (tmp_path / "pwned.txt").exists()


def test_a_401_is_togethers_authentication_error_and_a_wrong_key_is_refused(tmp_path):
    from dpo_tui.sim.server import SimServer

    with SimServer(seed=1, api_key="right-key", state_dir=tmp_path / "s") as server:
        ok = together.Together(api_key="right-key", base_url=server.base_url, max_retries=0)
        assert ok.fine_tuning.list() is not None
        bad = together.Together(api_key="wrong-key", base_url=server.base_url, max_retries=0)
        with pytest.raises(together.AuthenticationError, match="Invalid API key"):
            bad.fine_tuning.list()
        r = httpx.get(server.base_url + "/v1/fine-tunes")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_the_upload_put_needs_the_signed_urls_token(sim, tmp_path):
    r = httpx.post(sim.base_url + "/v1/files", headers={"Authorization": "Bearer sim-key"},
                   files={"purpose": (None, "fine-tune"), "file_name": (None, "p.jsonl"), "file_type": (None, "jsonl"),
                          "checksum": (None, uuid.uuid4().hex)})
    assert r.status_code == 302
    location, file_id = r.headers["Location"], r.headers["X-Together-File-Id"]
    bare = location.split("?", 1)[0]
    for url in (bare, bare + "?token=forged"):
        assert httpx.put(url, content=b"{}\n").status_code == 403
    assert sim.state.store["files"][file_id]["uploaded"] is False
    assert httpx.put(location, content=b"{}\n", headers={"Origin": "https://evil.example"}).status_code == 403
    assert httpx.put(location, content=b"{}\n").status_code == 200


def test_sim_serve_allow_remote_needs_an_api_key_and_then_checks_it(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--host", "0.0.0.0", "--allow-remote"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--allow-remote needs --api-key" in res.stderr and "Traceback" not in res.stderr
    proc = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--allow-remote", "--api-key", "team-key", "--state-dir", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip().rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/v1/fine-tunes", headers={"Authorization": "Bearer other"}).status_code == 401
        assert httpx.get(url + "/v1/fine-tunes", headers={"Authorization": "Bearer team-key"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_bwrap_demo_refuses_and_names_only_options_its_commands_take(dpo_tui_proc, tmp_path):
    env = {"PATH": "/nonexistent"}
    proc = dpo_tui_proc("demo", "--db", tmp_path / "d.db", "--fresh", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # the simulator itself needs no sandbox (it runs nothing); the runner's tests of the candidates do
    assert "refusing to run model-written code" in proc.stderr and "bubblewrap" in proc.stderr
    # the one option named is named with the one command that takes it
    assert "--unsandboxed" not in proc.stderr.replace("only `dpo-tui tasks check` can run without it, with --unsandboxed", "")
    assert not (tmp_path / "d.db").exists() or "events" not in proc.stdout
    help_ = dpo_tui_proc("demo", "--help").stdout + dpo_tui_proc("run", "--help").stdout
    assert "--unsandboxed" not in help_


def test_the_runners_refusal_names_the_one_command_that_takes_unsandboxed(monkeypatch, dpo_tui_proc):
    from dpo_tui.tasks.suites import task_from_code
    from dpo_tui.tasks.sandbox import run_tests

    task = task_from_code("t", "def f():\n    return 1\n", "def test_f():\n    assert f() == 1\n")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable) as err:
        run_tests(task, task.buggy_program)
    assert "only `dpo-tui tasks check` can run without it, with --unsandboxed" in str(err.value)
    assert "--unsandboxed" in dpo_tui_proc("tasks", "check", "--help").stdout
