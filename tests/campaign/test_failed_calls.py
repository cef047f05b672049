"""Failed calls are never data (issue 13, Build 3), through the real `dpo-tui run`:

- a backend that refuses connections, cannot be resolved, or refuses the key stops the
  rollout stage within seconds at the preflight, exit 5, the cause on stderr, nothing
  marked finished and nothing paid;
- rollouts whose calls give up (simulator faults) end `errored`, not finished: no
  calibration, no pairs, `rollouts.errored` in the summary and in `replay --json`; a second
  run retries them to the end without paying twice for a completed call;
- a backend that goes away mid-stage trips the circuit breaker: the stage stops (exit 5,
  the cause shown) instead of erroring every remaining rollout; a rerun resumes;
- an old log's `rollout.finished` with outcome `call_failed` reads as errored.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from tests.conftest import count_events, run_dpo_tui, small_demo_plan

FAKE_KEY = {"TOGETHER_API_KEY": "some-fake-key"}


# The rollouts' own calls are what these tests fail: a serverless generator keeps a dedicated
# endpoint's management calls (the demo's 72B-Turbo) out of the fault path.
SERVERLESS = {'generator = "Qwen/Qwen2.5-72B-Instruct-Turbo"': 'generator = "Qwen/Qwen2.5-7B-Instruct-Turbo"',
              'generator_serving = "dedicated"': 'generator_serving = "serverless"'}


def real_backend_plan(tmp_path: Path, base_url: str, **more: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(small_demo_plan(**{'kind = "simulator"': f'kind = "together"\nbase_url = "{base_url}"'},
                                 **SERVERLESS, **more))
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events_of(db: Path, type_: str) -> list[dict]:
    with open_store(db, readonly=True) as store:
        return [e.payload for e in store.read() if e.type == type_]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("dpo-tui: error:")]


def assert_stopped_at_preflight(res: subprocess.CompletedProcess, db: Path, elapsed: float, line: str) -> None:
    assert res.returncode == 5, res.stderr
    assert error_lines(res.stderr) == [line], res.stderr
    assert "Traceback" not in res.stderr
    assert elapsed < 30, elapsed
    summary = json.loads(res.stdout)
    assert summary["status"] == "error" and summary["stages"]["rollouts"] == "failed"
    assert summary["rollouts"]["finished"] == 0
    for type_ in ("rollout.finished", "rollout.started", "call.started", "budget.pilot_calibrated"):
        assert count_events(db, type_) == 0, type_  # nothing marked finished, nothing paid


def test_a_refused_connection_stops_at_the_preflight_in_seconds_with_the_cause(tmp_path):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "c.db"
    start = time.monotonic()
    res = run_dpo_tui("run", "--plan", real_backend_plan(tmp_path, url), "--db", db, "--yes", env=FAKE_KEY)
    assert_stopped_at_preflight(res, db, time.monotonic() - start,
                                f"dpo-tui: error: cannot connect to backend {url}: connection refused by "
                                f"127.0.0.1:{port}: is the server running on that port?")


def test_an_unresolvable_host_stops_at_the_preflight_naming_name_resolution(tmp_path):
    url = "http://nonexistent.invalid"
    db = tmp_path / "c.db"
    start = time.monotonic()
    res = run_dpo_tui("run", "--plan", real_backend_plan(tmp_path, url), "--db", db, "--yes", env=FAKE_KEY)
    (line,) = error_lines(res.stderr) or [""]
    assert line.startswith(f"dpo-tui: error: cannot connect to backend {url}: name resolution failed for "
                           "nonexistent.invalid ("), res.stderr
    assert line.endswith("): check the host name and DNS")
    assert_stopped_at_preflight(res, db, time.monotonic() - start, line)


def test_a_backend_that_never_answers_stops_at_the_preflight_as_timed_out(tmp_path):
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        db = tmp_path / "c.db"
        start = time.monotonic()
        res = run_dpo_tui("run", "--plan", real_backend_plan(tmp_path, url), "--db", db, "--yes", env=FAKE_KEY)
        elapsed = time.monotonic() - start
    assert_stopped_at_preflight(res, db, elapsed, f"dpo-tui: error: cannot connect to backend {url}: timed out: no "
                                "answer from the server (check the network, a proxy or a firewall)")


class RefusingBackend:
    """A loopback server that answers every request 401 with Together's error body."""

    def __init__(self) -> None:
        self.requests = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response({"error": {"message": "Invalid API key provided", "type": "invalid_request_error",
                                            "param": None, "code": "invalid_api_key"}}, status=401)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self) -> "RefusingBackend":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def test_a_refused_key_stops_at_the_preflight_with_401_and_one_request(tmp_path):
    with RefusingBackend() as backend:
        url = f"http://127.0.0.1:{backend.port}"
        db = tmp_path / "c.db"
        start = time.monotonic()
        res = run_dpo_tui("run", "--plan", real_backend_plan(tmp_path, url), "--db", db, "--yes", env=FAKE_KEY)
        assert_stopped_at_preflight(res, db, time.monotonic() - start,
                                    f"dpo-tui: error: backend {url} refused the API key (401)")
        # a refused key is not retried: the plan's live catalogue read (then the shipped snapshot) and the preflight
        assert backend.requests == 2


def write_config(text: str) -> None:
    """The provider config of the test's isolated home (tests/conftest.py sets XDG_CONFIG_HOME)."""
    import os

    path = Path(os.environ["XDG_CONFIG_HOME"]) / "dpo-tui" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_rollouts_whose_calls_give_up_are_errored_not_data_and_a_rerun_retries_them(tmp_path):
    write_config("max_attempts = 1\n")  # a call gives up on its first 503
    plan = tmp_path / "plan.toml"
    faulty = small_demo_plan(**{"sim_seed = 7": 'sim_seed = 7\nsim_faults = "503=0.9"'}, **SERVERLESS)
    plan.write_text(faulty)
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 5, res.stderr
    assert "of 6 rollouts errored (a call gave up: " in res.stderr  # the pilot: 4 tasks, 2 of them twice and "run again to retry them" in res.stderr
    summary = json.loads(res.stdout)
    errored = {p["rollout_id"] for p in events_of(db, "rollout.errored")}
    assert errored and summary["rollouts"]["errored"] == len(errored)
    finished = events_of(db, "rollout.finished")
    assert all(p["outcome"] in ("passed", "max_iters") for p in finished)
    assert not errored & {p["rollout_id"] for p in finished}
    assert summary["rollouts"]["finished"] == len(finished) == 6 - len(errored)
    assert count_events(db, "budget.pilot_calibrated") == 0  # no estimate from a pilot with holes
    assert count_events(db, "decision.recorded") == 1  # approve_split only: approve_rollouts never taken on it
    assert count_events(db, "pairs.built") == 0
    replay = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    assert replay["rollouts"]["errored"] == len(errored) and replay["rollouts"]["finished"] == len(finished)
    completed_before = Counter(p["idempotency_key"] for p in events_of(db, "call.completed"))

    plan.write_text(small_demo_plan(**SERVERLESS))  # the backend is fixed
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["rollouts"]["finished"] == summary["rollouts"]["total"] == 26
    assert summary["rollouts"]["errored"] == 0
    retried = {p["rollout_id"] for p in events_of(db, "rollout.finished")}
    assert errored <= retried
    completed = Counter(p["idempotency_key"] for p in events_of(db, "call.completed"))
    assert max(completed.values()) == 1 and set(completed_before) <= set(completed)  # nothing paid twice
    (cal,) = events_of(db, "budget.pilot_calibrated")
    assert errored <= set(cal["rollout_ids"]) and cal["pilot"]["rollouts"] == 4  # calibrated once, its cost on the 4 one per task
    assert run_dpo_tui("audit", "--db", db).returncode == 0


def test_a_backend_that_goes_away_mid_stage_trips_the_breaker_and_a_rerun_resumes(tmp_path):
    write_config("max_attempts = 2\nretry_initial_s = 0.05\nretry_max_s = 0.1\nretry_jitter_s = 0\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def serve() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--port", str(port),
                                 "--faults", "latency=100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)

    sim = serve()
    try:
        assert sim.stdout.readline().strip() == url
        plan = real_backend_plan(tmp_path, url, **{"pilot_rollouts = 4": "pilot_rollouts = 26",
                                                   "concurrency = 8": "concurrency = 2"})
        db = tmp_path / "c.db"
        import os

        run = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db),
                                "--until", "rollouts", "--yes"], env={**os.environ, **FAKE_KEY},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while count_events(db, "call.completed") < 2 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert count_events(db, "call.completed") >= 2
        sim.kill()
        sim.wait(10)
        killed = time.monotonic()
        out, err = run.communicate(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        sim.kill()
        sim.wait(10)
    assert run.returncode == 5, err
    (line,) = error_lines(err)
    assert line.startswith(f"dpo-tui: error: cannot connect to backend {url}: connection refused by 127.0.0.1:{port}")
    assert "3 calls in a row gave up" in line
    assert elapsed < 30, elapsed
    assert len(events_of(db, "call.failed")) == 3  # the breaker's threshold, not one per remaining rollout
    assert len({p["rollout_id"] for p in events_of(db, "rollout.started")}) < 26
    assert json.loads(out)["rollouts"]["finished"] < 26

    sim = serve()  # the backend is back
    try:
        assert sim.stdout.readline().strip() == url
        res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", env=FAKE_KEY,
                          timeout=300)
    finally:
        sim.kill()
        sim.wait(10)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["rollouts"]["finished"] == 26 and summary["rollouts"]["errored"] == 0


def test_an_old_logs_call_failed_rollout_reads_as_errored_and_makes_no_pair(tmp_path):
    from dpo_tui.campaign.pairs import rollout_outcomes
    from dpo_tui.campaign.state.rollouts import ROLLOUTS

    with Campaign.create(tmp_path / "c.db", name="old", actor="operator:t") as c:
        for rid, outcome in (("t1/r0", "call_failed"), ("t1/r1", "max_iters")):
            c.append("rollout.started", {"rollout_id": rid, "task_id": "t1", "stage": "rollouts", "model": "m",
                                         "seed": 1, "max_iters": 2, "reflections": False, "temperature": 0.7,
                                         "max_tokens": 64}, actor="system")
            c.append("rollout.finished", {"rollout_id": rid, "outcome": outcome, "passed": False, "tests": 3,
                                          "tests_passed": 1, "iterations": 1, "final_program": "def f(): pass\n",
                                          # no call events here: audit re-derives a rollout's totals from them
                                          "calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                          "cost_usd": 0.0}, actor="system")
        r = c.state.part(ROLLOUTS)
        assert r.by_id["t1/r0"].status == "errored" and r.by_id["t1/r0"].finished is None
        assert r.to_json()["finished"] == 1 and r.to_json()["errored"] == 1
        assert [o.rollout_id for o in rollout_outcomes(c, {"t1"})] == ["t1/r1"]
        # the retry that finishes it is its first finish, not a second one
        c.append("rollout.finished", {"rollout_id": "t1/r0", "outcome": "passed", "passed": True, "tests": 3,
                                      "tests_passed": 3, "iterations": 2, "final_program": "def f(): return 1\n",
                                      "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
                 actor="system")
        r = c.state.part(ROLLOUTS)
        assert r.to_json()["finished"] == 2 and r.to_json()["errored"] == 0 and r.by_id["t1/r0"].errors == 1
    res = run_dpo_tui("audit", "--db", tmp_path / "c.db")
    assert res.returncode == 0, res.stdout + res.stderr


def test_an_errored_eval_sample_is_no_model_failure_and_no_result_is_computed_without_it(tmp_path):
    from dpo_tui.campaign.evaluation import _outcomes
    from dpo_tui.errors import InputError

    with Campaign.create(tmp_path / "c.db", name="eval", actor="operator:t") as c:
        for arm in ("base", "tuned"):
            c.append("rollout.started", {"rollout_id": f"eval/run-1/test/t1/s11/{arm}", "task_id": "t1",
                                         "stage": "eval", "model": arm, "seed": 11, "max_iters": 2,
                                         "reflections": False, "temperature": 0.7, "max_tokens": 64, "arm": arm,
                                         "suite": "test", "run_id": "run-1"}, actor="system")
        c.append("rollout.finished", {"rollout_id": "eval/run-1/test/t1/s11/base", "outcome": "max_iters",
                                      "passed": False, "tests": 3, "tests_passed": 1, "iterations": 2,
                                      "final_program": "", "calls": 2, "prompt_tokens": 20, "completion_tokens": 9,
                                      "cost_usd": 0.0}, actor="system")
        c.append("rollout.errored", {"rollout_id": "eval/run-1/test/t1/s11/tuned", "idempotency_key": "k",
                                     "reason": "APIStatusError (retries exhausted after 6 attempt(s)): 503",
                                     "status": 503}, actor="system")
        with pytest.raises(InputError, match="errored on the API .a rerun retries it.: no result is computed"):
            _outcomes(c, "run-1", "test")
        assert c.state.to_json()["rollouts"]["by_stage"]["eval"] == {"total": 2, "finished": 1, "passed": 0,
                                                                     "errored": 1}


def test_the_train_stage_checks_the_backend_first_and_a_finished_stage_needs_no_check(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(small_demo_plan(**SERVERLESS))
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "rollouts", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    real_backend_plan(tmp_path, url)  # the same campaign, now on a backend that is down
    start = time.monotonic()
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--yes", env=FAKE_KEY)
    assert res.returncode == 5, res.stderr
    assert error_lines(res.stderr) == [f"dpo-tui: error: cannot connect to backend {url}: connection refused by "
                                       f"127.0.0.1:{port}: is the server running on that port?"]
    assert time.monotonic() - start < 30
    summary = json.loads(res.stdout)
    # finished rollouts made no call, so no preflight stopped them; pairs need no backend; train stopped first
    assert summary["stages"] == {"budget": "done", "split": "done", "rollouts": "done", "pairs": "done",
                                 "train": "failed"}
    assert summary["training"]["job_id"] is None
    with open_store(db, readonly=True) as store:
        assert not [e.type for e in store.read() if e.type.startswith(("training.", "api."))]
