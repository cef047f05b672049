"""`dpo-tui --help`, every `COMMAND --help` and an argument error start on the standard
library (issue 19: a start that feels instant). Only argparse and dpo_tui's light register()
modules may load; the SDK, the store's ORM and migrations, pydantic, the console and the
tokenizer wait for a command that uses them. Not timed: tests/perf/bench_tui.py measures."""

from __future__ import annotations

import json
import subprocess
import sys

from dpo_tui.cli import build_parser

HEAVY = ("together", "sqlalchemy", "sqlmodel", "alembic", "pydantic", "textual", "tiktoken", "httpx", "asyncio")

# One subprocess runs every argv (each main() call builds its own parser), then prints the
# heavy top-level packages found in sys.modules and the exit code of each call.
PROBE = """
import json, sys
from dpo_tui.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "heavy": heavy}), file=sys.stderr)
"""


def _commands() -> list[list[str]]:
    """Every command and subcommand path, e.g. ["pairs", "decide"]."""
    out: list[list[str]] = []

    def walk(parser, path):  # noqa: ANN001
        for action in parser._subparsers._group_actions if parser._subparsers else ():
            for name, child in action.choices.items():
                out.append([*path, name])
                walk(child, [*path, name])

    walk(build_parser(), [])
    return out


def _probe(argvs: list[list[str]]) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stderr.strip().splitlines()[-1])


def test_help_of_every_command_and_argument_errors_load_only_the_standard_library():
    commands = _commands()
    assert ["tasks", "check"] in commands and ["doctor"] in commands  # the walk finds nested ones
    errors = [["--no-such-flag"], ["tasks", "check", "--suite", "fixtures"],  # --variant missing
              ["doctor", "--no-such-flag"], ["models", "--need", "not-a-need"], ["no-such-command"]]
    argvs = [["--help"], *([*c, "--help"] for c in commands), *errors]
    got = _probe(argvs)
    assert got["heavy"] == [], got
    assert got["codes"] == [0] * (1 + len(commands)) + [2] * len(errors), got


def test_the_probe_sees_a_heavy_import():
    """The probe is not blind: a command that needs pydantic (its settings) shows it."""
    got = _probe([["tokens", "--model", "llama", "-"]])
    assert "pydantic" in got["heavy"] and got["codes"] == [2], got
