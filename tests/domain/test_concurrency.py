"""The eval's concurrency rule against a model of a dedicated endpoint: `slots` requests
served at once at `service` seconds per token, the rest queued (a closed loop of `limit`
clients, as the engine's rollouts are). The rule must find the knee from below and from
above, keep every slot busy there, stay inside its bounds, and hold under latency noise."""

from __future__ import annotations

import math
import random

import pytest

from dpo_tui.domain.concurrency import ThroughputController


def drive(ctl: ThroughputController, slots: int, *, windows: int = 40, seed: int = 0,
          noise: float = 0.0, tokens: tuple[int, int] = (80, 400)) -> list[int]:
    """Feed `windows` windows of calls; the latency a call sees at limit c is its service
    time x max(1, c / slots) (the queue ahead of it). Returns the limit after each call."""
    rng = random.Random(seed)
    now, path = 0.0, []
    for _ in range(windows * max(ctl.min_window, ctl.ceiling)):
        n = rng.randint(*tokens)
        latency = 0.004 * n * max(1.0, ctl.limit / slots) * math.exp(rng.gauss(0, noise))
        now += latency / max(1, min(ctl.limit, slots))
        ctl.observe(latency, n, now)
        path.append(ctl.limit)
    return path


@pytest.mark.parametrize("start", [1, 4, 64])
@pytest.mark.parametrize("slots", [4, 8, 16])
def test_it_settles_past_the_knee_from_below_and_above(start: int, slots: int) -> None:
    ctl = ThroughputController(start, ceiling=128)
    path = drive(ctl, slots)
    settled = path[len(path) // 2:]
    # every slot busy (>= slots in flight), and no more queue than about sqrt(limit) + a bit
    assert min(settled) >= slots, (start, slots, min(settled))
    assert max(settled) <= slots + 2 * math.sqrt(2 * slots) + 2, (start, slots, max(settled))


def test_with_no_queue_it_grows_to_its_ceiling_and_never_past() -> None:
    ctl = ThroughputController(2, ceiling=24)
    path = drive(ctl, slots=10_000, windows=20)
    assert path[-1] == 24 and max(path) == 24
    assert path == sorted(path)  # no queue: it only grows


def test_it_never_goes_below_its_floor() -> None:
    ctl = ThroughputController(16, floor=6, ceiling=32)
    path = drive(ctl, slots=1)
    assert min(path) == 6  # (a floor above the capacity hides the unqueued latency: it cannot find less)


@pytest.mark.parametrize("seed", range(12))
def test_latency_noise_does_not_move_it_off_the_knee(seed: int) -> None:
    slots = 8
    ctl = ThroughputController(2, ceiling=128)
    path = drive(ctl, slots, seed=seed, noise=0.15, windows=60)
    settled = path[len(path) // 2:]
    assert sum(c >= slots - 1 for c in settled) / len(settled) >= 0.9, seed
    assert max(settled) <= 3 * slots, seed


def test_a_change_says_what_was_measured() -> None:
    ctl = ThroughputController(2, ceiling=64)
    changes = [c for _ in range(64) if (c := ctl.observe(0.5, 100, _ * 0.1)) is not None]
    assert changes and changes[0].before == 2 and changes[0].after == 4  # slow start: doubled
    assert changes[0].calls == 8 and changes[0].latency_ms_per_token == pytest.approx(5.0)
    assert changes[0].tokens_per_s > 0 and "room to grow" in changes[0].reason


def test_a_resume_starts_where_the_log_left_it_without_a_probe() -> None:
    ctl = ThroughputController(11, ceiling=64, baseline=0.004)
    assert ctl.limit == 11
    path = drive(ctl, slots=8, windows=20)
    assert all(8 <= c <= 16 for c in path), path


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="floor"):
        ThroughputController(4, floor=8, ceiling=4)
    assert ThroughputController(500, ceiling=64, baseline=1.0).limit == 64
    assert ThroughputController(500, ceiling=64).limit == 2  # a fresh start probes the unqueued latency first
