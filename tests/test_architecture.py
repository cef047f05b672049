"""The core imports nothing from Textual (harlequin's habit); tui/ is only a front end."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import dpo_tui

CORE_PACKAGES = ("events", "domain", "campaign", "provider", "tasks", "sim")


def test_core_modules_do_not_import_textual():
    modules = [m.name for m in pkgutil.walk_packages(dpo_tui.__path__, "dpo_tui.")
               if m.name.split(".")[1] in CORE_PACKAGES or m.name in ("dpo_tui.cli", "dpo_tui.errors", "dpo_tui.paths")]
    assert "dpo_tui.events.store" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k == 'textual' or k.startswith('textual.'))\n"
            "print(bad)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# -- campaign/state/: the fold's parts are pure -------------------------------------------

STATE_DIR = Path(dpo_tui.__file__).parent / "campaign" / "state"
PURE_STDLIB = {"__future__", "dataclasses", "typing", "collections", "collections.abc", "math", "hashlib", "json",
               "copy", "functools", "itertools", "fractions", "statistics", "re", "bisect", "enum"}
PURE_PROJECT = ("dpo_tui.campaign.state", "dpo_tui.domain", "dpo_tui.events.fold", "dpo_tui.events.types",
                "dpo_tui.events.core", "dpo_tui.tasks.model", "dpo_tui.errors")
# socket is left out of the transitive check: pydantic loads importlib.metadata (email.utils imports it)
DOES_IO = ("sqlite3", "subprocess", "asyncio", "sqlalchemy", "sqlmodel", "alembic", "httpx", "together",
           "textual", "dpo_tui.events.store", "dpo_tui.tasks.sandbox", "dpo_tui.provider", "dpo_tui.sim")


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Every module a file imports when it runs (an `if TYPE_CHECKING:` block is annotations only)."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_the_fold_parts_import_nothing_that_does_io():
    files = sorted(STATE_DIR.glob("*.py"))
    assert {f.stem for f in files} >= {"budget", "split", "rollouts", "pairs", "train", "eval", "plan", "tasks"}
    bad = []
    for f in files:
        tree = ast.parse(f.read_text())
        for name in _runtime_imports(tree):
            if name not in PURE_STDLIB and name != "pydantic" and not name.startswith(PURE_PROJECT):
                bad.append(f"{f.name}: imports {name}")
        for node in ast.walk(tree):  # no file, terminal or clock from builtins either
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "input",
                                                                                                    "print"):
                bad.append(f"{f.name}:{node.lineno}: calls {node.func.id}()")
    assert bad == []


def test_importing_the_fold_parts_loads_no_io_module():
    """Transitively too: what the parts import (the fold, the event types, domain) pulls in no
    store, sandbox, SDK, network or event loop."""
    code = ("import importlib, pkgutil, sys\n"
            "import dpo_tui.campaign.state as s\n"
            "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('dpo_tui.campaign.state.' + m.name)\n"
            f"bad = {DOES_IO!r}\n"
            "print(sorted(k for k in sys.modules if any(k == b or k.startswith(b + '.') for b in bad)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
