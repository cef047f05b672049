"""Shared test fixtures. Tests never read the developer's real config or home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpo_tui.cli import main

# ../shared beside the checkout (as on every developer machine and in CI) holds the
# benchmark data; DPO_TUI_SHARED points elsewhere.
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DPO_TUI_SHARED", ROOT.parent / "shared"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_dpo_tui(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `dpo-tui` program in a subprocess (exit codes, stderr, no traceback)."""
    return subprocess.run([sys.executable, "-m", "dpo_tui.cli", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def dpo_tui_proc():
    return run_dpo_tui
