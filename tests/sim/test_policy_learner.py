"""The repair policy (edits, no repeats, reflection, profiles) and the DPO learner, without HTTP."""

from __future__ import annotations

from dpo_tui.sim.dpo_format import validate_dpo
from dpo_tui.sim.learner import pair_delta, train_dpo
from dpo_tui.sim.mutations import candidates, normalize
from dpo_tui.sim.policy import FENCE_RE, base_params, options, parse_context
from dpo_tui.sim.respond import respond
from tests.sim.conftest import GCD

FAIL = "test_gcd FAILED\nRecursionError: maximum recursion depth exceeded\n  File \"gcd.py\", line 5, in gcd"


def _prompt(program=GCD, failure=FAIL):
    return [{"role": "user", "content": f"Fix the bug.\n```python\n{program}```\nFailing tests:\n{failure}"}]


def test_catalogue_edits_compile_and_differ():
    edits = candidates(GCD)
    kinds = {e.kind for e in edits}
    assert {"cmp", "swap", "const", "var"} <= kinds
    assert len({normalize(e.program) for e in edits}) == len(edits)
    assert normalize(GCD) not in {normalize(e.program) for e in edits}
    for e in edits:
        compile(e.program, "c", "exec")


def test_answer_is_one_edit_of_the_prompt_program():
    text = respond(base_params("72b"), "m", _prompt(), seed=1, temperature=0.7)
    prog = FENCE_RE.findall(text)[-1]
    assert normalize(prog) in {normalize(e.program) for e in candidates(GCD)}


def test_never_repeats_a_program_the_transcript_shows_failing():
    msgs = _prompt()
    seen = {normalize(GCD)}
    for turn in range(6):
        text = respond(base_params("7b"), "m", msgs, seed=turn, temperature=1.0)
        prog = FENCE_RE.findall(text)[-1]
        assert normalize(prog) not in seen
        seen.add(normalize(prog))
        msgs = msgs + [{"role": "assistant", "content": text}, {"role": "user", "content": "Still failing:\n" + FAIL}]


def test_temperature_zero_is_deterministic_and_seed_reproduces():
    p = base_params("72b")
    a = respond(p, "m", _prompt(), seed=None, temperature=0.0)
    assert a == respond(p, "m", _prompt(), seed=None, temperature=0.0)
    assert respond(p, "m", _prompt(), seed=3, temperature=1) == respond(p, "m", _prompt(), seed=3, temperature=1)


def test_reflection_gets_analysis_text():
    msgs = _prompt() + [{"role": "assistant", "content": "..."},
                        {"role": "user", "content": "Reflect: what went wrong in your last attempt?"}]
    text = respond(base_params("72b"), "m", msgs, seed=1, temperature=0.7)
    assert text.startswith("Reflection") and "```python" not in text and "rec" in text


def test_72b_puts_more_mass_on_the_traceback_line():
    ctx = parse_context(_prompt())
    opts = options(ctx)
    from dpo_tui.sim.policy import log_probs
    import math
    for profile, floor in (("72b", 0.5), ("7b", 0.0)):
        lp = log_probs(base_params(profile), opts)
        mass = sum(math.exp(x) for x, o in zip(lp, opts) if o.edit.line == 5)
        if profile == "72b":
            assert mass > floor
            big = mass
    assert big > sum(math.exp(x) for x, o in zip(log_probs(base_params("7b"), opts), opts) if o.edit.line == 5)


def _pair(chosen: str, rejected: str) -> dict:
    return {"input": {"messages": _prompt()},
            "preferred_output": [{"role": "assistant", "content": f"```python\n{chosen}```"}],
            "non_preferred_output": [{"role": "assistant", "content": f"```python\n{rejected}```"}]}


def test_dpo_moves_weights_toward_chosen_features_and_swap_reverses():
    edits = {e.kind: e for e in candidates(GCD)}
    good, bad = edits["swap"].program, edits["var"].program
    pairs = [_pair(good, bad)] * 16
    assert validate_dpo(("\n".join(__import__("json").dumps(p) for p in pairs)).encode()).valid
    d = pair_delta(pairs[0])
    assert d["k:swap"] == 1.0 and d["k:var"] == -1.0
    params = base_params("7b")
    tuned, rep = train_dpo(params, pairs, beta=0.1, epochs=3, learning_rate=1e-5, batch_size=8)
    assert rep.used == 16 and rep.steps == 6 and rep.losses[-1] < rep.losses[0]
    assert tuned["weights"]["k:swap"] > params["weights"]["k:swap"]
    assert tuned["weights"]["k:var"] < params["weights"]["k:var"]
    swapped, _ = train_dpo(params, [_pair(bad, good)] * 16, beta=0.1, epochs=3, learning_rate=1e-5, batch_size=8)
    assert swapped["weights"]["k:swap"] < params["weights"]["k:swap"]
    bigger, _ = train_dpo(params, pairs, beta=0.1, epochs=3, learning_rate=3e-5, batch_size=8)
    assert bigger["weights"]["k:swap"] > tuned["weights"]["k:swap"]  # the learning rate matters
