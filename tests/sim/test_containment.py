"""The simulator contains what it runs: a hostile program inside a chat request or inside an
uploaded pair, sent through the real SDK, runs only in the bubblewrap sandbox (no file
written outside it, no API key in its environment), and never at all without bubblewrap."""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from pathlib import Path

import pytest
import together

from dpo_tui.sim import check
from dpo_tui.sim.check import Example, passes
from dpo_tui.tasks.sandbox import SandboxUnavailable
from tests.sim.conftest import write_jsonl

TURBO72 = "Qwen/Qwen2.5-72B-Instruct-Turbo"
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


def test_a_hostile_program_in_a_chat_request_is_contained(sim, traps):
    key, paths, cwd = traps
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0)
    program = _hostile(paths, SQUARE_BUGGY)
    msgs = [{"role": "user", "content": f"Fix the bug.\n```python\n{program}```\nFailing tests:\n{FAILURE}"}]
    ran = check._run.cache_info().misses
    reply = client.chat.completions.create(model=TURBO72, messages=msgs, seed=1, temperature=0.7)
    assert "```python" in reply.choices[0].message.content
    assert check._run.cache_info().misses > ran, "the 72B model checked candidates on the prompt's examples"
    _nothing_written(paths, cwd)
    assert key not in reply.choices[0].message.content


def _repair_pair(targets: list[str]) -> dict:
    prompt = _hostile(targets, SQUARE_BUGGY)
    chosen, rejected = _hostile(targets, SQUARE_FIXED), _hostile(targets, "def square(x):\n    return x - x\n")
    return {"input": {"messages": [{"role": "user", "content": f"Fix the bug.\n```python\n{prompt}```\n"
                                                               f"Failing tests:\n{FAILURE}"}]},
            "preferred_output": [{"role": "assistant", "content": f"```python\n{chosen}```"}],
            "non_preferred_output": [{"role": "assistant", "content": f"```python\n{rejected}```"}]}


def test_a_hostile_program_in_an_uploaded_pair_is_contained(sim, traps, tmp_path):
    key, paths, cwd = traps
    client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0)
    f = client.files.upload(file=write_jsonl(tmp_path / "pairs.jsonl", [_repair_pair(paths)] * 8),
                            purpose="fine-tune")
    ran = check._run.cache_info().misses
    job = client.fine_tuning.create(training_file=f.id, model=BASE7, training_method="dpo", dpo_beta=0.1,
                                    lora=True, n_epochs=1, batch_size=8, learning_rate=1e-5)
    deadline = time.monotonic() + 60
    while (job := client.fine_tuning.retrieve(job.id)).status not in ("completed", "error", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.05)
    assert job.status == "completed"
    assert check._run.cache_info().misses > ran, "the learner ran the pair's programs on the prompt's examples"
    _nothing_written(paths, cwd)


def test_the_checked_program_sees_no_key_no_network_and_only_a_fresh_directory(monkeypatch):
    key = "tgp_v1_" + secrets.token_urlsafe(24)
    monkeypatch.setenv("TOGETHER_API_KEY", key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    probes = [
        "import os\ndef f():\n    return os.environ.get('TOGETHER_API_KEY')\n",
        "import os\ndef f():\n    return sorted(os.environ)\n",
        "import os\ndef f():\n    return os.listdir('.')\n",
        f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return 'net'\n",
    ]
    env = ["HOME", "LANG", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "TMPDIR"]
    examples = (Example("f", "[]", repr(key)), Example("f", "[]", repr(env)), Example("f", "[]", "[]"),
                Example("f", "[]", "'net'"))
    try:
        counts = passes(probes, examples)
    finally:
        listener.close()
    # no key, a scrubbed environment, an empty fresh cwd, no network (not even the host's loopback)
    assert counts == [0, 1, 1, 0], counts


def test_without_bwrap_the_simulator_runs_nothing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="the simulator refuses to run request code"):
        passes([SQUARE_FIXED + "\n# unique " + uuid.uuid4().hex + "\n"], (Example("square", "[3]", "9"),))
