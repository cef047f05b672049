"""The sequential eval against the fixed one (issue 21, point 2): what each costs in real runs,
and the gate's error rates and power by simulation.

    .venv/bin/python tests/perf/adaptive_eval.py [--quick] [--json]

1. Costs, from real runs: the product (`run_campaign`, the real engine and together SDK against
   the embedded simulator) on QuixBugs (train/test) and HumanEvalFix (held-out, the primary
   suite), once per design (eval.design fixed and sequential, 3 looks; everything else the
   same, so both train the same model) and per effect: "effect" trains at --effect-lr (the
   simulator's DPO gives the tuned model a real gain), "null" at the least learning rate
   Together allows (1e-8), which barely moves a weight (the tuned adapter answers nearly as
   the base does: about no true difference; each run's measured held-out delta is reported).
   Eval cost = the eval's calls plus its endpoint minutes, as the log books them (wall-clock
   minutes: on a loaded machine the same samples can bill different minutes), beside the
   eval's samples and endpoint minutes.
2. Error rates and power, by simulation of the gate over >= 2,000 trials with the domain's
   own functions: A/A ship and rollback rates of the sequential design through
   domain.sequential.run_looks (stats.compare + gate.decide at each look), and both designs'
   power at the planned suite's MDE (domain.power.sequential_power).

`measure_eval(quick)` returns the dict; `--json` prints it as the last stdout line:
eval_fixed_usd, eval_sequential_usd (the effect runs), eval_fixed_usd_null,
eval_sequential_usd_null, eval_sequential_usd_effect, measured effects and looks,
sequential_aa_ship_rate, sequential_aa_rollback_rate, fixed_power, sequential_power.
Every figure is the simulator's, not Together's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dpo_tui.campaign.plan import demo_plan_path  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"
ALPHA, LOOKS, SEEDS = 0.05, 3, 2


def say(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


EFFECT_LR = "1e-5"  # the demo plan's; --effect-lr trains the effect runs harder (a larger true effect)


def bench_plan(design: str, *, null: bool, quick: bool) -> str:
    text = demo_plan_path().read_text()
    heldout_limit = 60 if quick else 164
    text = (text.replace('train_test = ["fixtures"]', f'train_test = ["quixbugs:{SHARED / "quixbugs"}"]')
            .replace("heldout = []", f'heldout = ["humanevalfix:{SHARED / "humanevalfix"}"]\n'
                                     f"heldout_limit = {heldout_limit}")
            .replace("max_iters = 4", "max_iters = 3")
            .replace("cap_usd = 5.00", "cap_usd = 200.00")
            .replace("target_pairs = 20", "target_pairs = 80")
            .replace("seeds = [11, 12, 13]", "seeds = [11, 12]")
            .replace("k = 3", f'k = 2\ndesign = "{design}"\nlooks = {LOOKS}')
            .replace('suites = ["test"]', 'suites = ["test", "heldout"]')
            .replace('primary_suite = "test"', 'primary_suite = "heldout"')
            .replace('name = "demo:', f'name = "adaptive eval bench ({design}, {"null" if null else "effect"}):'))
    text = text.replace("learning_rate = 1e-5", f"learning_rate = {'1e-8' if null else EFFECT_LR}")
    return text


def one_run(folder: Path, design: str, *, null: bool, quick: bool) -> dict:
    """One campaign through every stage; the eval's cost, samples, looks and measured effect."""
    from dpo_tui.campaign.runner import run_campaign
    from dpo_tui.events.campaign import Campaign

    plan = folder / f"{design}-{'null' if null else 'effect'}.toml"
    plan.write_text(bench_plan(design, null=null, quick=quick))
    db = plan.with_suffix(".db")
    t0 = time.perf_counter()
    result = run_campaign(plan, db, until=None, yes=True)
    if result.exit_code != 0:
        raise RuntimeError(f"{plan.name}: {result.message}")
    with Campaign.open(db, readonly=True) as c:
        spend = c.state.part("spend").by_stage
        ev = c.state.part("eval")
        run = ev.runs[ev.latest]
        samples = sum(1 for r in c.state.part("rollouts").by_id.values() if r.stage == "eval")
        heldout = run.suites["heldout"]["comparison"]
        from dpo_tui.events.audit import audit

        audited = audit(c.store)
        if not audited.ok:
            raise RuntimeError(f"{plan.name}: audit failed: {audited.problems[:2]}")
        minutes = sum(e.get("minutes", 0) for e in c.state.part("endpoint").by_id.values()
                      if e.get("role") in ("base", "tuned"))
        out = {"eval_usd": spend.get("eval", 0.0) + spend.get("endpoint", 0.0), "samples": samples,
               "endpoint_minutes": minutes,
               "looks": len(run.looks), "decision": run.decision, "heldout_delta": heldout["delta"],
               "seconds": round(time.perf_counter() - t0, 1)}
    say(f"{plan.name}: eval ${out['eval_usd']:.4f}, {samples} samples, {out['looks']} looks, {out['decision']}, "
        f"held-out delta {out['heldout_delta']:+.3f} ({out['seconds']} s)")
    return out


def _aa_rates(tasks: int, trials: int) -> tuple[float, float]:
    """The sequential design's A/A ship and rollback rates over all looks, through run_looks."""
    from dpo_tui.domain.gate import ROLLBACK, SHIP, GateCriteria
    from dpo_tui.domain.sequential import rounds, run_looks
    from dpo_tui.domain.stats import compare

    rng, counts = random.Random(20261203), {SHIP: 0, ROLLBACK: 0}
    for rep in range(trials):
        rates = [rng.random() for _ in range(tasks)]
        base, tuned = ({f"t{i}": [rng.random() < p for _ in range(SEEDS)] for i, p in enumerate(rates)}
                       for _ in range(2))
        order = rounds(list(base), LOOKS, seed=rep)

        def compare_at(j: int, level: float, order=order, base=base, tuned=tuned):
            seen = [t for r in order[: j + 1] for t in r]
            return {"test": compare({t: base[t] for t in seen}, {t: tuned[t] for t in seen}, seed=rep, level=level)}

        decision, _ = run_looks(GateCriteria("test", alpha=ALPHA), tasks, [len(r) for r in order], compare_at)
        if decision.decision in counts:
            counts[decision.decision] += 1
    return counts[SHIP] / trials, counts[ROLLBACK] / trials


def simulated(quick: bool, trials: int = 2000) -> dict:
    from dpo_tui.domain.power import mde, sequential_power

    tasks = 60 if quick else 164  # the held-out suite of the runs above, the primary one
    ship, rollback = _aa_rates(40, trials)  # (40 tasks: run_looks' exact tests are the slow part)
    m = mde(tasks, SEEDS, alpha=ALPHA, trials=trials)
    q = sequential_power(tasks, SEEDS, m, alpha=ALPHA, looks=LOOKS, trials=trials)
    return {"sequential_aa_ship_rate": ship, "sequential_aa_rollback_rate": rollback, "aa_trials": trials,
            "aa_tasks": 40, "power_tasks": tasks, "power_effect": m, "fixed_power": q["fixed_power"],
            "sequential_power": q["sequential_power"], "sequential_expected_cost_share": q["expected_cost_share"],
            "power_trials": trials}


def measure_eval(quick: bool) -> dict:
    t0 = time.perf_counter()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="adaptive-eval-") as tmp:
        for null in (False, True):
            for design in ("fixed", "sequential"):
                r = one_run(Path(tmp), design, null=null, quick=quick)
                tag = "null" if null else "effect"
                out[f"eval_{design}_usd_{tag}"] = round(r["eval_usd"], 4)
                out[f"eval_{design}_samples_{tag}"] = r["samples"]
                out[f"eval_{design}_endpoint_minutes_{tag}"] = r["endpoint_minutes"]
                out[f"{design}_decision_{tag}"] = r["decision"]
                out[f"{design}_heldout_delta_{tag}"] = r["heldout_delta"]
                if design == "sequential":
                    out[f"sequential_looks_{tag}"] = r["looks"]
    out["eval_fixed_usd"], out["eval_sequential_usd"] = out["eval_fixed_usd_effect"], out["eval_sequential_usd_effect"]
    out["sequential_cost_ratio_effect"] = round(out["eval_sequential_usd_effect"] / out["eval_fixed_usd_effect"], 3)
    out["sequential_cost_ratio_null"] = round(out["eval_sequential_usd_null"] / out["eval_fixed_usd_null"], 3)
    out.update(simulated(quick))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 held-out tasks instead of 164")
    ap.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    ap.add_argument("--effect-lr", default=EFFECT_LR, help="the effect runs' training.learning_rate")
    args = ap.parse_args(argv)
    globals()["EFFECT_LR"] = args.effect_lr
    out = measure_eval(args.quick)
    if not args.json:
        for k, v in out.items():
            print(f"{k}: {v}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
