"""The embedded simulator's options from the environment (tests and demos that need a
slower simulated job than the default set them; `sim serve` takes the same as flags)."""

from __future__ import annotations

import os

from dpo_tui.errors import InputError

SIM_JOB_STAGE_SECONDS = "DPO_TUI_SIM_JOB_STAGE_SECONDS"


def embedded_sim_options() -> dict[str, float]:
    """The embedded simulator's timing from the environment: DPO_TUI_SIM_JOB_STAGE_SECONDS, the
    seconds a simulated fine-tune job spends in each status (default 1: a job ends in ~6 s), as
    `sim serve --job-stage-seconds` sets it. A job's clock is its start time, so every process
    that follows or cancels the job must see the same value."""
    raw = os.environ.get(SIM_JOB_STAGE_SECONDS)
    if raw is None or not raw.strip():
        return {}
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InputError(f"{SIM_JOB_STAGE_SECONDS}: {raw!r} is not a number of seconds >= 0")
    return {"job_stage_seconds": value}
