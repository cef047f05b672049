"""DPO export formats and Together's preference-format rules, checked before upload.

Together's preference JSONL (../shared/reference/together-api.md §3.8): each line has
exactly `input`, `preferred_output`, `non_preferred_output`; `input.messages` is a
non-empty list of {role, content} whose last message is not the assistant's; each output
is a list of exactly one assistant message. Together refuses extra columns, so lineage
lives in a manifest beside the file. TRL's format is prompt/chosen/rejected (conversational).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLES = {"system", "user", "assistant", "tool"}


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


def _message_problem(m: Any, where: str) -> str | None:
    if not isinstance(m, dict):
        return f"{where} is not an object"
    if m.get("role") not in ROLES:
        return f"{where}.role must be one of {sorted(ROLES)}"
    content = m.get("content")
    if not isinstance(content, (str, list)) or (isinstance(content, str) and not content):
        return f"{where}.content must be a non-empty string"
    extra = set(m) - {"role", "content", "weight"}
    if extra:
        return f"{where} has unexpected keys {sorted(extra)}"
    if "weight" in m and m["weight"] not in (0, 1):
        return f"{where}.weight must be 0 or 1"
    return None


def together_problem(line: Any) -> str | None:
    """The first rule a line breaks, or None when Together would accept it."""
    if not isinstance(line, dict):
        return "the line is not a JSON object"
    keys = set(line)
    if keys != {"input", "preferred_output", "non_preferred_output"}:
        extra, missing = keys - {"input", "preferred_output", "non_preferred_output"}, \
            {"input", "preferred_output", "non_preferred_output"} - keys
        return f"extra columns {sorted(extra)}" if extra else f"missing {sorted(missing)}"
    inp = line["input"]
    if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) or not inp["messages"]:
        return "input.messages must be a non-empty list"
    for i, m in enumerate(inp["messages"]):
        if problem := _message_problem(m, f"input.messages[{i}]"):
            return problem
    if inp["messages"][-1]["role"] == "assistant":
        return "the last input message must not be from the assistant"
    for key in ("preferred_output", "non_preferred_output"):
        out = line[key]
        if not isinstance(out, list) or len(out) != 1:
            return f"{key} must be a list of exactly one message"
        if problem := _message_problem(out[0], f"{key}[0]"):
            return problem
        if out[0]["role"] != "assistant":
            return f"{key}[0].role must be assistant"
    return None


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
