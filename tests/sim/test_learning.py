"""Learning, measured small and fast through the real SDK on QuixBugs tasks.

The full figures (every task, more seeds) come from tests/perf/bench_learning.py. Here: a
subset of quick tasks, the 72B profile against the 7B one, and a DPO job on pairs from
train tasks against the label-swapped control, judged on held-out tasks by DPO's
implicit-reward accuracy on held-out pairs (and held-out pass@1, printed).
"""

from __future__ import annotations


import pytest
from together import Together

from dpo_tui.sim import evaluate as ev
from dpo_tui.sim.policy import base_params
from dpo_tui.sim.server import SimServer
from tests.conftest import SHARED

QUIXBUGS = SHARED / "benchmarks" / "quixbugs"
# quick tasks (no hangs in the buggy program) with examples in their feedback
TRAIN = ("gcd", "knapsack", "pascal", "quicksort", "sieve", "flatten", "get_factors", "next_palindrome",
         "to_base", "kheapsort", "levenshtein", "lis")
HELD = ("find_in_sorted", "hanoi", "bucketsort", "subsequences", "next_permutation", "rpn_eval", "powerset",
        "max_sublist_sum")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tasks():
    if not QUIXBUGS.is_dir():
        pytest.fail(f"QuixBugs benchmark not found at {QUIXBUGS} (see /work/shared/benchmarks)")
    from dpo_tui.tasks.suites import load_suite

    by = {t.name: t for t in load_suite(f"quixbugs:{QUIXBUGS}")}
    return [by[n] for n in TRAIN], [by[n] for n in HELD]


@pytest.fixture(scope="module")
def env():
    with SimServer(seed=5, job_stage_seconds=0.01, provision_seconds=0.01) as sim:
        client = Together(api_key="sim-key", base_url=sim.base_url, project_id="proj_sim", max_retries=0)
        yield sim, client, ev.CachedRunner()


def test_72b_beats_7b(env, tasks):
    _sim, client, runner = env
    subset = tasks[0][:6] + tasks[1][:4]
    seeds = list(range(3))
    # 72B-Turbo is dedicated-only (the July 2026 catalogue): served on an endpoint of its own
    big_name, stop = ev.serve(client, "gen-72b", "projects/proj_pub/models/ml_qwen25_72b_turbo")
    try:
        big = ev.pass_at_1(client, big_name, subset, runner, seeds=seeds)
    finally:
        stop()
    small = ev.pass_at_1(client, "Qwen/Qwen2.5-7B-Instruct-Turbo", subset, runner, seeds=seeds)
    print(f"\npass@1 on {len(subset)} QuixBugs tasks x {len(seeds)} seeds: 72B {big:.3f}, 7B {small:.3f}")
    assert big > small


def test_dpo_on_good_pairs_helps_held_out_and_swapped_does_not(env, tasks, tmp_path):
    sim, client, runner = env
    train, held = tasks
    base_name, stop = ev.serve(client, "fast-base", "projects/proj_pub/models/ml_qwen25_7b")
    try:
        pairs = ev.build_pairs(client, base_name, train, runner, seeds=list(range(8)))
        held_pairs = ev.build_pairs(client, base_name, held, runner, seeds=list(range(8)))
    finally:
        stop()
    assert len(pairs) >= 4 and len(held_pairs) >= 4
    good, bad = tmp_path / "good.jsonl", tmp_path / "swapped.jsonl"
    good.write_text("".join(ev.json.dumps(p) + "\n" for p in pairs))
    bad.write_text("".join(ev.json.dumps(p) + "\n" for p in ev.swapped(pairs)))
    tuned_job = ev.fine_tune(client, good, suffix="fast-dpo")
    ctrl_job = ev.fine_tune(client, bad, suffix="fast-swapped")
    models = sim.state.store["models"]
    tuned, ctrl = models[tuned_job.api_model_object_id]["params"], models[ctrl_job.api_model_object_id]["params"]
    ref = base_params("7b")
    acc_t = ev.preference_accuracy(ref, tuned, held_pairs)
    acc_c = ev.preference_accuracy(ref, ctrl, held_pairs)
    print(f"\n{len(pairs)} train pairs, {len(held_pairs)} held-out pairs; held-out preference accuracy: "
          f"tuned {acc_t:.2f}, label-swapped control {acc_c:.2f}")
    assert acc_t > 0.6 and acc_c < 0.4
