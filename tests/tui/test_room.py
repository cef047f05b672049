"""The panes use the room they are given: at 120x40 the Pairs list takes its share of the
height (at least 8 pairs), names are sized to their content (the suite prefix dropped where the
suite is its own column), and lines that would be cut wrap or say what they leave out, at
80x24 and 120x40 alike. On the finished demo campaign, through the real App."""

from __future__ import annotations

import re

import pytest

from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import copy_campaign, evaluated_template, make_app, settle, wait_for  # noqa: F401
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio
PAIR_ROW = re.compile(r"^ (\w+) r\d+>r\d+ +\d\.\d\d +\d\.\d\d +\d+ +\w+", re.M)


def _state(db):
    with Campaign.open(db, readonly=True) as c:
        return c.state.to_json()


async def _show(pilot, digit: str, ready) -> str:
    await pilot.press(digit)
    await wait_for(pilot, lambda: ready(screen_text(pilot.app)))
    return screen_text(pilot.app)


async def test_at_120x40_the_pairs_list_shows_at_least_8_pairs_and_the_diff_shares_the_height(
        evaluated_template, tmp_path):
    db = copy_campaign(evaluated_template, tmp_path)
    built = _state(db)["pairs"]["built"]
    assert built >= 8
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = await _show(pilot, "4", lambda s: len(PAIR_ROW.findall(s)) >= 8)
        rows = PAIR_ROW.findall(text)
        assert len(rows) >= 8, text
        lines = text.splitlines()
        diff_rows = sum(1 for line in lines if line.startswith("│"))
        assert diff_rows >= 8, text  # the chosen/rejected diff keeps its share
        await pilot.resize_terminal(80, 24)  # the same pane shrunk: both keep a useful share
        await wait_for(pilot, lambda: len(screen_text(app).splitlines()) == 24
                       and 5 <= len(PAIR_ROW.findall(screen_text(app))) < len(rows))
        text = screen_text(app)
        assert "chosen" in text and "rejected" in text, text


async def test_names_are_sized_to_content_and_nothing_is_cut_at_80x24(evaluated_template, tmp_path):
    db = copy_campaign(evaluated_template, tmp_path)
    split_json = _state(db)["split"]
    longest = max(split_json["train"] + split_json["test"], key=len)
    suite, name = longest.split("/", 1)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        split = await _show(pilot, "2", lambda s: "leak" in s and "tests" in s)
        row = next(line for line in split.splitlines() if f" {name} " in line)
        assert row.split()[:2] == [name, suite], row  # the whole name, its suite in its own column
        assert "tests" in split.splitlines()[4] and "leak" in split.splitlines()[4]  # every column shown
        train = await _show(pilot, "5", lambda s: "hyperparameters:" in s)
        flat = " ".join(train.split())
        for key in ("n_epochs=", "learning_rate=", "dpo_beta=", "batch_size="):
            assert key in flat, train
        assert re.search(r"\(\+\d+ more in a taller terminal\)", flat), train
        assert "model_download_complete" in train or "job_complete " in train  # event names whole
        log = await _show(pilot, "7", lambda s: "chain: ok" in s and "seq" in s)
        assert "keyed" in log and "training $" in " ".join(log.split()), log  # header lines wrap, not clip


async def test_at_120x40_train_lists_every_hyperparameter(evaluated_template, tmp_path):
    db = copy_campaign(evaluated_template, tmp_path)
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        hp = app.session.training_run()["hyperparameters"]
        assert len(hp) > 9, hp
        text = await _show(pilot, "5", lambda s: "hyperparameters:" in s)
        flat = " ".join(text.split())
        missing = [k for k, v in hp.items() if f"{k}={v}" not in flat]
        assert not missing and "more in a taller terminal" not in flat, (missing, text)
