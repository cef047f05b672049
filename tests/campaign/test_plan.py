from __future__ import annotations

import re

import pytest

from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.errors import InputError

DEMO = demo_plan_path().read_text()


def write(tmp_path, text: str):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return p


def test_the_demo_plan_is_valid_and_hash_is_stable():
    a, b = load_plan(demo_plan_path()), load_plan(demo_plan_path())
    assert a.hash() == b.hash() and a.training.dpo_beta == 0.1 and a.budget.cap_usd > 0


@pytest.mark.parametrize("edit,needle", [
    (("max_iters = 4", "max_iter = 4"), "rollouts.max_iter: unknown field (allowed: allocation, concurrency, endpoint_tokens_per_s, floor, max_iters"),
    (("max_iters = 4", 'max_iters = "four"'), "rollouts.max_iters: Input should be a valid integer"),
    (("max_iters = 4", "max_iters = 0"), "rollouts.max_iters: Input should be greater than or equal to 1 (got 0)"),
    (("cap_usd = 5.00", "cap_usd = 0"), "budget.cap_usd: Input should be greater than 0 (got 0)"),
    (('generator = "Qwen/Qwen2.5-72B-Instruct-Turbo"', 'generator = "Qwen/Qwen9-1T"'),
     "models.generator: unknown model 'Qwen/Qwen9-1T' (known: "),
    (('train_test = ["fixtures"]', 'train_test = ["quixbugs:/no/such/dir"]'),
     "suites.train_test[0]: suite quixbugs:/no/such/dir: /no/such/dir does not exist"),
    (('train_test = ["fixtures"]', 'train_test = ["zip:/x"]'), "must be fixtures or KIND:PATH"),
    (('kind = "simulator"', 'kind = "openai"'), "backend.kind: Input should be 'simulator' or 'together'"),
    (("dpo_beta = 0.1\n", ""), "training.dpo_beta: required field is missing"),
    (("[campaign]", "[campaign]\napi_key = 'tgp_v1_secret'"), "campaign.api_key: API keys never go in a plan file"),
    (("k = 3", "k = 5"), "eval: Value error, k=5 needs at least 5 seeds"),
    (("k = 3", 'k = 3\nconcurrency = "fast"'), 'eval.concurrency: Value error, concurrency = \'fast\': give 1..512 '
     'rollouts in flight, or "auto"'),
    (("k = 3", "k = 3\nconcurrency = 0"), "eval.concurrency: Value error, concurrency = 0: give 1..512"),
    (("sim_seed = 7", "sim_seed = 7\nsim_replica_slots = 0"),
     "backend.sim_replica_slots: Input should be greater than or equal to 1 (got 0)"),
    (("k = 3", 'k = 3\ndesign = "adaptive"'), "eval.design: Input should be 'fixed' or 'sequential'"),
    (("k = 3", "k = 3\nlooks = 0"), "eval.looks: Input should be greater than or equal to 1 (got 0)"),
    (("random_seed = 42", "random_seed = 42\nrpo_alpha = -0.5"),
     "training.rpo_alpha: Input should be greater than or equal to 0 (got -0.5)"),
    (("random_seed = 42", "random_seed = 42\nsimpo_gamma = \"big\""), "training.simpo_gamma: Input should be a valid number"),
    (("random_seed = 42", "random_seed = 42\ndpo_normalize_logratios_by_length = 1"),
     "training.dpo_normalize_logratios_by_length: Input should be a valid boolean"),
    (("random_seed = 42", "random_seed = 42\nn_evals = 3"), "training.n_evals: Value error, n_evals = 3 needs a validation file"),
    (("random_seed = 42", "random_seed = 42\nvalidation_share = 0.2"),
     "training.n_evals: Value error, validation_share = 0.2 holds pairs back for nothing"),
    (("random_seed = 42", "random_seed = 42\nvalidation_share = 0.9\nn_evals = 2"),
     "training.validation_share: Input should be less than or equal to 0.5 (got 0.9)"),
    (("random_seed = 42", "random_seed = 42\nn_checkpoints = 0"),
     "training.n_checkpoints: Input should be greater than or equal to 1 (got 0)"),
    (("random_seed = 42", "random_seed = 42\nsimpo_gama = 0.5"), "training.simpo_gama: unknown field (allowed: "),
])
def test_bad_plans_name_the_field(tmp_path, edit, needle):
    old, new = edit
    assert old in DEMO
    with pytest.raises(InputError) as exc:
        load_plan(write(tmp_path, DEMO.replace(old, new, 1)))
    line = exc.value.message
    assert "\n" not in line and str(tmp_path / "plan.toml") in line
    assert needle in line, line
    assert "secret" not in line.split(":", 2)[-1] or "api_key" in line


def test_dpo_knobs_default_and_set(tmp_path):
    t = load_plan(demo_plan_path()).training
    assert (t.rpo_alpha, t.simpo_gamma, t.dpo_normalize_logratios_by_length, t.validation_share, t.n_evals,
            t.n_checkpoints) == (0.0, 0.0, False, 0.0, 0, 1)
    text = DEMO.replace("random_seed = 42", "random_seed = 42\nrpo_alpha = 0.5\nsimpo_gamma = 0.3\n"
                        "validation_share = 0.25\nn_evals = 4\nn_checkpoints = 2")
    t = load_plan(write(tmp_path, text)).training
    assert (t.rpo_alpha, t.simpo_gamma, t.validation_share, t.n_evals, t.n_checkpoints) == (0.5, 0.3, 0.25, 4, 2)


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=re.escape("not valid TOML")):
        load_plan(write(tmp_path, "[campaign\nname="))
    with pytest.raises(InputError, match="no such plan file"):
        load_plan(tmp_path / "nope.toml")


def test_relative_suite_paths_resolve_against_the_plan(tmp_path):
    (tmp_path / "mine.jsonl").write_text("")
    plan = load_plan(write(tmp_path, DEMO.replace('train_test = ["fixtures"]', 'train_test = ["jsonl:mine.jsonl"]')))
    assert plan.suites.train_test == [f"jsonl:{tmp_path / 'mine.jsonl'}"]


def test_estimate_json_contract_and_bad_plan_exit_2(cli, tmp_path):
    import json

    code, out, _ = cli("estimate", "--plan", demo_plan_path(), "--json")
    est = json.loads(out)
    assert code == 0 and set(est) >= {"total_usd", "low_usd", "high_usd", "calls", "by_stage"}
    assert set(est["by_stage"]) == {"rollouts", "training", "eval", "endpoint"}
    assert all(set(s) >= {"calls", "tokens", "usd"} for s in est["by_stage"].values())
    assert est["low_usd"] <= est["total_usd"] <= est["high_usd"] and est["backend"] == "simulated"
    bad = write(tmp_path, DEMO.replace("cap_usd = 5.00", "cap_usd = 0"))
    code, out, err = cli("estimate", "--plan", bad)
    assert code == 2 and out == "" and err.count("\n") == 1 and "budget.cap_usd" in err


def test_iterations_before_the_pilot_follow_max_iters_and_the_reflection_rule(tmp_path):
    """With no avg_iters guess, a rollout runs 1 + (1-q) + ... + (1-q)^(max_iters-1) iterations
    (q = solve_rate_per_iter, 0.2 by default) and makes a reflection after each failed one but
    the last; a plan's own guesses still win, and reflections off make none."""
    from dpo_tui.campaign.budget import iteration_guesses

    def guesses(old: str = "", new: str = "") -> tuple[float, float]:
        return tuple(round(x, 3) for x in iteration_guesses(load_plan(write(tmp_path, DEMO.replace(old, new)))))

    assert guesses() == (2.952, 1.952)  # max_iters 4
    assert guesses("max_iters = 4", "max_iters = 10") == (4.463, 3.463)  # longer conversations cost more
    assert guesses("[budget]", "[budget]\nsolve_rate_per_iter = 0.5") == (1.875, 0.875)
    assert guesses("reflections = true", "reflections = false") == (2.952, 0.0)
    assert guesses("[budget]", "[budget]\navg_iters = 2.5\navg_reflections = 1.0") == (2.5, 1.0)
    assert guesses("[budget]", "[budget]\navg_iters = 3.0") == (3.0, 2.0)
