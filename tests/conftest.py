"""Shared test fixtures. Tests never read the developer's real config or home."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dpo_tui.cli import main

# ../shared beside the checkout (as on every developer machine and in CI) holds the
# benchmark data; DPO_TUI_SHARED points elsewhere.
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DPO_TUI_SHARED", ROOT.parent / "shared"))


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every xdist worker of this run shares (each worker's basetemp is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def run_lock(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock between this run's workers (released when its file closes, also on failure)."""
    import fcntl

    with open(root / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def shared_template(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """A session template built once per test run, not once per worker: the first worker to
    ask builds it in `run_root/template-NAME` (`build(folder)` returns the campaign file)
    under an exclusive lock; the others wait on the lock and reuse it. Nothing may write to a
    template: tests copy it (`copy_campaign_file`, tests/tui/conftest.py `copy_campaign`)."""
    root = run_root(tmp_path_factory)
    folder = root / f"template-{name}"
    with run_lock(root, f"template-{name}"):
        built = folder / ".built"
        if built.exists():
            return Path(built.read_text())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        db = build(folder)
        built.write_text(str(db))
        return db


@pytest.fixture(scope="session", autouse=True)
def _session_audit_key(tmp_path_factory: pytest.TempPathFactory):
    """One audit key for the run (every worker's), made before any session template is built
    (those fixtures run outside a test's own environment and are shared between workers), so
    no test ever touches the developer's real ~/.config/dpo-tui/audit.key. Each test gets its
    own copy (see `_isolated_home`)."""
    from dpo_tui.events.checkpoint import KEY_ENV, load_or_create_key

    home = tmp_path_factory.mktemp("session-home")
    root = run_root(tmp_path_factory)
    key = root / "session-key" / "audit.key"
    with run_lock(root, "session-key"):  # the first worker makes it, whole, before another reads it
        load_or_create_key(key)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.setenv(KEY_ENV, str(key))
        yield key


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                   _session_audit_key: Path) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)
    # the session's key, copied: campaigns built by session fixtures verify, and a test that
    # deletes or replaces its key changes nobody else's
    key = home / ".config" / "dpo-tui" / "audit.key"
    key.parent.mkdir(mode=0o700, parents=True)
    key.write_bytes(_session_audit_key.read_bytes())
    key.chmod(0o600)
    monkeypatch.setenv("DPO_TUI_AUDIT_KEY_FILE", str(key))
    monkeypatch.delenv("DPO_TUI_CHECKPOINT_EVERY", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _collect_leftover_clients():
    """After each test file, with no event loop running, collect what its tests left: an
    AsyncTogether a test made and never closed (tests/provider make their own) closes itself
    in __del__ on the loop that runs when it is collected, so left to chance it fails a later
    file's Pilot test with `Event loop is closed`. The product closes its own
    (test_runner.py::test_a_run_closes_its_http_clients_...)."""
    yield
    import gc

    gc.collect()


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


def count_events(db: Path, type_: str) -> int:
    """Events of one type in a campaign another process may be writing (0 before it exists)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = conn.execute("SELECT count(*) FROM event WHERE type = ?", (type_,)).fetchone()[0]
        conn.close()
        return n
    except sqlite3.Error:
        return 0


def small_demo_plan(**more: str) -> str:
    """The demo plan, smaller: 2 rollouts per task, 3 iterations, a pilot of 4 (plus `more` replacements)."""
    from dpo_tui.campaign.plan import demo_plan_path

    text = (demo_plan_path().read_text()
            .replace("rollouts_per_task = 4", "rollouts_per_task = 2")
            .replace("max_iters = 4", "max_iters = 3")
            .replace("pilot_rollouts = 8", "pilot_rollouts = 4"))
    for old, new in more.items():
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="session")
def finished_demo_template(tmp_path_factory: pytest.TempPathFactory, _session_audit_key: Path) -> Path:
    """A small demo campaign run through every stage (the gate decided) on the embedded
    simulator, under the session's audit key; built once per run (`shared_template`). Copy it
    (`copy_campaign_file`) before writing."""
    def build(folder: Path) -> Path:
        from dpo_tui.campaign.runner import run_campaign

        plan = folder / "plan.toml"
        plan.write_text(small_demo_plan(**{"seeds = [11, 12, 13]": "seeds = [11, 12]", "k = 3": "k = 2"}))
        db = folder / "finished.db"
        result = run_campaign(plan, db, until=None, yes=True)
        assert result.exit_code == 0, result.message
        return db

    return shared_template(tmp_path_factory, "finished", build)


def copy_campaign_file(src: Path, dst: Path) -> Path:
    """A campaign file and its WAL (not its lock, its simulator state or its exports)."""
    import shutil

    for suffix in ("", "-wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return dst
