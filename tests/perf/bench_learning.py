"""The full learning figures on QuixBugs, through the real SDK against the simulator.

    python tests/perf/bench_learning.py [--seeds N] [--quixbugs PATH]

Prints: solve rate within 3 iterations for the 72B and 7B profiles over all 40 tasks;
for DPO on pairs from the train split vs the label-swapped control, held-out pass@1 of base,
tuned and control (each served on a dedicated endpoint) and held-out preference accuracy.
Takes several minutes (every candidate program is tested in the sandbox once).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from together import Together

from dpo_tui.sim import evaluate as ev
from dpo_tui.sim.policy import base_params
from dpo_tui.sim.server import SimServer
from dpo_tui.tasks.suites import load_suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quixbugs", default=str(Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "quixbugs"),
                    help="QuixBugs checkout (default: ../shared/benchmarks/quixbugs beside the project)")
    ap.add_argument("--seeds", type=int, default=8, help="samples per held-out task for pass@1")
    ap.add_argument("--rollout-seeds", type=int, default=2)
    args = ap.parse_args(argv)
    tasks = load_suite(f"quixbugs:{args.quixbugs}")
    train, held = ev.split(tasks)
    runner = ev.CachedRunner()
    t0 = time.monotonic()
    out: dict = {}
    with SimServer(seed=3, job_stage_seconds=0.01, provision_seconds=0.01) as sim:
        client = Together(api_key="sim-key", base_url=sim.base_url, project_id="proj_sim", max_retries=0)
        big, stop_big = ev.serve(client, "gen-72b", "projects/proj_pub/models/ml_qwen25_72b_turbo")  # dedicated-only
        for label, model in (("72b", big), ("7b", "Qwen/Qwen2.5-7B-Instruct-Turbo")):
            rate, _per = ev.solve_rate(client, model, tasks, runner, seeds=list(range(args.rollout_seeds)))
            out[f"solve_rate_{label}"] = round(rate, 3)
            print(f"{model}: solved {rate:.3f} of {len(tasks)} tasks x {args.rollout_seeds} rollouts "
                  f"(max 3 iterations)", flush=True)
        stop_big()
        with tempfile.TemporaryDirectory() as tmp:
            res = ev.learning_experiment(client, train, held, runner, Path(tmp), pair_seeds=list(range(16)),
                                         eval_seeds=list(range(args.seeds)))
        models = sim.state.store["models"]
        jobs = {j["id"]: j for j in sim.state.store["jobs"].values()}
        tuned = models[jobs[res.jobs["tuned"]]["model_object_id"]]["params"]
        ctrl = models[jobs[res.jobs["control"]]["model_object_id"]]["params"]
        base_name, stop = ev.serve(client, "bench-held-pairs", "projects/proj_pub/models/ml_qwen25_7b")
        try:
            held_pairs = ev.build_pairs(client, base_name, held, runner, seeds=list(range(16)))
        finally:
            stop()
        ref = base_params("7b")
        for line in res.lines():
            print(line)
        acc_t, acc_c = ev.preference_accuracy(ref, tuned, held_pairs), ev.preference_accuracy(ref, ctrl, held_pairs)
        print(f"held-out preference accuracy over {len(held_pairs)} pairs: tuned {acc_t:.3f}, control {acc_c:.3f}")
        out.update(pairs=res.pairs, held_out_pass1={"base": res.base, "tuned": res.tuned, "control": res.control},
                   held_out_pref_acc={"tuned": acc_t, "control": acc_c}, test_runs=runner.runs,
                   seconds=round(time.monotonic() - t0, 1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
