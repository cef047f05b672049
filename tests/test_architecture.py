"""The core imports nothing from Textual (harlequin's habit); tui/ is only a front end."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
