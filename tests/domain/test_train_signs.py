from __future__ import annotations

import math

from dpo_tui.campaign.state.metrics import metric_row
from dpo_tui.domain.train_signs import failure_signs


def rows(losses, accs=None):
    accs = accs or [0.5] * len(losses)
    return [{"step": i + 1, "loss": l, "accuracy": a, "non_finite": []} for i, (l, a) in enumerate(zip(losses, accs))]


def test_a_learning_job_shows_no_sign():
    assert failure_signs(rows([0.693, 0.68, 0.66, 0.62, 0.58, 0.55, 0.5, 0.45], [0, .5, .5, .6, .7, .8, .9, 1])) == []


def test_loss_flat_at_ln2_over_the_last_steps():
    flat = rows([0.5, 0.6, 0.69, 0.695, 0.69, 0.7, 0.693])
    assert any(w.startswith("loss flat at ln 2") for w in failure_signs(flat))
    assert failure_signs(rows([0.693, 0.693, 0.70, 0.71, 0.72])) == []  # 0.71 is 0.017 away
    assert failure_signs(rows([0.693, 0.693])) == []  # two steps say nothing yet


def test_accuracy_one_early_but_not_when_the_loss_is_flat():
    easy = rows([0.69, 0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01], [0, 1, 1, 1, 1, 1, 1, 1])
    assert any(w.startswith("reward accuracy 1.0 early (steps 2-3 of 8)") for w in failure_signs(easy))
    flat = rows([math.log(2)] * 8, [0] + [1] * 7)
    signs = failure_signs(flat)
    assert len(signs) == 1 and signs[0].startswith("loss flat")


def test_nan_from_the_wire_is_logged_as_none_and_named():
    row = metric_row({"train/global_step": 3.0, "train/loss": float("nan"), "train/rewards/accuracies": 0.5})
    assert row == {"step": 3, "loss": None, "accuracy": 0.5, "non_finite": ["loss"]}
    assert failure_signs([row])[0] == "NaN: loss is not a number from step 3: the job diverged"
    assert metric_row({"train/loss": 0.5}) is None  # no step
