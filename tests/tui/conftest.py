"""Fixtures for the console's tests: real campaigns (the demo on the embedded simulator),
copied per test so each test writes its own log; the real App driven by Pilot."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from dpo_tui.events.campaign import Campaign
from tests.conftest import shared_template

ACTOR = "operator:tester"


def copy_campaign(src: Path, dst_dir: Path, name: str = "c.db") -> Path:
    """A campaign file and its WAL (never its lock or simulator state: each copy starts its own)."""
    dst = dst_dir / name
    for suffix in ("", "-wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def _run_demo(db: Path, until: str | None, *, yes: bool = True):
    from dpo_tui.campaign.plan import demo_plan_path
    from dpo_tui.campaign.runner import run_campaign

    return run_campaign(demo_plan_path(), db, until=until, yes=yes)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo plan run once per test run through pairs (budget, split, pilot, rollouts,
    pairs exported), as `dpo-tui demo` runs it, on the embedded simulator."""
    def build(folder: Path) -> Path:
        result = _run_demo(folder / "demo.db", "pairs")
        assert result.exit_code == 0, result.message
        return folder / "demo.db"

    return shared_template(tmp_path_factory, "demo", build)


@pytest.fixture(scope="session")
def split_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A campaign stopped at the split, waiting for the operator's approval."""
    def build(folder: Path) -> Path:
        result = _run_demo(folder / "split.db", "split", yes=False)
        assert result.status == "waiting", result.message
        return folder / "split.db"

    return shared_template(tmp_path_factory, "split", build)


def copy_with_sim(src: Path, dst_dir: Path) -> Path:
    """A campaign and its simulator's state: the trained model lives in the simulator, so an
    eval on a copy needs the simulator that trained it."""
    dst = copy_campaign(src, dst_dir)
    shutil.copytree(src.with_name(f"{src.name}.sim"), dst.with_name(f"{dst.name}.sim"))
    return dst


@pytest.fixture(scope="session")
def trained_template(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo campaign (`demo_template`, with its simulator) run on through training (the
    DPO job completed), no eval yet."""
    def build(folder: Path) -> Path:
        db = copy_with_sim(demo_template, folder)
        result = _run_demo(db, "train")
        assert result.exit_code == 0, result.message
        return db

    return shared_template(tmp_path_factory, "trained", build)


@pytest.fixture(scope="session")
def evaluated_template(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same campaign run through every stage: evaluated, the gate decided."""
    def build(folder: Path) -> Path:
        db = copy_with_sim(trained_template, folder)
        result = _run_demo(db, None)
        assert result.exit_code == 0, result.message
        return db

    return shared_template(tmp_path_factory, "evaluated", build)


@pytest.fixture
def demo_db(demo_template: Path, tmp_path: Path) -> Path:
    return copy_campaign(demo_template, tmp_path)


@pytest.fixture
def split_db(split_template: Path, tmp_path: Path) -> Path:
    return copy_campaign(split_template, tmp_path)


def make_app(db: Path, *, readonly: bool = False, poll_s: float = 0.5):
    from dpo_tui.tui.app import DpoApp
    from dpo_tui.tui.session import Session

    return DpoApp(Session(db, readonly=readonly, actor=ACTOR), poll_s=poll_s)


async def power_settled(pilot, timeout: float = 120.0) -> None:
    """The Budget pane's power line is computed in a thread of its own: wait until it is in."""
    await wait_for(pilot, lambda: not pilot.app.pane("budget").power_pending, timeout=timeout)


async def settle(pilot, seconds: float = 0.6) -> None:
    """Let workers finish and the coalesced event stream drain into the widgets."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(seconds)  # longer than the app's drain interval (0.5 s)
    await pilot.app.workers.wait_for_complete()
    await power_settled(pilot)
    await pilot.pause()


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.2) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out waiting"
        await pilot.pause(step)


async def prepare_training(pilot):
    """`t` on Train: upload and Together's price (free); returns how the stages ended."""
    app = pilot.app
    app.last_result = None
    await pilot.press("t")
    await wait_for(pilot, lambda: app.working is None and app.last_result is not None, timeout=120)
    return app.last_result


async def open_launch(pilot) -> str:
    """`t` again: the launch confirmation; returns the screen (the toasts cleared first)."""
    from tests.tui.screen_text import screen_text

    pilot.app.clear_notifications()
    await pilot.press("t")
    await pilot.pause()
    return screen_text(pilot.app)


def events_of(db: Path, *types: str) -> list:
    with Campaign.open(db, readonly=True) as c:
        return list(e for e in c.store.read() if not types or e.type in types)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
