"""What DPO does to the simulated 7B, judged by paired statistics over tasks and training seeds.

No HTTP and no test runs, so it takes seconds: pairs are sampled from the base 7B's first
attempts on the train half of HumanEvalFix at temperature 1 (an attempt that is the task's
reference fix is chosen, one that is not is rejected: a stand-in for running the tests,
which tests/perf/bench_learning.py does through the real SDK), and each model is judged on
the held-out half by its exact chance of answering the reference fix first (policy.
fix_probability), so the only noise left is which pairs a training seed drew. For every
held-out task the difference tuned - base is averaged over the training seeds; the 95%
interval is over tasks.
"""

from __future__ import annotations

import statistics
import zlib

import pytest

from dpo_tui.sim import evaluate as ev
from dpo_tui.sim import policy
from dpo_tui.sim.learner import LR_SCALE, train_dpo
from dpo_tui.sim.paired import paired_ci
from dpo_tui.sim.references import References
from dpo_tui.sim.respond import respond
from tests.conftest import SHARED

HEF = SHARED / "benchmarks" / "humanevalfix"
TRAIN_SEEDS = (0, 1, 2, 3)
SAMPLES = 8


def _messages(task) -> list[dict]:
    return [{"role": "system", "content": "You repair Python programs."},
            {"role": "user", "content": f"{task.description}\n\n```python\n{task.buggy_program}```\n\n"
                                        "Failing tests:\nAssertionError\n"}]


@pytest.fixture(scope="module")
def world():
    if not HEF.is_dir():
        pytest.fail(f"HumanEvalFix not found at {HEF} (see /work/shared/benchmarks)")
    from dpo_tui.tasks.suites import load_suite

    spec = f"humanevalfix:{HEF}"
    refs = References([spec])
    train, held = ev.split(load_suite(spec))
    prep = {}
    for t in train + held:
        msgs = _messages(t)
        ctx = policy.parse_context(msgs)
        prep[t.id] = (msgs, ctx, policy.options(ctx, refs))
    return refs, train, held, prep


def _pairs(world, seed: int, label: str = "true") -> list[dict]:
    refs, train, _held, prep = world
    params = policy.base_params("7b")
    lines = []
    for t in train:
        msgs, ctx, opts = prep[t.id]
        p = policy.insight(params, ctx, refs)
        good, bad = [], []
        for s in range(SAMPLES):
            rs = 1000 * seed + s
            sees = policy.insight_draw(ctx, rs, 1.0, 0) < p
            o = policy.choose(params, opts, policy.request_rng(msgs, rs, 1.0, 0), 1.0, sees)
            (good if o.is_fix else bad).append(o.edit.program)
        for i in range(min(2, len(good), len(bad))):
            chosen, rejected = good[i], bad[i]
            if label == "swapped" or (label == "random" and (zlib.crc32(f"{t.id}:{seed}:{i}".encode()) & 1)):
                chosen, rejected = rejected, chosen
            lines.append({"input": {"messages": msgs},
                          "preferred_output": [{"role": "assistant", "content": f"```python\n{chosen}```"}],
                          "non_preferred_output": [{"role": "assistant", "content": f"```python\n{rejected}```"}]})
    return lines


def _held_pass(world, params) -> dict[str, float]:
    refs, _train, held, prep = world
    return {t.id: policy.fix_probability(params, prep[t.id][2], policy.insight(params, prep[t.id][1], refs), 0.7)
            for t in held}


def _train(world, pairs, **kw):
    return train_dpo(policy.base_params("7b"), pairs, beta=0.1, epochs=3, learning_rate=1e-5, batch_size=8,
                     refs=world[0], **kw)


@pytest.fixture(scope="module")
def arms(world):
    base = _held_pass(world, policy.base_params("7b"))
    out = {}
    for label in ("true", "swapped", "random"):
        per_seed = []
        for seed in TRAIN_SEEDS:
            tuned, _rep = _train(world, _pairs(world, seed, label), seed=seed)
            per_seed.append(_held_pass(world, tuned))
        out[label] = [statistics.fmean(s[k] for s in per_seed) - base[k] for k in sorted(base)]
    return base, out


def test_the_7b_first_attempt_rate_on_humanevalfix_is_in_the_calibrated_band(arms):
    base, _out = arms
    rate = statistics.fmean(base.values())
    print(f"\n[simulated] 7B first-attempt pass@1 (reference fix) on {len(base)} held-out HumanEvalFix tasks: {rate:.3f}")
    assert 0.25 <= rate <= 0.60


def test_dpo_on_good_pairs_beats_base_with_an_interval_above_zero(arms):
    _base, out = arms
    mean, lo, hi = paired_ci(out["true"])
    print(f"\ntuned - base over {len(out['true'])} held-out tasks x {len(TRAIN_SEEDS)} training seeds: "
          f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    assert lo > 0 and mean < 0.2  # a few points to ~15, as the literature reports


def test_label_swapped_pairs_lower_held_out_pass1_and_random_labels_do_nothing_on_average(arms):
    _base, out = arms
    good, _lo, _hi = paired_ci(out["true"])
    smean, slo, shi = paired_ci(out["swapped"])
    rmean, rlo, rhi = paired_ci(out["random"])
    print(f"\nswapped - base {smean:+.3f} [{slo:+.3f}, {shi:+.3f}]; random labels - base {rmean:+.3f} "
          f"[{rlo:+.3f}, {rhi:+.3f}]")
    assert shi < 0
    assert abs(rmean) < good / 3


def test_the_gain_grows_with_pairs_and_saturates(world):
    pairs = _pairs(world, 0)
    steps = [_train(world, pairs * n)[0]["weights"]["fix"] - policy.base_params("7b")["weights"]["fix"]
             for n in (1, 4, 16)]
    assert 0 < steps[0] < steps[1] < steps[2]
    assert steps[2] - steps[1] < 4 * (steps[1] - steps[0])  # 4x the pairs moves it far less than 4x more


def test_the_first_step_is_beta_times_sigmoid_of_minus_beta_margin(world):
    pairs = _pairs(world, 0)[:8]
    fix = policy.base_params("7b")["weights"]["fix"]
    s = policy.base_params("7b")["sharpness"] / 0.7
    for beta in (0.1, 0.5):
        tuned, _rep = train_dpo(policy.base_params("7b"), pairs, beta=beta, epochs=1, learning_rate=1e-5,
                                batch_size=8, refs=world[0])
        # at the reference the margin is 0, so sigmoid(-margin) = 1/2; every pair's chosen is the fix
        assert tuned["weights"]["fix"] - fix == pytest.approx(1e-5 * LR_SCALE * beta * s * 0.5)


def test_unchanged_weights_under_another_name_answer_identically_and_tuned_differs_only_in_places(world):
    refs, _train_tasks, held, prep = world
    base = policy.base_params("7b")
    tuned, _rep = _train(world, _pairs(world, 0))
    same = differ = 0
    for t in held[:30]:
        msgs = prep[t.id][0]
        for seed in range(3):
            a = respond(base, "Qwen/Qwen2.5-7B-Instruct-Turbo", msgs, seed=seed, temperature=0.7, refs=refs)
            b = respond(dict(base, fingerprint="other"), "acct/other-name", msgs, seed=seed, temperature=0.7,
                        refs=refs)
            assert a == b
            c = respond(tuned, "acct/tuned", msgs, seed=seed, temperature=0.7, refs=refs)
            same += a == c
            differ += a != c
    assert differ > 0 and same > differ  # paired: the same draws, a different answer where the ranking moved
