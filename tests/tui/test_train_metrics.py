"""The Train pane shows the logged training metrics (loss and reward accuracy as
sparklines) and the failure signs as warnings; it computes none of them."""

from __future__ import annotations

import math

import pytest
from textual.widgets import Sparkline

from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import copy_campaign, make_app, settle
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


def _rows(n: int, loss: float, acc: float) -> list[dict]:
    return [{"step": i, "loss": loss, "accuracy": acc, "kl": 0.0, "lr": 1e-5, "grad_norm": 0.1, "non_finite": []}
            for i in range(1, n + 1)]


async def test_train_shows_loss_and_accuracy_curves_and_the_flat_loss_warning(split_template, tmp_path):
    db = copy_campaign(split_template, tmp_path)
    with Campaign.open(db) as c:
        c.append("training.metrics", {"run_id": "run-1", "job_id": "ft-x", "status": "running",
                                      "rows": _rows(6, math.log(2), 0.5), "final": False}, actor="system")
    app = make_app(db)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert list(app.query_one("#train-loss", Sparkline).data) == [math.log(2)] * 6
        assert list(app.query_one("#train-accuracy", Sparkline).data) == [0.5] * 6
        text = screen_text(app)
        assert "loss (last 0.6931, 6 steps so far)" in text
        assert "warning: loss flat at ln 2 = 0.693" in text
