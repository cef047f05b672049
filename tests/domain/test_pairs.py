from __future__ import annotations

import json

from dpo_tui.domain.export import (
    check_together_jsonl, jsonl_bytes, program_reply, together_line, together_problem, trl_line,
)
from dpo_tui.domain.pairs import PairFilters, RolloutOutcome, build_pairs, filter_pairs

FIXED = "def f(x):\n    return x + 1\n"


def ro(rid, task, program, passed_tests, total=4, iters=1):
    return RolloutOutcome(rid, task, program, passed_tests, total, passed_tests == total, iters)


def test_best_rollout_pairs_against_each_other_one():
    rs = [ro("r1", "t", "def f(x):\n    return x - 1\n", 1), ro("r2", "t", FIXED, 4, iters=3),
          ro("r3", "t", FIXED + "# other\n", 4, iters=2), ro("r4", "t", "def f(x):\n    return x\n", 2)]
    pairs = build_pairs(rs)
    assert {p.chosen.rollout_id for p in pairs} == {"r3"}  # passes, fewer iterations than r2
    assert sorted(p.rejected.rollout_id for p in pairs) == ["r1", "r2", "r4"]


def test_funnel_counts_each_filter_in_order():
    rs = [ro("a1", "t1", FIXED, 4), ro("a2", "t1", FIXED + "  # same code\n", 3),  # dedupe (same program)
          ro("a3", "t1", "def f(x):\n    return x * 1\n", 4 - 1),
          ro("a4", "t1", "def f(x):\n    return x * 2\n", 3),
          ro("b1", "t2", FIXED, 4), ro("b2", "t2", "def f(x):\n    return 0\n", 0),
          ro("c1", "t3", FIXED, 4), ro("c2", "t3", "def f(x):\n    return 1\n", 0),  # t3 is a test task
          ro("d1", "t4", FIXED, 4), ro("d2", "t4", "def f(x):\n    return 2\n", 0),
          ro("d3", "t4", "def f(x):\n    return 3\n", 1), ro("d4", "t4", "def f(x):\n    return 4\n", 0)]
    pairs = build_pairs(rs)
    tokens = {p.pair_id: 100 for p in pairs}
    tokens[next(p.pair_id for p in pairs if p.rejected.rollout_id == "b2")] = 10_000  # too long
    res = filter_pairs(pairs, PairFilters(min_margin=0.3, max_seq_length=4096, per_task_cap=2),
                       pair_tokens=lambda p: tokens[p.pair_id], test_tasks={"t3"},
                       decisions={next(p.pair_id for p in pairs if p.rejected.rollout_id == "d2"): "reject"})
    assert list(res.funnel) == ["built", "dedupe", "low_margin", "token_budget", "leakage", "per_task_cap", "manual"]
    # t1: a1 > a2 (same program), a1 > a3 and a1 > a4 (margin 0.25 < 0.3); t2: too long; t3: test task;
    # t4: three pairs, the cap keeps the two of margin 1.0 (d2, d4), the operator rejects d2.
    assert res.funnel == {"built": 8, "dedupe": 7, "low_margin": 5, "token_budget": 4, "leakage": 3,
                          "per_task_cap": 2, "manual": 1}
    assert [p.rejected.rollout_id for p in res.kept] == ["d4"]
    assert all(p.task_id != "t3" for p in res.kept)
    assert all(res.dropped[p.pair_id] for p in pairs if p not in res.kept)


def test_operator_accept_overrides_soft_filters_only():
    rs = [ro("a1", "t", FIXED, 4), ro("a2", "t", "def f(x):\n    return x + 2\n", 3)]
    (pair,) = build_pairs(rs)
    res = filter_pairs([pair], PairFilters(min_margin=0.5), pair_tokens=lambda p: 10, test_tasks=set(),
                       decisions={pair.pair_id: "accept"})
    assert res.kept == [pair]
    res = filter_pairs([pair], PairFilters(min_margin=0.5), pair_tokens=lambda p: 10, test_tasks={"t"},
                       decisions={pair.pair_id: "accept"})
    assert res.kept == [] and res.dropped[pair.pair_id] == "leakage"


def test_export_lines_pass_togethers_rules_and_bad_ones_name_the_rule():
    prompt = [{"role": "system", "content": "You repair programs."}, {"role": "user", "content": "fix f"}]
    line = together_line(prompt, program_reply(FIXED), program_reply("def f(x):\n    return x\n"))
    assert together_problem(line) is None
    assert set(trl_line(prompt, "a", "b")) == {"prompt", "chosen", "rejected"}
    data = jsonl_bytes([line, line])
    assert check_together_jsonl(data).ok and check_together_jsonl(data).lines == 2
    bad_cases = {
        "rule: extra_column": {**line, "lineage": "x"},
        "rule: last_message_not_assistant":
            {**line, "input": {"messages": prompt + [{"role": "assistant", "content": "hi"}]}},
        "rule: preferred_output_one_message": {**line, "preferred_output": []},
        "rule: non_preferred_output_role": {**line, "non_preferred_output": [{"role": "user", "content": "x"}]},
    }
    for rule, bad in bad_cases.items():
        check = check_together_jsonl(jsonl_bytes([line, bad]))
        assert not check.ok and check.problems[0][0] == 2 and rule in check.problems[0][1], check.problems
    assert "not UTF-8" in check_together_jsonl(b"\xff\xfe").problems[0][1]
    assert json.loads(data.splitlines()[0]) == line
