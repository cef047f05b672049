"""The known failure signs of a DPO job, read from its training metrics (pure).

- loss flat at ln 2 = 0.693 (within 0.01 over the last steps): the implicit reward margin
  stays at 0, the model cannot tell chosen from rejected (pairs too close, or a learning
  rate too small to move it);
- reward accuracy 1.0 early (every step of the first quarter after the first): the pairs
  are too easy or the job over-fits them (not said when the loss is flat: a margin of ~0
  that moved a hair makes every pair "right");
- NaN (or infinite) loss, eval loss or gradient norm: the job diverged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

LN2 = math.log(2)
FLAT_TOLERANCE = 0.01
FLAT_STEPS = 5  # the last this many steps (fewer when the job has fewer, at least 3)


def failure_signs(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One warning line per sign the rows show (rows: step, loss, accuracy, ..., non_finite)."""
    out: list[str] = []
    bad = [(r["step"], k) for r in rows for k in r.get("non_finite") or ()]
    if bad:
        step, key = bad[0]
        out.append(f"NaN: {key} is not a number from step {step}: the job diverged")
    train = [r for r in rows if r.get("loss") is not None]
    flat = False
    if len(train) >= 3:
        last = train[-min(FLAT_STEPS, len(train)):]
        if all(abs(r["loss"] - LN2) <= FLAT_TOLERANCE for r in last):
            flat = True
            out.append(f"loss flat at ln 2 = 0.693 (within {FLAT_TOLERANCE}) over the last {len(last)} steps: "
                       "the model cannot tell chosen from rejected (pairs too close, or too small a learning rate)")
    acc = [r for r in train if r.get("accuracy") is not None]
    if len(acc) >= 4 and not flat:  # at a margin of ~0 any tiny move makes "accuracy" 1.0: the flat loss says it
        early = acc[1:1 + math.ceil(len(acc) / 4)]
        if early and all(r["accuracy"] >= 1.0 for r in early):
            out.append(f"reward accuracy 1.0 early (steps {early[0]['step']}-{early[-1]['step']} of "
                       f"{acc[-1]['step']}): the pairs are too easy or the job over-fits them")
    return out
