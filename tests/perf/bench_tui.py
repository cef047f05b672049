"""Benchmarks of the console (not part of the default test run).

1. Time from start to the first full frame (80x24) on a campaign of ~100,000 events: open
   and fold the log, mount the app, render the Budget pane; and the same landing on the
   Rollouts pane, whose table holds every rollout.
2. The rollout engine's events/s with the console showing the Rollouts pane, against the
   same stage headless, in the same run (alternating, twice each; target >= 90%).
3. Start (bench_start.py): `dpo-tui --help` vs `python -c "import argparse"` (goal <= 8x) and
   the console's first frame on the demo campaign vs a bare Textual app (goal <= 3x).

    .venv/bin/python tests/perf/bench_tui.py [--events 100000] [--rounds 2] [--start-rounds 5]
                                             [--only-start] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dpo_tui.campaign.plan import demo_plan_path  # noqa: E402
from dpo_tui.campaign.runner import run_campaign  # noqa: E402
from dpo_tui.events.campaign import Campaign  # noqa: E402
from dpo_tui.events.store import NewEvent  # noqa: E402
from tests.perf.bench_start import bench_start  # noqa: E402
from tests.tui.conftest import copy_campaign, make_app  # noqa: E402
from tests.tui.screen_text import screen_text  # noqa: E402

ROLLOUT_TYPES = ("rollout.started", "rollout.iteration", "rollout.finished", "call.started", "call.completed")


def rollout_copier(c: Campaign) -> Callable[[int], list[NewEvent]]:
    """`copy(k)`: the log's rollout events (ROLLOUT_TYPES) as new events under fresh rollout
    ids (`<id>~k`) and so fresh idempotency keys, each copy a consistent set."""
    source = [e for e in c.store.read() if e.type in ROLLOUT_TYPES]
    ids = sorted({e.payload["rollout_id"] for e in source if e.type == "rollout.started"}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(i) for i in ids))
    texts = [(e.type, json.dumps(e.payload)) for e in source]

    def copy(k: int) -> list[NewEvent]:
        return [NewEvent(t, json.loads(pattern.sub(lambda m: f"{m.group(0)}~{k}", text)), "system")
                for t, text in texts]

    return copy


def append_copies(c: Campaign, copy: Callable[[int], list[NewEvent]], ks: range, chunk: int = 2000) -> None:
    """Append copies `ks` through the store's own append path (validation, the hash chain,
    keyed checkpoints, the live fold), `chunk` events per transaction."""
    for k in ks:
        batch = copy(k)
        for i in range(0, len(batch), chunk):
            c.append_batch(batch[i:i + chunk])


def big_campaign(template: Path, out: Path, n_events: int) -> tuple[int, int]:
    """The demo's rollouts replayed under new rollout ids until the log holds n_events."""
    db = copy_campaign(template, out.parent, out.name)
    with Campaign.open(db) as c:
        c.append("budget.cap_set", {"cap_usd": 1e6, "reason": "bench: room for the copies"}, actor="system")
        copy, k = rollout_copier(c), 0
        while c.state.events < n_events:
            k += 1
            append_copies(c, copy, range(k, k + 1))
        return c.state.events, len(c.state.part("rollouts").by_id)


async def first_frame(db: Path, key: str | None, marker: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    app = make_app(db, readonly=True)
    t_open = time.perf_counter() - t0
    async with app.run_test(size=(80, 24)) as pilot:
        if key:
            await pilot.press(key)
        while marker not in screen_text(app):
            await pilot.pause(0.01)
        t = time.perf_counter() - t0
    return t_open, t


def headless_rate(split_db: Path) -> tuple[int, float]:
    with Campaign.open(split_db, readonly=True) as c:
        before = c.state.events
    t0 = time.perf_counter()
    res = run_campaign(demo_plan_path(), split_db, until="rollouts", yes=True)
    dt = time.perf_counter() - t0
    assert res.exit_code == 0, res.message
    with Campaign.open(split_db, readonly=True) as c:
        return c.state.events - before, dt


async def tui_rate(split_db: Path) -> tuple[int, float, float]:
    app = make_app(split_db)
    before = app.session.campaign.state.events
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pilot.pause(0.3)
        t0, cpu0 = time.perf_counter(), time.thread_time()  # this thread is the console's (UI) thread
        app.session.approve_split()
        app.session.approve("run_pilot", "rollouts", reason="bench", estimate_usd=None)
        app.session.approve("approve_rollouts", "rollouts", reason="bench", estimate_usd=None)
        app._stage_work("rollouts", "rollouts")
        while app.working is not None:
            # a plain sleep: pilot.pause() waits on every widget's queue, work the console
            # itself never does, which would be billed to the console
            await asyncio.sleep(0.1)
        dt, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
        assert app.last_result.status == "done", app.last_result.message
        n = app.session.campaign.state.events - before
    return n, dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--start-rounds", type=int, default=5, help="runs of each start measurement")
    ap.add_argument("--only-start", action="store_true", help="only the start ratios (3)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line (the start figures)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    try:
        split = tmp / "split.db"
        assert run_campaign(demo_plan_path(), split, until="split").status == "waiting"
        demo = copy_campaign(split, tmp, "demo.db")
        t0 = time.perf_counter()
        assert run_campaign(demo_plan_path(), demo, until="pairs", yes=True).exit_code == 0
        print(f"demo campaign through pairs: {time.perf_counter() - t0:.1f}s")
        start = bench_start(demo, args.start_rounds)
        if not args.only_start:
            bench_console(tmp, split, demo, args)
        if args.json:
            print(json.dumps({"start": start}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_console(tmp: Path, split: Path, demo: Path, args: argparse.Namespace) -> None:
    """(1) and (2): the first frame on a large log, the engine's rate under the console."""
    big = tmp / "big.db"
    t0 = time.perf_counter()
    n, rollouts = big_campaign(demo, big, args.events)
    print(f"built a campaign of {n:,} events ({rollouts:,} rollouts) in {time.perf_counter() - t0:.1f}s")
    for key, marker, label in ((None, "$ est", "Budget"), ("3", "result", "Rollouts")):
        t_open, t = asyncio.run(first_frame(big, key, marker))
        print(f"first full frame, {label} pane: {t:.2f}s (open and fold {t_open:.2f}s)")

    ratios = []
    for r in range(args.rounds):
        a = copy_campaign(split, tmp, f"h{r}.db")
        b = copy_campaign(split, tmp, f"t{r}.db")
        order = [("headless", a), ("tui", b)] if r % 2 == 0 else [("tui", b), ("headless", a)]
        rates = {}
        for kind, db in order:
            if kind == "headless":
                (n, dt), ui = headless_rate(db), ""
            else:
                n, dt, cpu = asyncio.run(tui_rate(db))
                ui = f" (the console's UI thread used {cpu:.2f} CPU s, {cpu / dt:.0%} of a core)"
            rates[kind] = n / dt
            print(f"round {r + 1} {kind:<8}: {n} events in {dt:.1f}s = {n / dt:.1f} events/s{ui}")
        ratios.append(rates["tui"] / rates["headless"])
    print(f"engine events/s with the console on Rollouts / headless: "
          f"{', '.join(f'{x:.0%}' for x in ratios)} (median {statistics.median(ratios):.0%}; target >= 90%)")


if __name__ == "__main__":
    main()
