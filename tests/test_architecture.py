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


# -- tui/: a front end only -----------------------------------------------------------------

TUI_DIR = Path(dpo_tui.__file__).parent / "tui"
CAMPAIGN_DIR = Path(dpo_tui.__file__).parent / "campaign"


def _private_names_of_campaign() -> set[str]:
    """Every private name campaign/ defines: module functions, classes and globals, methods,
    fields and `self._x` attributes."""
    names: set[str] = set()
    for f in CAMPAIGN_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _tui_offences(tree: ast.Module, private: set[str]) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dpo_tui.campaign"):
            bad += [f"{node.lineno}: imports {a.name} from {node.module}" for a in node.names if a.name.startswith("_")]
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"{node.lineno}: imports {m} (domain logic goes through a campaign service)"
                    for m in mods if m == "dpo_tui.domain" or m.startswith("dpo_tui.domain.")]
        if isinstance(node, ast.Attribute) and node.attr in private and ast.unparse(node.value) != "self":
            bad.append(f"{node.lineno}: takes {ast.unparse(node)} (private to campaign/)")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "append_batch") and "campaign" in ast.unparse(node.func.value)):
            bad.append(f"{node.lineno}: appends an event itself ({ast.unparse(node.func)}): a service appends it")
    return bad


def test_the_console_takes_no_private_name_from_campaign_and_calls_no_domain_function():
    private = _private_names_of_campaign()
    assert {"_client", "_frozen_split"} <= private  # what the scan sees: a runner field, a module function
    files = sorted(TUI_DIR.rglob("*.py"))
    assert TUI_DIR / "session.py" in files and TUI_DIR / "screens" / "pairs.py" in files
    bad = [f"{f.relative_to(TUI_DIR)}:{b}" for f in files for b in _tui_offences(ast.parse(f.read_text()), private)]
    assert bad == []


def test_the_console_check_catches_each_kind_of_offence():
    """The scan above finds what it is for (so a clean tui/ is not a blind scan)."""
    private = _private_names_of_campaign()
    code = ("from dpo_tui.campaign.pairs import _frozen_split\n"
            "from dpo_tui.domain.stats import signflip\n"
            "import dpo_tui.campaign.pairs as p\n"
            "p._frozen_split(campaign)\n"
            "ctx._client = None\n"
            "self.session.campaign.append('note.added', {}, actor='x')\n"
            "self._client = None\n")  # its own attribute: allowed
    bad = _tui_offences(ast.parse(code), private)
    assert sorted(int(b.split(":")[0]) for b in bad) == [1, 2, 4, 5, 6], bad
