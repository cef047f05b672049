"""The simulator's calibrated rates and what DPO does, through the real SDK, with intervals.

    python tests/perf/bench_learning.py [--quick] [--json] [--quixbugs PATH] [--humanevalfix PATH]

1. Solve rate within max_iters = 4 (the product's repair loop, tests run in the sandbox) of
   the generator (72B-class) and the policy (7B-class) over all 40 QuixBugs tasks.
2. DPO: the base 7B, served on a dedicated endpoint, samples first attempts on the train
   tasks (QuixBugs' train split and half of HumanEvalFix); an attempt that passes more tests
   than the buggy program is paired (chosen) against one that does not (rejected). A tuned
   job trains on the pairs, a control on the same pairs label-swapped. Base, tuned and
   control are each served and judged on the held-out half of HumanEvalFix: first-attempt
   pass@1 over tasks x seeds, and the paired difference per task (tuned - base, control -
   base) with a 95% interval over tasks (normal approximation of the mean of per-task means).
3. A/A: the unchanged base weights under another name (the serverless 7B against the base's
   endpoint) answer every held-out request identically (common random numbers).

The last stdout line is one JSON object (rates as fractions): generator_solve_rate,
policy_solve_rate, base_pass1, tuned_pass1, control_pass1, tuned_minus_base_ci,
control_minus_base_ci, aa_identical, pairs, seconds. `--quick` uses fewer seeds (under 10
minutes on 2 cores); `--json` prints only that line.
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
from dpo_tui.sim.paired import paired_learning
from dpo_tui.sim.server import SimServer
from dpo_tui.tasks.suites import load_suite

SHARED = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
POLICY = "Qwen/Qwen2.5-7B-Instruct-Turbo"  # the 72B generator is dedicated-only: served on an endpoint
BASE_PATH = "projects/proj_pub/models/ml_qwen25_7b"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quixbugs", default=str(SHARED / "quixbugs"))
    ap.add_argument("--humanevalfix", default=str(SHARED / "humanevalfix"))
    ap.add_argument("--quick", action="store_true", help="fewer seeds: under 10 minutes on 2 cores")
    ap.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    rollout_seeds = [0] if args.quick else [0, 1]
    pair_seeds, eval_seeds = list(range(8 if args.quick else 16)), list(range(4 if args.quick else 8))
    qspec, hspec = f"quixbugs:{args.quixbugs}", f"humanevalfix:{args.humanevalfix}"
    quix, hef = load_suite(qspec), load_suite(hspec)
    q_train, _q_test = ev.split(quix)
    h_train, h_held = ev.split(hef)
    runner = ev.CachedRunner()
    t0 = time.monotonic()
    out: dict = {}
    with SimServer(seed=3, job_stage_seconds=0.01, provision_seconds=0.01, references=[qspec, hspec]) as sim:
        client = Together(api_key="sim-key", base_url=sim.base_url, project_id="proj_sim", max_retries=0)
        big, stop_big = ev.serve(client, "gen-72b", "projects/proj_pub/models/ml_qwen25_72b_turbo")  # dedicated-only
        try:
            for key, model in (("generator_solve_rate", big), ("policy_solve_rate", POLICY)):
                rate, _per = ev.solve_rate(client, model, quix, runner, seeds=rollout_seeds, max_iters=4)
                out[key] = round(rate, 3)
                say(f"{model}: solved {rate:.3f} of {len(quix)} QuixBugs tasks x {len(rollout_seeds)} rollouts "
                    f"(max_iters 4)")
        finally:
            stop_big()
        with tempfile.TemporaryDirectory() as tmp:
            res = paired_learning(client, q_train + h_train, h_held, runner, Path(tmp), pair_seeds=pair_seeds,
                                     eval_seeds=eval_seeds, aa_model=POLICY, base_path=BASE_PATH)
        for line in res.lines():
            say(line)
        out.update(res.summary())
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["test_runs"] = runner.runs
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
