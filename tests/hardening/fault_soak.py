"""Fault soak: a whole campaign against the Together simulator with every fault kind on.

    .venv/bin/python tests/hardening/fault_soak.py                       # ~2,000 calls
    .venv/bin/python tests/hardening/fault_soak.py --rollouts-per-task 60 --faults "429=0.1,503=0.05,..."

The simulator runs in this process (so the faults it injected are counted at the source);
`dpo-tui run` runs as a subprocess against it with `backend.kind = "together"` and the
simulator's loopback URL, exactly as against the real API. Timings are shortened through
the config file (client timeout 3 s, backoff 0.1-1 s; the `timeout` fault hangs 5 s).

Reports calls, faults injected (by kind), retries (`call.attempt_failed`), calls given up
(`call.failed`), and the spend reconciliation: the sum of logged `cost_usd` equals the
recomputation from logged usage x logged price, to the cent (and to 1e-9 per call).
Exit 0 when the campaign finished, `audit` passed and the spend reconciles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dpo_tui.campaign.plan import demo_plan_path  # noqa: E402
from dpo_tui.events.audit import audit  # noqa: E402
from dpo_tui.events.store import open_store  # noqa: E402
from dpo_tui.sim.server import SimServer  # noqa: E402

EVERY_FAULT = "429=0.08,503=0.04,500=0.02,timeout=0.01,reset=0.02,malformed=0.02,slow=0.03,latency=5,timeout_s=5"
# A bug of the train/eval stages (dpo_tui/campaign), found by this soak: management calls
# (files, fine-tunes, endpoints) go through the SDK's own 3 retries only, which do not retry a
# malformed 200 body (nor log attempts as events), so one injected fault stops the stage (exit 5).
MGMT_BUG = ("BUG(campaign): a transient fault on a management call stopped the stage (exit 5) instead of being "
            "retried and logged (campaign/train.py mgmt_client: SDK max_retries=3, malformed 200 not retried)")
TRACEBACK_BUG = ("BUG(campaign): a malformed reply to a management call escaped as a Python traceback (exit 1), "
                 "e.g. JSONDecodeError from fine_tuning.create -> estimate_price in campaign/train.py launch")
CONFIG = "timeout_s = 3\nmax_attempts = 6\nretry_initial_s = 0.1\nretry_max_s = 1.0\nretry_jitter_s = 0.1\n"


def soak_plan(rollouts_per_task: int, base_url: str, cap_usd: float, one_seed: bool = False) -> str:
    text = (demo_plan_path().read_text()
            .replace('kind = "simulator"', f'kind = "together"\nbase_url = "{base_url}"')
            .replace("rollouts_per_task = 4", f"rollouts_per_task = {rollouts_per_task}")
            .replace("concurrency = 8", "concurrency = 16")
            .replace("cap_usd = 5.00", f"cap_usd = {cap_usd:.2f}")
            .replace("seeds = [11, 12, 13]", "seeds = [11, 12]").replace("\nk = 3", "\nk = 2"))
    return text.replace("seeds = [11, 12]", "seeds = [11]").replace("\nk = 2", "\nk = 1") if one_seed else text


@dataclass
class SoakReport:
    exit_code: int = -1
    seconds: float = 0.0
    calls: int = 0
    completed: int = 0
    given_up: int = 0
    retries: int = 0
    retries_by_status: Counter = field(default_factory=Counter)
    faults_injected: dict[str, int] = field(default_factory=dict)
    sim_requests: int = 0
    logged_cost_usd: float = 0.0
    recomputed_cost_usd: float = 0.0
    worst_call_diff_usd: float = 0.0
    audit_ok: bool = False
    stages: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    problems: list[str] = field(default_factory=list)
    runs: int = 0
    mgmt_attempts_failed: int = 0
    stage_failures: list[str] = field(default_factory=list)

    def failing_faults(self) -> int:
        return sum(v for k, v in self.faults_injected.items() if k != "slow")

    def summary(self) -> str:
        inj = ", ".join(f"{k} {v}" for k, v in self.faults_injected.items() if v)
        st = ", ".join(f"{k}: {v}" for k, v in sorted(self.retries_by_status.items()))
        return (f"fault soak: exit {self.exit_code} in {self.seconds:.0f} s after {self.runs} run(s) "
                f"({len(self.stage_failures)} stopped by a management-call fault and resumed) ({self.message})\n"
                f"calls {self.calls} (completed {self.completed}, given up {self.given_up}); "
                f"retries (call.attempt_failed) {self.retries} [{st}]; "
                f"management-call attempts failed (api.attempt_failed) {self.mgmt_attempts_failed}\n"
                f"faults injected by the simulator: {sum(self.faults_injected.values())} ({inj}); failing ones "
                f"(all but slow) {self.failing_faults()} vs attempts logged {self.retries + self.mgmt_attempts_failed}\n"
                f"spend reconciliation: logged ${self.logged_cost_usd:.6f} = recomputed ${self.recomputed_cost_usd:.6f} "
                f"(worst call {self.worst_call_diff_usd:.2e} USD); audit {'ok' if self.audit_ok else 'FAILED'}\n"
                f"stages: {self.stages}")


def analyse(db: Path, rep: SoakReport) -> None:
    from dpo_tui.provider.events import cost_usd

    with open_store(db, readonly=True) as store:
        result = audit(store)
        evs = list(store.read())
    rep.audit_ok = result.ok
    if not result.ok:
        rep.problems.append(f"audit failed at seq {result.first_bad_seq}: {result.problems[:2]}")
    keys = {e.payload["idempotency_key"] for e in evs if e.type == "call.started"}
    rep.calls = len(keys)
    completed = [e.payload for e in evs if e.type == "call.completed"]
    rep.completed = len(completed)
    # a key that gave up and was retried later (its rollout errored, then resumed) counts once, as completed
    rep.given_up = len({e.payload["idempotency_key"] for e in evs if e.type == "call.failed"}
                       - {p["idempotency_key"] for p in completed})
    fails = [e.payload for e in evs if e.type == "call.attempt_failed"]
    rep.retries = len(fails)
    rep.retries_by_status = Counter(f"{p['status']}/{p['error']}" for p in fails)
    mgmt = [e.payload for e in evs if e.type == "api.attempt_failed"]  # files, fine-tunes, endpoints
    rep.mgmt_attempts_failed = len(mgmt)
    rep.logged_cost_usd = sum(p["cost_usd"] for p in completed)
    recomputed = [cost_usd(p["usage"], p["price"]) for p in completed]
    rep.recomputed_cost_usd = sum(recomputed)
    rep.worst_call_diff_usd = max((abs(a - p["cost_usd"]) for a, p in zip(recomputed, completed)), default=0.0)
    if round(rep.logged_cost_usd, 2) != round(rep.recomputed_cost_usd, 2) or rep.worst_call_diff_usd > 1e-9:
        rep.problems.append(f"spend does not reconcile: logged {rep.logged_cost_usd!r} vs {rep.recomputed_cost_usd!r}")
    twice = [k for k, n in Counter(p["idempotency_key"] for p in completed).items() if n > 1]
    if twice:
        rep.problems.append(f"{len(twice)} idempotency keys completed twice")


def run_soak(workdir: Path, *, rollouts_per_task: int = 40, faults: str = EVERY_FAULT, seed: int = 7,
             cap_usd: float = 60.0, timeout: float = 3600, one_seed: bool = False) -> SoakReport:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "xdg" / "dpo-tui"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text(CONFIG)
    db = workdir / "soak.db"
    rep = SoakReport()
    t0 = time.monotonic()
    with SimServer(seed=seed, faults=faults, state_dir=workdir / "sim") as sim:
        plan = workdir / "plan.toml"
        plan.write_text(soak_plan(rollouts_per_task, sim.base_url, cap_usd, one_seed))
        env = {**os.environ, "XDG_CONFIG_HOME": str(workdir / "xdg"), "TOGETHER_API_KEY": "sim-dummy-key"}
        env.pop("TOGETHER_BASE_URL", None)
        for _ in range(6):  # bounded: a stage stopped by a fault is resumed by re-running, as documented
            res = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db),
                                  "--yes"], capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
            rep.runs += 1
            last = (res.stderr.strip().splitlines() or [""])[-1]
            if "Traceback" in res.stderr:
                rep.stage_failures.append(last)
                rep.problems.append(f"{TRACEBACK_BUG}: {last}")
            elif res.returncode == 5 and "the API failed" in res.stderr:
                rep.stage_failures.append(last)
                rep.problems.append(f"{MGMT_BUG}: {last}")
            elif res.returncode == 5 and "run again to retry them" in res.stderr:
                rep.stage_failures.append(last)  # rollouts whose calls gave up are errored: a rerun retries them
            else:
                break
        rep.faults_injected = dict(sim.state.faults.counts)
    rep.seconds = time.monotonic() - t0
    rep.exit_code = res.returncode
    (workdir / "run.stderr").write_text(res.stderr)
    try:
        summary = json.loads(res.stdout)
        rep.stages = summary.get("stages", {})
        rep.message = summary.get("message", "")
    except json.JSONDecodeError:
        rep.problems.append(f"no JSON summary (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
    if res.returncode != 0:
        rep.problems.append(f"the campaign exited {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
    if db.exists():
        analyse(db, rep)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollouts-per-task", type=int, default=40, help="default 40: ~2,000 calls")
    ap.add_argument("--faults", default=EVERY_FAULT)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dpo-soak-"))
    rep = run_soak(workdir, rollouts_per_task=args.rollouts_per_task, faults=args.faults, seed=args.seed)
    print(rep.summary())
    for p in rep.problems:
        print("PROBLEM:", p)
    print(f"work folder: {workdir}")
    return 0 if not rep.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
