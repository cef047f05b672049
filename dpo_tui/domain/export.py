"""DPO export formats and Together's preference-format rules, checked before upload.

Together's preference JSONL (../shared/reference/together-api.md §3.8; the rules are
domain/preference_format.py, shared with the simulator): each line has exactly `input`,
`preferred_output`, `non_preferred_output`; `input.messages` is a non-empty list of
{role, content} whose last message is not the assistant's; each output is a list of
exactly one assistant message. Together refuses extra columns, so lineage lives in a
manifest beside the file. TRL's format is prompt/chosen/rejected (conversational).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dpo_tui.domain.preference_format import ROLES, check_line  # noqa: F401


def program_reply(program: str) -> str:
    """A final program as the assistant message the agent would have sent."""
    return f"```python\n{program.rstrip()}\n```"


def together_line(prompt: Sequence[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    return {"input": {"messages": [dict(m) for m in prompt]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def trl_line(prompt: Sequence[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": [dict(m) for m in prompt], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def together_problem(line: Any) -> str | None:
    """The first rule a line breaks, or None when Together would accept it (the rules the
    simulator's server-side check uses too: domain/preference_format.py)."""
    bad = check_line(line)
    return f"{bad[1]} (rule: {bad[0]})" if bad else None


@dataclass(frozen=True)
class FileCheck:
    lines: int
    problems: list[tuple[int, str]]  # (1-based line, rule broken)

    @property
    def ok(self) -> bool:
        return self.lines > 0 and not self.problems


def check_together_jsonl(data: bytes) -> FileCheck:
    problems: list[tuple[int, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FileCheck(0, [(0, f"not UTF-8 ({exc.reason} at byte {exc.start})")])
    n = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        n += 1
        try:
            line = json.loads(raw)
        except ValueError as exc:
            problems.append((number, f"not JSON: {exc}"))
            continue
        if problem := together_problem(line):
            problems.append((number, problem))
    if n == 0:
        problems.append((0, "the file has no samples"))
    return FileCheck(n, problems)


def jsonl_bytes(lines: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hold_back_tasks(task_ids: Sequence[str], share: float, seed: int) -> set[str]:
    """The train tasks whose pairs become the validation file: round(share x tasks), at least
    one, never all (one task at least stays for training), chosen by a seeded hash so the
    same export, share and seed hold back the same tasks. Held back by task, never by pair,
    like the split: a task's pairs are all trained on or all validated on."""
    tasks = sorted(set(task_ids))
    if share <= 0 or len(tasks) < 2:
        return set()
    n = min(len(tasks) - 1, max(1, round(share * len(tasks))))
    ranked = sorted(tasks, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
    return set(ranked[:n])


def split_lines(data: bytes, line_tasks: Sequence[str], held: set[str]) -> tuple[bytes, bytes]:
    """(training bytes, validation bytes) of a JSONL export whose non-blank line i belongs to
    task line_tasks[i]; lines keep their order and bytes."""
    lines = [raw for raw in data.decode("utf-8").splitlines(keepends=True) if raw.strip()]
    if len(lines) != len(line_tasks):
        raise ValueError(f"{len(lines)} lines but {len(line_tasks)} manifest rows")
    train = "".join(line for line, task in zip(lines, line_tasks) if task not in held)
    val = "".join(line for line, task in zip(lines, line_tasks) if task in held)
    return train.encode("utf-8"), val.encode("utf-8")
