"""The repair agent's core: prompts, extraction, the step logic and the driver (real runner)."""

from __future__ import annotations

import pytest

from dpo_tui.tasks import agent
from dpo_tui.tasks.agent import (PromptTemplates, RolloutConfig, extract_program, fenced, initial_messages,
                                 on_reply, on_report, reflection_message, run_rollout, start)
from dpo_tui.tasks.sandbox import Limits, bwrap_available, run_tests
from dpo_tui.tasks.suites import load_suite

LIMITS = Limits(test_cpu_seconds=0.5)


@pytest.fixture(scope="module")
def task():
    assert bwrap_available(), "bubblewrap (bwrap) must be installed"
    return next(t for t in load_suite("fixtures") if t.id == "fixtures/binary_search")


@pytest.fixture
def runner():
    calls = []

    def run(task, program):
        calls.append(program)
        return run_tests(task, program, limits=LIMITS)

    run.calls = calls
    return run


def reply(program: str, prose: str = "Here is the fix:") -> str:
    return f"{prose}\n\n```python\n{program}```\n"


def test_first_prompt_has_description_program_and_failing_tests(task, runner):
    report = runner(task, task.buggy_program)
    system, user = initial_messages(task, report)
    assert system["role"] == "system" and "fixed program" in system["content"]
    text = user["content"]
    assert user["role"] == "user" and task.description in text
    assert f"```python\n{task.buggy_program.rstrip()}\n```" in text
    head, _, tail = text.partition("Failing tests:\n```\n")
    assert tail and "FAIL test_last_and_single_1" in tail and "4 of 6 tests passed" in tail
    custom = initial_messages(task, report, PromptTemplates(system="SYS", first="{name}|{description}"))
    assert custom == [{"role": "system", "content": "SYS"},
                      {"role": "user", "content": f"binary_search|{task.description}"}]


def test_fenced_block_cannot_be_closed_by_its_content():
    assert fenced("x = 1", "python") == "```python\nx = 1\n```"
    block = fenced('s = """\n```\n"""')
    assert block.startswith("````\n") and block.endswith("\n````")


@pytest.mark.parametrize("text, program, problem", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n", ""),
    ("a\n```python\ndef f(): return 1\n```\nb\n```python\ndef f(): return 2\n```\n", "def f(): return 2\n",
     "2 python code blocks; used the last one"),
    ("```\ndef f(): return 3\n```", "def f(): return 3\n", "used the last untagged code block"),
    ("Sure!\n```python\ndef f(): return 4\n", "def f(): return 4\n", "not closed"),
    ("def f():\n    return 5\n", "def f():\n    return 5\n", "the whole reply is a program"),
    ("I think the bug is on line 3.", None, "no ```python code block"),
    ("```js\nlet x = 1\n```", None, "found js only"),
    ("", None, "empty"),
    ("```python\n" + "x = 1\n" * 60_000 + "```", None, "too long"),
    ("\x00\x01\x02" * 100, None, "binary"),
    ("```python\n\n```", None, "empty"),
])
def test_extract_program(text, program, problem):
    result = extract_program(text)
    assert result.program == program
    assert problem in result.problem if problem else result.problem == ""


def test_rollout_fixes_on_the_second_iteration(task, runner):
    replies = iter([reply(task.buggy_program.replace("hi = mid - 1", "hi = mid")), reply(task.fixed_program)])
    seen = []

    def chat(messages):
        seen.append(messages)
        return next(replies)

    result = run_rollout(task, chat, max_iters=3, runner=runner)
    assert result.passed and result.iterations == 2 and result.score == 1.0
    assert result.final_program == task.fixed_program and result.report.passed
    assert [m["role"] for m in result.transcript] == ["system", "user", "assistant", "user", "assistant"]
    feedback = result.transcript[3]["content"]
    assert "Failing tests:\n```" in feedback and "FAIL" in feedback
    assert len(runner.calls) == 3  # the buggy program once, then each candidate
    assert [len(m) for m in seen] == [2, 4]


def test_rollout_with_reflection(task, runner):
    replies = iter([reply(task.buggy_program), "The loop stops one step early: use lo <= hi.",
                    reply(task.fixed_program)])
    result = run_rollout(task, lambda m: next(replies), max_iters=3, reflections=True, runner=runner)
    assert result.passed and result.iterations == 2 and result.reflections == 1
    roles = [m["role"] for m in result.transcript]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    ask = result.transcript[3]["content"]
    assert "Reflect" in ask and "what went wrong" in ask and "Failing tests:\n```" in ask
    assert result.transcript[4]["content"].startswith("The loop stops")
    assert "using your reflection" in result.transcript[5]["content"]


def test_rollout_stops_at_max_iters_with_partial_score(task, runner):
    result = run_rollout(task, lambda m: reply(task.buggy_program), max_iters=2, runner=runner)
    assert not result.passed and result.iterations == 2
    assert result.score == pytest.approx(4 / 6) and result.report.tests_passed == 4


def test_reply_without_program_is_not_tested_and_asked_again(task, runner):
    replies = iter(["I am not sure.", reply(task.fixed_program)])
    result = run_rollout(task, lambda m: next(replies), max_iters=3, runner=runner)
    assert result.passed and result.iterations == 2 and len(runner.calls) == 2
    assert "could not use your reply: no ```python code block" in result.transcript[3]["content"]
    assert result.attempts[0].program is None and result.attempts[0].report is None


def test_no_program_ever_scores_zero(task, runner):
    result = run_rollout(task, lambda m: "no idea", max_iters=2, runner=runner)
    assert result.final_program is None and result.report is None and result.score == 0 and not result.passed


def test_steps_are_pure_and_replayable(task, runner):
    """The engine rebuilds a rollout from its logged replies and reports: same state."""
    config = RolloutConfig(max_iters=3, reflections=True)
    buggy = runner(task, task.buggy_program)
    bad = run_tests(task, task.buggy_program, limits=LIMITS)
    script = [("reply", reply(task.buggy_program)), ("report", bad), ("reply", "Off by one."),
              ("reply", reply(task.fixed_program))]

    def play():
        state = start(task, buggy, config)
        for kind, value in script:
            state = on_reply(state, value, config) if kind == "reply" else on_report(state, value, config)
        return state

    one, two = play(), play()
    assert one == two and one.phase == "testing" and one.pending == task.fixed_program
    assert agent.call_kind(one) is None and one.iteration == 2 and one.reflections == 1
    with pytest.raises(ValueError):
        on_reply(one, "x", config)


def test_reflection_message_format(task, runner):
    report = runner(task, task.buggy_program)
    msg = reflection_message(report, 1)
    assert msg["role"] == "user" and "Reflect" in msg["content"] and "what went wrong" in msg["content"]
    assert report.output in msg["content"]
