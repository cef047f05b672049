"""The engine at volume (issue 20, bullet 3): where a rollout's time goes when the backend
answers at once, measured against the bare parts on the same machine in the same run.

    .venv/bin/python tests/perf/bench_engine.py [--json] [--rollouts-per-task N]

1. **Calls**: the simulator runs in its own process (`dpo-tui sim serve`, answering at zero
   latency). Bare: `AsyncTogether` chat calls at concurrency 64, nothing else. Engine: the
   real runner (`run --until rollouts`, the `together` backend pointed at that simulator)
   with `rollouts.concurrency = 64` on QuixBugs' train tasks, a serverless 7B generator,
   max_iters 4 with reflections: calls/s over the paid rollouts (after the pilot), from the
   log's timestamps. The engine also runs every candidate's tests in the sandbox, so its
   share of the stage (the test runs' seconds / the test workers, over the stage's wall) is
   printed beside it: where it is near 1, the sandbox, not the product, sets the pace.
2. **Sandbox**: test runs/s of `run_tests` (the harness under bubblewrap, one QuixBugs
   task's tests on its fixed program) against `bwrap <the same namespaces> true` and the same
   bwrap running `python -c pass`, one per core at a time.
3. **CPU per rollout**: the runner's own CPU seconds (this process: engine, provider, event
   log, fold) and its sandboxes', per rollout. The sandboxes' is the sum of each test run's
   `cpu_seconds` in the log's reports, as the harness measured it inside the sandbox (its own
   and its tests'; bwrap's not included): the host's getrusage cannot see it, bwrap's pid
   namespace reaps the tests.

The last stdout line of --json is {"engine_calls_per_s", "bare_calls_per_s", "calls_ratio",
"sandbox_share", "sandbox_runs_per_s", "bwrap_true_per_s", "bwrap_python_per_s",
"sandbox_ratio", "cpu_s_per_rollout", "sandbox_cpu_s_per_rollout", "rollouts", "calls"}.
Every figure is a simulation on a shared machine; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from together import AsyncTogether  # noqa: E402

from dpo_tui.campaign.plan import demo_plan_path  # noqa: E402
from dpo_tui.campaign.runner import run_campaign  # noqa: E402
from dpo_tui.events.store import open_store  # noqa: E402
from dpo_tui.tasks.sandbox import Sandbox, bwrap_command, run_tests  # noqa: E402
from dpo_tui.tasks.suites import load_suite  # noqa: E402

SHARED = ROOT.parent / "shared"
QUIXBUGS = SHARED / "benchmarks" / "quixbugs"
MODEL = "Qwen/Qwen2.5-7B-Instruct-Turbo"
KEY = "sim-bench-key"


def say(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def start_sim() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--port", "0",
                             "--provision-seconds", "0.1", "--job-stage-seconds", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http://127.0.0.1:")), "").rstrip("/.,")
    if not url:
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return proc, url


async def bare_rate(url: str, concurrency: int = 64, calls: int = 1500) -> float:
    client = AsyncTogether(api_key=KEY, base_url=url, max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    messages = [{"role": "user", "content": "Fix this program:\n```python\ndef f(x):\n    return x - 1\n```"}]

    async def one(i: int) -> None:
        async with sem:
            r = await client.chat.completions.create(model=MODEL, messages=messages, seed=i, max_tokens=512)
            assert r.choices[0].message.content is not None

    await asyncio.gather(*(one(i) for i in range(2 * concurrency)))  # connections and caches warm
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    rate = calls / (time.perf_counter() - t0)
    await client.close()
    return rate


def engine_plan(tmp: Path, url: str, rollouts_per_task: int) -> Path:
    text = demo_plan_path().read_text()
    text = (text.replace('kind = "simulator"', f'kind = "together"\nbase_url = "{url}"')
            .replace('train_test = ["fixtures"]', f'train_test = ["quixbugs:{QUIXBUGS}"]')
            .replace('generator = "Qwen/Qwen2.5-72B-Instruct-Turbo"', f'generator = "{MODEL}"')
            .replace('generator_serving = "dedicated"', 'generator_serving = "serverless"')
            .replace("rollouts_per_task = 4", f"rollouts_per_task = {rollouts_per_task}")
            .replace("concurrency = 8", "concurrency = 64")
            .replace("cap_usd = 5.00", "cap_usd = 50.00")
            .replace('name = "demo:', 'name = "engine bench:'))
    path = tmp / "engine.toml"
    path.write_text(text)
    return path


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def engine_figures(db: Path) -> dict:
    with open_store(db, readonly=True) as store:
        events = list(store.read(verify=False))
    paid = {e.payload["rollout_id"] for e in events if e.type == "rollout.started" and e.payload["stage"] == "rollouts"}
    starts = [_ts(e.ts) for e in events if e.type == "rollout.started" and e.payload["rollout_id"] in paid]
    ends = [_ts(e.ts) for e in events if e.type == "rollout.finished" and e.payload["rollout_id"] in paid]
    calls = sum(1 for e in events if e.type == "call.completed" and "/rollouts/" in e.payload["idempotency_key"])
    tests = sum(e.payload["report"]["seconds"] for e in events
                if e.type == "rollout.iteration" and e.payload["rollout_id"] in paid and e.payload.get("report"))
    sandbox_cpu = sum(float(e.payload["report"].get("cpu_seconds") or 0.0) for e in events
                      if e.type == "rollout.iteration" and e.payload.get("report"))  # as each harness measured it
    wall = max(ends) - min(starts)
    workers = os.cpu_count() or 2
    return {"rollouts": len(paid), "calls": calls, "wall_s": wall, "calls_per_s": calls / wall,
            "sandbox_share": tests / workers / wall, "sandbox_cpu_s": sandbox_cpu,
            "all_rollouts": sum(1 for e in events if e.type == "rollout.finished")}


def cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def per_second(fn, n: int) -> float:  # noqa: ANN001
    workers = os.cpu_count() or 2
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: fn(), range(workers)))  # warm
        t0 = time.perf_counter()
        list(pool.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - t0)


def sandbox_figures(n: int = 120) -> dict:
    task = next(t for t in load_suite(f"quixbugs:{QUIXBUGS}") if t.id.endswith("/gcd"))
    bwrap = Sandbox().resolve()
    as_root = os.geteuid() == 0
    with tempfile.TemporaryDirectory() as work:
        base = bwrap_command(bwrap, Sandbox().python, Path(work), as_root=as_root)
        head = base[:base.index(Sandbox().python)]  # the same namespaces and binds, no harness

        def ours() -> None:
            assert run_tests(task, task.fixed_program).passed

        def true() -> None:
            subprocess.run([*head, "true"], check=True, capture_output=True)

        def python() -> None:
            subprocess.run([*head, Sandbox().python, "-S", "-c", "pass"], check=True, capture_output=True)

        figures = {"sandbox_runs_per_s": per_second(ours, n), "bwrap_true_per_s": per_second(true, n),
                   "bwrap_python_per_s": per_second(python, n)}
    figures["sandbox_ratio"] = figures["sandbox_runs_per_s"] / figures["bwrap_true_per_s"]
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rollouts-per-task", type=int, default=8)
    args = ap.parse_args()
    t_all = time.monotonic()
    sim, url = start_sim()
    os.environ["TOGETHER_API_KEY"] = KEY
    try:
        bare = max(asyncio.run(bare_rate(url)) for _ in range(2))
        say(f"bare: {bare:,.0f} calls/s at concurrency 64 (AsyncTogether against the simulator, nothing else)")
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            plan = engine_plan(tmp, url, args.rollouts_per_task)
            c0 = cpu()
            result = run_campaign(plan, tmp / "engine.db", yes=True, until="rollouts")
            c1 = cpu()
            if result.exit_code != 0:
                say(f"the engine run ended {result.status} (exit {result.exit_code})")
                return 1
            eng = engine_figures(tmp / "engine.db")
    finally:
        sim.terminate()
        sim.wait(10)
    n = eng["all_rollouts"]
    out = {"engine_calls_per_s": eng["calls_per_s"], "bare_calls_per_s": bare,
           "calls_ratio": eng["calls_per_s"] / bare, "sandbox_share": eng["sandbox_share"],
           **sandbox_figures(), "cpu_s_per_rollout": (c1[0] - c0[0]) / n,
           "sandbox_cpu_s_per_rollout": eng["sandbox_cpu_s"] / n, "rollouts": eng["rollouts"], "calls": eng["calls"]}
    say(f"engine: {eng['calls']} calls over {eng['rollouts']} paid rollouts in {eng['wall_s']:.1f} s = "
        f"{out['engine_calls_per_s']:,.1f} calls/s ({out['calls_ratio']:.3f}x bare); the sandbox's test runs "
        f"fill {out['sandbox_share']:.0%} of the stage on {os.cpu_count()} workers")
    say(f"sandbox: {out['sandbox_runs_per_s']:.1f} test runs/s (gcd's 6 tests, harness under bwrap) vs bwrap true "
        f"{out['bwrap_true_per_s']:.1f}/s ({out['sandbox_ratio']:.2f}x) and bwrap python -c pass "
        f"{out['bwrap_python_per_s']:.1f}/s")
    say(f"cpu per rollout: runner {out['cpu_s_per_rollout'] * 1000:.0f} ms, its sandboxes "
        f"{out['sandbox_cpu_s_per_rollout'] * 1000:.0f} ms ({n} rollouts, pilot included); "
        f"load {os.getloadavg()[0]:.1f}; {time.monotonic() - t_all:.0f} s in all (simulated)")
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
