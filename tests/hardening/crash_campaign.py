"""Crash campaign: SIGKILL a headless campaign at random points in every stage, restart it
until it is done, and check that nothing was lost, repeated or left running.

    .venv/bin/python tests/hardening/crash_campaign.py                 # the full campaign
    .venv/bin/python tests/hardening/crash_campaign.py --rounds 4 --kills 10 --seed 3

One *round* is a fresh campaign that is SIGKILLed `--kills` times (each kill aimed at a
stage that has not finished yet: the driver polls the log read-only for a target event,
waits a random delay, then kills), then restarted and left to finish. After every kill the
partial log must pass `audit`; after the finish the campaign is compared with a fresh
uninterrupted run of the same plan (the reference):

- `audit` passes; every rollout finished with the same outcome and final program;
- the exported pairs file has the same sha256; the gate takes the same decision;
- no idempotency key has two `call.completed`; every `call.orphaned` is counted in spend
  (spend = completed costs + orphan reservations + training + endpoint minutes);
- exactly one training job (in the log and on the simulator's side);
- every `endpoint.started` has its `endpoint.stopped`, and no simulator endpoint is left up.

Prints "kills survived / kills made" and the figures; exit 0 when every round held.
Importable: `run_campaign(...)` returns a `CrashReport`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
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
from dpo_tui.events.fold import fold  # noqa: E402
from dpo_tui.events.store import open_store  # noqa: E402


def small_plan() -> str:
    """The demo plan shrunk as the runner tests do (every stage, ~30 s on 2 cores)."""
    return (demo_plan_path().read_text()
            .replace("rollouts_per_task = 4", "rollouts_per_task = 2")
            .replace("max_iters = 4", "max_iters = 3")
            .replace("pilot_rollouts = 8", "pilot_rollouts = 4")
            .replace("seeds = [11, 12, 13]", "seeds = [11, 12]").replace("\nk = 3", "\nk = 2"))


def tiny_plan() -> str:
    """Smaller still, for the default test run: every stage, one eval seed."""
    return small_plan().replace("seeds = [11, 12]", "seeds = [11]").replace("\nk = 2", "\nk = 1")


# Kill targets: (stage label, event type to wait for, max random delay after it in s).
# The delay moves the kill off the event boundary into the work that follows.
TARGETS: list[tuple[str, str, float]] = [
    ("split", "split.approved", 0.2),
    ("rollouts", "rollout.started", 0.5),
    ("rollouts", "call.started", 0.05),
    ("rollouts", "call.completed", 0.05),
    ("rollouts", "budget.pilot_calibrated", 0.3),
    ("rollouts", "rollout.finished", 1.0),
    ("pairs", "pairs.built", 0.01),
    ("pairs", "pairs.exported", 0.01),
    ("upload", "train.file_uploaded", 0.01),
    ("training", "train.job_requested", 0.03),
    ("training", "train.job_created", 0.3),
    ("training", "train.job_status", 1.5),
    ("endpoint", "endpoint.started", 0.5),
    ("endpoint", "endpoint.ready", 0.3),
    ("eval", "endpoint.ready", 4.0),
    ("endpoint", "endpoint.stopped", 0.05),
    ("eval", "eval.results", 0.01),
]


# A bug of the simulator (dpo_tui/sim), found by this campaign: a tuned model samples with
# `fingerprint = job id` (sim/jobs.py), and job ids come from `random.Random(f"ids:{seed}")`
# (sim/state.py), re-seeded each time the embedded simulator starts. A restart before the
# job is created therefore gives the same job a different id, and the tuned arm of the eval
# different replies than an uninterrupted run (same pairs, same losses).
SIM_JOB_ID_BUG = ("BUG(sim): tuned eval differs after a restart: the tuned model's sampling fingerprint is its job "
                  "id, drawn from an id RNG re-seeded at every simulator start (sim/state.py new_id, sim/jobs.py)")


def count(db: Path, type_: str) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            return conn.execute("SELECT count(*) FROM event WHERE type = ?", (type_,)).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


STAGE_MARKS = [("eval.results", "eval"), ("endpoint.ready", "eval"), ("endpoint.started", "endpoint"),
               ("train.job_finished", "endpoint"), ("train.job_requested", "training"),
               ("train.file_uploaded", "training"), ("pairs.exported", "upload"), ("pairs.built", "pairs"),
               ("split.approved", "rollouts")]


def stage_at(db: Path) -> str:
    """The stage the log shows as under way (the label of a kill, read after it)."""
    for type_, stage in STAGE_MARKS:
        if count(db, type_) > 0:
            return stage
    return "split"


def _events(db: Path) -> list[Any]:
    with open_store(db, readonly=True) as store:
        return list(store.read())


def results(db: Path) -> dict[str, Any]:
    """What must equal between a crashed-and-resumed campaign and the uninterrupted one."""
    evs = _events(db)
    finished = {e.payload["rollout_id"]: (e.payload["passed"], e.payload["outcome"], e.payload["final_program"],
                                          e.payload["iterations"], e.payload["tests_passed"])
                for e in evs if e.type == "rollout.finished"}
    exported = [e.payload for e in evs if e.type == "pairs.exported"]
    gates = [e.payload["decision"] for e in evs if e.type == "decision.gate"]
    allocated = [(e.payload["round"], e.payload["task_id"], e.payload["rollouts"], e.payload["reason"])
                 for e in evs if e.type == "rollouts.allocated"]  # yield allocation: each round's decisions
    looks = [(e.payload["look"], e.payload["samples_seen"], e.payload.get("decision"))
             for e in evs if e.type == "eval.look"]  # a sequential eval: each look and where it stood
    return {"finished": finished, "export_sha256": [(p["together_sha256"], p["trl_sha256"]) for p in exported],
            "gate": gates, "allocated": allocated, "looks": looks}


def check(db: Path, reference: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Every property of a finished campaign; returns (problems, figures)."""
    problems: list[str] = []
    with open_store(db, readonly=True) as store:
        rep = audit(store)
    if not rep.ok:
        problems.append(f"audit failed at seq {rep.first_bad_seq}: {rep.problems[:2]}")
    evs = _events(db)
    got = results(db)
    if got["finished"] != reference["finished"]:
        diff = sorted(k for k in set(got["finished"]) | set(reference["finished"])
                      if got["finished"].get(k) != reference["finished"].get(k))
        tuned = [k for k in diff if k.startswith("eval/") and k.endswith("/tuned")]
        other = [k for k in diff if k not in tuned]
        if other:
            problems.append(f"finished rollouts differ from the uninterrupted run: {len(other)} ({other[:4]})")
        if tuned:
            problems.append(f"{SIM_JOB_ID_BUG}: {len(tuned)} tuned eval rollouts differ ({tuned[:3]})")
    if got["export_sha256"] != reference["export_sha256"]:
        problems.append(f"export sha256 {got['export_sha256']} != reference {reference['export_sha256']}")
    if got["gate"] != reference["gate"]:
        problems.append(f"gate decision {got['gate']} != reference {reference['gate']}")
    for key, what in (("allocated", "allocation decisions"), ("looks", "eval looks")):
        if got[key] != reference[key]:
            problems.append(f"{what} differ from the uninterrupted run: {got[key][:3]} != {reference[key][:3]}")
    completed = Counter(e.payload["idempotency_key"] for e in evs if e.type == "call.completed")
    twice = [k for k, n in completed.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} idempotency keys completed twice: {twice[:3]}")
    orphans = [e.payload for e in evs if e.type == "call.orphaned"]
    call_cost = sum(e.payload["cost_usd"] for e in evs if e.type == "call.completed")
    orphan_cost = sum(o["reserved_usd"] for o in orphans)
    train_cost = sum(e.payload.get("price_usd") or 0.0 for e in evs if e.type == "train.job_finished")
    endpoint_cost = sum(e.payload["cost_usd"] for e in evs if e.type == "endpoint.stopped")
    st = fold(evs).to_json()
    export = st["pairs"].get("export_path")
    if export and Path(export).exists():
        on_disk = hashlib.sha256(Path(export).read_bytes()).hexdigest()
        if on_disk != st["pairs"]["export_sha256"]:
            problems.append(f"export file on disk sha256 {on_disk} != logged {st['pairs']['export_sha256']}")
    elif reference["export_sha256"]:
        problems.append(f"exported pairs file missing: {export}")
    spend = st["spend"]["total_usd"]
    calls = st["calls"]
    if calls["orphaned"] != len(orphans) or abs(calls["orphaned_usd"] - orphan_cost) > 1e-9:
        problems.append(f"orphans in state {calls['orphaned']}/{calls['orphaned_usd']} != log {len(orphans)}/{orphan_cost}")
    if orphans and spend + 1e-9 < call_cost + orphan_cost:
        problems.append(f"spend {spend:.6f} leaves out orphaned calls (completed {call_cost:.6f} + orphaned {orphan_cost:.6f})")
    expected_spend = call_cost + orphan_cost + train_cost + endpoint_cost
    if abs(spend - expected_spend) > 1e-6:
        problems.append(f"spend {spend:.6f} != completed {call_cost:.6f} + orphaned {orphan_cost:.6f} "
                        f"+ training {train_cost:.6f} + endpoints {endpoint_cost:.6f}")
    jobs_logged = {e.payload["job_id"] for e in evs if e.type == "train.job_created"}
    if len(jobs_logged) != 1:
        problems.append(f"{len(jobs_logged)} training jobs in the log: {sorted(jobs_logged)}")
    sim_jobs_file = db.with_name(f"{db.name}.sim") / "jobs.json"
    sim_jobs = json.loads(sim_jobs_file.read_text()) if sim_jobs_file.exists() else {}
    if len(sim_jobs) != 1:
        problems.append(f"{len(sim_jobs)} training jobs on the simulator: {sorted(sim_jobs)}")
    started = Counter(e.payload["endpoint_id"] for e in evs if e.type == "endpoint.started")
    stopped = Counter(e.payload["endpoint_id"] for e in evs if e.type == "endpoint.stopped")
    if set(started) != set(stopped):
        problems.append(f"endpoints started but never stopped: {sorted(set(started) - set(stopped))}")
    sim_eps_file = db.with_name(f"{db.name}.sim") / "endpoints.json"
    sim_eps = json.loads(sim_eps_file.read_text()) if sim_eps_file.exists() else {}
    up = [k for k, v in sim_eps.items() if str(v.get("state", "")).upper() not in ("STOPPED", "DELETED")]
    if up:
        problems.append(f"simulator endpoints left running: {up}")
    figures = {"events": len(evs), "calls_completed": sum(completed.values()), "orphaned": len(orphans),
               "orphaned_usd": round(orphan_cost, 6), "spend_usd": round(spend, 6),
               "endpoints": len(started), "jobs": len(jobs_logged)}
    return problems, figures


@dataclass
class CrashReport:
    rounds: int = 0
    kills_made: int = 0
    kills_survived: int = 0
    kills_survived_but_sim_bug: int = 0   # every check held except the known simulator bug below
    restarts: int = 0
    kills_by_stage: Counter = field(default_factory=Counter)
    orphaned: int = 0
    orphaned_usd: float = 0.0
    problems: list[str] = field(default_factory=list)
    rounds_ok: int = 0
    seconds: float = 0.0
    reference: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(self.kills_by_stage.items()))
        return (f"kills survived / kills made: {self.kills_survived} / {self.kills_made} "
                f"(all but the simulator's tuned-fingerprint bug held: {self.kills_survived_but_sim_bug} / {self.kills_made}) "
                f"({self.rounds_ok}/{self.rounds} rounds held, {self.restarts} restarts, {self.seconds:.0f} s)\n"
                f"kills by stage: {stages}\n"
                f"orphaned calls recorded and costed: {self.orphaned} (${self.orphaned_usd:.6f} kept in spend)\n"
                f"reference: {self.reference}")


def _cmd(plan: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(plan), "--db", str(db), "--yes"]


def _finish(plan: Path, db: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(plan, db), capture_output=True, text=True, timeout=timeout)


def _key(target: tuple[str, str, float]) -> str:
    return f"{target[1]}@{target[0]}"


def reference_counts(db: Path) -> dict[str, int]:
    """How often each target's event occurs in the reference, within the target's stage
    (the rollout stage's events also occur in eval: count those before pairs.built only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (pairs_seq,) = conn.execute("SELECT coalesce(min(seq), 1e18) FROM event WHERE type = 'pairs.built'").fetchone()
        out = {}
        for t in TARGETS:
            limit = pairs_seq if t[0] == "rollouts" else 1e18
            out[_key(t)] = conn.execute("SELECT count(*) FROM event WHERE type = ? AND seq < ?", (t[1], limit)).fetchone()[0]
        return out
    finally:
        conn.close()


def kill_once(plan: Path, db: Path, rng: random.Random, ref_counts: dict[str, int],
              timeout: float = 300) -> tuple[str | None, int | None]:
    """Start a run and SIGKILL it at a random target not yet passed; (stage killed, exit code if it ended)."""
    open_targets = [t for t in TARGETS if count(db, t[1]) < ref_counts.get(_key(t), 0)]
    if not open_targets:
        return None, None
    # TARGETS is in stage order: aim at one of the next three stages still open, so the kills
    # of one campaign walk through every stage instead of piling up in the first one
    groups = list(dict.fromkeys(t[0] for t in open_targets))
    group = groups[rng.randrange(min(3, len(groups)))]
    target = rng.choice([t for t in open_targets if t[0] == group])
    _, type_, max_delay = target
    before, cap = count(db, type_), ref_counts[_key(target)]
    # a later occurrence for repeated events, so kills spread inside a stage as well
    want = min(cap, before + 1 + rng.randrange(max(1, (cap - before) // 2)))
    delay = rng.uniform(0.0, max_delay)
    proc = subprocess.Popen(_cmd(plan, db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if count(db, type_) >= want:
                time.sleep(delay)
                if proc.poll() is not None:
                    break
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return stage_at(db), None
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None, proc.returncode


def run_campaign(workdir: Path, *, rounds: int = 1, kills: int = 3, seed: int = 1, plan_text: str | None = None,
                 timeout: float = 300, log=print) -> CrashReport:
    """Reference run, then `rounds` campaigns each killed `kills` times and finished."""
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    plan = workdir / "plan.toml"
    plan.write_text(plan_text or small_plan())
    report = CrashReport()
    ref_db = workdir / "reference.db"
    res = _finish(plan, ref_db, timeout)
    if res.returncode != 0:
        report.problems.append(f"reference run exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
        return report
    reference = results(ref_db)
    ref_counts = reference_counts(ref_db)
    ref_problems, ref_fig = check(ref_db, reference)
    report.problems += [f"reference: {p}" for p in ref_problems]
    report.reference = {"rollouts_finished": len(reference["finished"]), "export_sha256": reference["export_sha256"],
                        "gate": reference["gate"], "allocation_rounds": len({a[0] for a in reference["allocated"]}),
                        "looks": len(reference["looks"]), **ref_fig}
    rng = random.Random(seed)
    for r in range(rounds):
        report.rounds += 1
        db = workdir / f"round{r + 1}.db"
        made_here = 0
        for _ in range(kills * 3):  # bounded: a run that finishes before its target does not count
            if made_here >= kills:
                break
            stage, code = kill_once(plan, db, rng, ref_counts, timeout)
            report.restarts += 1
            if stage is None:
                if code not in (None, 0):
                    report.problems.append(f"round {r + 1}: a run exited {code} instead of being killed")
                break  # the campaign finished (or no stage is left to kill)
            made_here += 1
            report.kills_made += 1
            report.kills_by_stage[stage] += 1
            with open_store(db, readonly=True) as store:
                partial = audit(store)
            if not partial.ok:
                report.problems.append(f"round {r + 1}: audit of the log left by a kill in {stage} failed "
                                       f"at seq {partial.first_bad_seq}: {partial.problems[:1]}")
            log(f"round {r + 1}: kill {made_here} in {stage} (log at {count(db, 'call.completed')} completed calls)")
        res = _finish(plan, db, timeout)
        report.restarts += 1
        if res.returncode != 0:
            tail = res.stderr.strip().splitlines()[-1:]
            report.problems.append(f"round {r + 1}: the restart to completion exited {res.returncode}: {tail}")
            continue
        problems, fig = check(db, reference)
        report.orphaned += fig["orphaned"]
        report.orphaned_usd += fig["orphaned_usd"]
        report.problems += [f"round {r + 1}: {p}" for p in problems]
        if not problems:
            report.rounds_ok += 1
            report.kills_survived += made_here
        if all(SIM_JOB_ID_BUG in p for p in problems):
            report.kills_survived_but_sim_bug += made_here
        log(f"round {r + 1}: {made_here} kills, finished, {'OK' if not problems else 'FAILED'} {fig}")
    report.seconds = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="fresh campaigns to crash (default 4)")
    ap.add_argument("--kills", type=int, default=8, help="SIGKILLs per campaign (default 8)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plan", choices=("small", "tiny"), default="small")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    args = ap.parse_args(argv)
    import tempfile
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dpo-crash-"))
    rep = run_campaign(workdir, rounds=args.rounds, kills=args.kills, seed=args.seed,
                       plan_text=small_plan() if args.plan == "small" else tiny_plan())
    print(rep.summary())
    for p in rep.problems:
        print("PROBLEM:", p)
    print(f"work folder: {workdir}")
    return 0 if not rep.problems and rep.kills_survived == rep.kills_made else 1


if __name__ == "__main__":
    raise SystemExit(main())
