"""The repair agent's core: prompts, program extraction, the step logic and a simple driver.

Pure: no network, no event store, no clock. A rollout is a sequence of chat calls:

    [system, first user message]                  -> candidate reply -> tests
    on failure, with reflections on:  + user(feedback + "Reflect: ...")  -> reflection reply
                                      + user("Now write the whole fixed program ...") -> candidate
    on failure, without reflections:  + user(feedback + "write it again") -> candidate
    ... until all tests pass or `max_iters` candidate calls were made.

The step functions (`start`, `on_reply`, `on_report`) take and return an immutable
`RolloutState`, so the resumable async engine can rebuild any point of a rollout from its
logged calls and test reports and continue from there. `run_rollout` is the synchronous
driver used by tests and the simulator's learning measurement.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dpo_tui.tasks.model import Task
from dpo_tui.tasks.sandbox import TestReport, run_tests

DEFAULT_SYSTEM = (
    "You are an expert Python programmer who repairs buggy programs. You are given a program "
    "with a bug and the output of its failing tests. Reply with the whole fixed program in a "
    "single ```python code block. Keep the function names and signatures unchanged.")
DEFAULT_FIRST = (
    "{description}\n\nThis program has a bug:\n\n{program_block}\n\nFailing tests:\n{feedback_block}\n\n"
    "Reply with the whole fixed program in one ```python code block.")
DEFAULT_FEEDBACK = (
    "Your program still fails some tests.\n\nFailing tests:\n{feedback_block}\n\n"
    "Reply with the whole fixed program in one ```python code block.")
DEFAULT_NO_PROGRAM = (
    "I could not use your reply: {problem}.\n\n"
    "Reply with the whole fixed program in one ```python code block.")
DEFAULT_REFLECTION = (
    "Your program still fails some tests.\n\nFailing tests:\n{feedback_block}\n\n"
    "Reflect: what went wrong in your last program, and why did these tests fail? Explain the "
    "mistake and how to fix it in a few sentences. Do not write the program yet.")
DEFAULT_AFTER_REFLECTION = (
    "Now, using your reflection, reply with the whole fixed program in one ```python code block.")

MAX_REPLY_CHARS = 200_000
MAX_PROGRAM_CHARS = 50_000


@dataclass(frozen=True)
class PromptTemplates:
    """All texts a rollout sends; `str.format` fields as in the defaults."""

    system: str = DEFAULT_SYSTEM
    first: str = DEFAULT_FIRST            # {description} {program_block} {feedback_block} {name}
    feedback: str = DEFAULT_FEEDBACK      # {feedback_block} {iteration}
    no_program: str = DEFAULT_NO_PROGRAM  # {problem}
    reflection: str = DEFAULT_REFLECTION  # {feedback_block} {iteration}
    after_reflection: str = DEFAULT_AFTER_REFLECTION


@dataclass(frozen=True)
class RolloutConfig:
    max_iters: int = 3
    reflections: bool = False
    templates: PromptTemplates = field(default_factory=PromptTemplates)

    def __post_init__(self) -> None:
        if self.max_iters < 1:
            raise ValueError("max_iters must be at least 1")


# ------------------------------------------------------------------ prompts
def fenced(text: str, lang: str = "") -> str:
    """A fenced block that `text` cannot close early (a longer fence when it holds ```)."""
    runs = [len(m) for m in re.findall(r"`{3,}", text)]
    fence = "`" * max([3] + [n + 1 for n in runs])
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def initial_messages(task: Task, buggy_report: TestReport, templates: PromptTemplates | None = None) -> list[dict]:
    """System prompt and the first user message: description, buggy program, failing tests."""
    t = templates or PromptTemplates()
    user = t.first.format(description=task.description.strip(), name=task.name,
                          program_block=fenced(task.buggy_program, "python"),
                          feedback_block=fenced(buggy_report.output))
    return [{"role": "system", "content": t.system}, {"role": "user", "content": user}]


def feedback_message(report: TestReport, iteration: int, templates: PromptTemplates | None = None) -> dict:
    t = templates or PromptTemplates()
    return {"role": "user", "content": t.feedback.format(feedback_block=fenced(report.output), iteration=iteration)}


def reflection_message(report: TestReport, iteration: int, templates: PromptTemplates | None = None) -> dict:
    t = templates or PromptTemplates()
    return {"role": "user", "content": t.reflection.format(feedback_block=fenced(report.output), iteration=iteration)}


# ------------------------------------------------------------------ extraction
@dataclass(frozen=True)
class ExtractResult:
    program: str | None
    problem: str = ""     # empty when a single python block was found
    blocks: int = 0


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,})[ \t]*(python3?|py)?[ \t]*\n(.*)\Z", re.M | re.S | re.I)


def _looks_binary(text: str) -> bool:
    sample = text[:10_000]
    bad = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\n\r\t") or ch == "\ufffd")
    return "\x00" in sample or bad > len(sample) // 100 + 2


def extract_program(reply: str | None) -> ExtractResult:
    """The program from a reply: the last ```python block (say so when there were several),
    else the last untagged block, else an unclosed block, else the whole reply if it is code."""
    if not reply or not reply.strip():
        return ExtractResult(None, "the reply was empty")
    # a lone surrogate (no JSON body carries one, but a str may) cannot reach the sandbox or the log
    reply = reply.encode("utf-8", "replace").decode("utf-8")
    if len(reply) > MAX_REPLY_CHARS:
        return ExtractResult(None, f"the reply was too long ({len(reply)} characters)")
    if _looks_binary(reply):
        return ExtractResult(None, "the reply contained binary data, not text")
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(reply)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    untagged = [body for lang, body in blocks if not lang]
    if python:
        problem = f"{len(python)} python code blocks; used the last one" if len(python) > 1 else ""
        return _checked(python[-1], problem, len(blocks))
    if untagged:
        return _checked(untagged[-1], "no ```python block; used the last untagged code block", len(blocks))
    if blocks:
        return ExtractResult(None, f"no python code block (found {blocks[-1][0]} only)", len(blocks))
    unclosed = _OPEN_FENCE.search(reply)
    if unclosed:
        return _checked(unclosed.group(3), "the code block was not closed; used the rest of the reply", 1)
    if _is_code(reply):
        return _checked(reply, "no code block; the whole reply is a program, used it", 0)
    return ExtractResult(None, "no ```python code block in the reply")


def _checked(program: str, problem: str, blocks: int) -> ExtractResult:
    if len(program) > MAX_PROGRAM_CHARS:
        return ExtractResult(None, f"the program was too long ({len(program)} characters)", blocks)
    if not program.strip():
        return ExtractResult(None, "the code block was empty", blocks)
    return ExtractResult(program.rstrip() + "\n", problem, blocks)


def _is_code(text: str) -> bool:
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in body)


# ------------------------------------------------------------------ the step logic
@dataclass(frozen=True)
class Attempt:
    iteration: int
    reply: str
    program: str | None
    problem: str
    report: TestReport | None


@dataclass(frozen=True)
class RolloutState:
    messages: tuple[dict, ...]
    phase: str = "candidate"          # candidate | reflection | testing | done
    iteration: int = 0                # candidate calls made
    reflections: int = 0
    attempts: tuple[Attempt, ...] = ()
    pending: str | None = None        # the program waiting for its test run (phase "testing")

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def final(self) -> Attempt | None:
        """The last attempt that produced a tested program."""
        return next((a for a in reversed(self.attempts) if a.report is not None), None)


def start(task: Task, buggy_report: TestReport, config: RolloutConfig) -> RolloutState:
    return RolloutState(messages=tuple(initial_messages(task, buggy_report, config.templates)))


def call_kind(state: RolloutState) -> str | None:
    """What the next chat call is for ("candidate" or "reflection"), None when none is due."""
    return state.phase if state.phase in ("candidate", "reflection") else None


def on_reply(state: RolloutState, reply: str, config: RolloutConfig) -> RolloutState:
    """Record a chat reply. A candidate reply moves to "testing" (program in `pending`) or,
    without a usable program, straight on to the next step; a reflection reply asks for
    the next candidate."""
    messages = state.messages + ({"role": "assistant", "content": reply},)
    if state.phase == "reflection":
        ask = {"role": "user", "content": config.templates.after_reflection}
        return replace(state, messages=messages + (ask,), phase="candidate", reflections=state.reflections + 1)
    if state.phase != "candidate":
        raise ValueError(f"no chat reply expected in phase {state.phase!r}")
    extracted = extract_program(reply)
    iteration = state.iteration + 1
    attempt = Attempt(iteration, reply, extracted.program, extracted.problem, None)
    state = replace(state, messages=messages, iteration=iteration, attempts=state.attempts + (attempt,))
    if extracted.program is None:
        if iteration >= config.max_iters:
            return replace(state, phase="done")
        ask = {"role": "user", "content": config.templates.no_program.format(problem=extracted.problem)}
        return replace(state, messages=state.messages + (ask,), phase="candidate")
    return replace(state, phase="testing", pending=extracted.program)


def on_report(state: RolloutState, report: TestReport, config: RolloutConfig) -> RolloutState:
    """Record the test report of the pending program and decide: done, reflect, or retry."""
    if state.phase != "testing":
        raise ValueError(f"no test report expected in phase {state.phase!r}")
    last = replace(state.attempts[-1], report=report)
    state = replace(state, attempts=state.attempts[:-1] + (last,), pending=None)
    if report.passed or state.iteration >= config.max_iters:
        return replace(state, phase="done")
    if config.reflections:
        ask = reflection_message(report, state.iteration, config.templates)
        return replace(state, messages=state.messages + (ask,), phase="reflection")
    ask = feedback_message(report, state.iteration, config.templates)
    return replace(state, messages=state.messages + (ask,), phase="candidate")


@dataclass(frozen=True)
class RolloutScore:
    score: float          # tests passed / total of the final tested program (0 without one)
    passed: bool
    iterations: int
    reflections: int
    tests: int
    tests_passed: int


def score(state: RolloutState) -> RolloutScore:
    final = state.final
    report = final.report if final else None
    return RolloutScore(score=report.score if report else 0.0, passed=bool(report and report.passed),
                        iterations=state.iteration, reflections=state.reflections,
                        tests=report.tests if report else 0, tests_passed=report.tests_passed if report else 0)


# ------------------------------------------------------------------ the synchronous driver
@dataclass(frozen=True)
class RolloutResult:
    transcript: list[dict]
    final_program: str | None
    report: TestReport | None
    iterations: int
    passed: bool
    score: float
    reflections: int = 0
    attempts: tuple[Attempt, ...] = ()


Runner = Callable[[Task, str], TestReport]


def run_rollout(task: Task, chat: Callable[[list[dict]], str], *, max_iters: int = 3,
                reflections: bool = False, runner: Runner | None = None,
                templates: PromptTemplates | None = None,
                buggy_report: TestReport | None = None) -> RolloutResult:
    """Run one rollout to the end with a synchronous `chat(messages) -> reply`."""
    runner = runner or (lambda t, program: run_tests(t, program))
    config = RolloutConfig(max_iters=max_iters, reflections=reflections, templates=templates or PromptTemplates())
    state = start(task, buggy_report or runner(task, task.buggy_program), config)
    while not state.done:
        if state.phase == "testing":
            state = on_report(state, runner(task, state.pending), config)
        else:
            state = on_reply(state, chat([dict(m) for m in state.messages]), config)
    result = score(state)
    final = state.final
    return RolloutResult(transcript=[dict(m) for m in state.messages],
                         final_program=final.program if final else None,
                         report=final.report if final else None, iterations=state.iteration,
                         passed=result.passed, score=result.score, reflections=state.reflections,
                         attempts=state.attempts)
