"""Start-up ratios (issue 19, point 1), each measured against its baseline in the same run,
alternating, in fresh interpreters (the imports are what is measured):

1. `dpo-tui --help` vs `python -c "import argparse"` (goal: within 8x).
2. The console's first frame on the demo campaign (the header and the tab names, the writable
   console as `dpo-tui tui --db` opens it: the writer's lock, the session, DpoApp) vs a bare
   Textual App with Header+Footer (goal: within 3x). Both through Pilot's run_test at 80x24,
   timed from the process's spawn until its screen shows the marker.

    .venv/bin/python tests/perf/bench_start.py [--rounds 5] [--db CAMPAIGN] [--json]

bench_tui.py runs it too (on the demo campaign it builds). The last line with --json is one
JSON object with the medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter that opens an app under Pilot and prints FRAME when `marker` is on
# screen, then READY when the console is ready (its session open, its panes mounted). The
# console is opened as run_tui() opens it (console_app); the bare app is Header+Footer.
FRAME_PROBE = """
import asyncio, sys
sys.path.insert(0, {root!r})
kind, db = sys.argv[1], sys.argv[2]

async def main():
    from textual.app import App
    from tests.tui.screen_text import screen_text
    if kind == "bare":
        from textual.widgets import Footer, Header

        class Bare(App):
            TITLE = "bare"
            def compose(self):
                yield Header()
                yield Footer()

        app, marker, lock = Bare(), "bare", None
    else:
        from pathlib import Path
        from dpo_tui.campaign.lock import campaign_lock
        from dpo_tui.tui.cli import close_console, console_app

        lock = campaign_lock(Path(db))
        lock.__enter__()
        app, marker = console_app(Path(db), actor="operator:bench"), "1 Budget"
    async with app.run_test(size=(80, 24)) as pilot:
        while marker not in screen_text(app):
            await pilot.pause(0.005)
        print("FRAME", flush=True)
        if lock is not None:  # the console ready: the session open, every pane in (a plain
            while not app.ready:  # sleep: pilot.pause() waits on every widget, billed to the app)
                await asyncio.sleep(0.005)
        print("READY", flush=True)
    if lock is not None:
        close_console(app)
        lock.__exit__(None, None, None)

asyncio.run(main())
"""


def timed(cmd: list[str], *, want: str | None = None, then: str | None = None) -> float | tuple[float, float]:
    """Seconds from spawn until `want` appears on stdout (or until exit when want is None);
    with `then`, also until that later line: (want's, then's)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None if os.environ.get("BENCH_STDERR") else subprocess.DEVNULL, text=True, cwd=ROOT)
    if want is None:
        proc.communicate()
        dt = time.perf_counter() - t0
    else:
        seen: dict[str, float] = {}
        for line in proc.stdout:  # type: ignore[union-attr]
            for marker in (want, then):
                if marker and marker in line and marker not in seen:
                    seen[marker] = time.perf_counter() - t0
            if want in seen and (then is None or then in seen):
                break
        else:
            raise RuntimeError(f"{cmd}: no {want!r} (exit {proc.wait()})")
        proc.communicate()
        dt = (seen[want], seen[then]) if then else seen[want]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {proc.returncode}")
    return dt


def pairs(a: list[str], b: list[str], rounds: int, want: str | None = None,
          then: str | None = None) -> tuple[float, float, float | None]:
    """Medians of a and b over `rounds` runs each, alternating the order every round (and of
    a's `then` time, when asked)."""
    ta, tb, ta_then = [], [], []
    timed(a, want=want), timed(b, want=want)  # warm the file cache and the bytecode
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            if which == 0:
                got = timed(a, want=want, then=then)
                if then:
                    ta_then.append(got[1])  # type: ignore[index]
                    got = got[0]  # type: ignore[index]
                ta.append(got)
            else:
                tb.append(timed(b, want=want))
    return statistics.median(ta), statistics.median(tb), statistics.median(ta_then) if ta_then else None


def bench_start(db: Path, rounds: int) -> dict:
    py = sys.executable
    help_s, argparse_s, _ = pairs([py, "-m", "dpo_tui.cli", "--help"], [py, "-c", "import argparse"], rounds)
    probe = FRAME_PROBE.format(root=str(ROOT))
    console_s, bare_s, ready_s = pairs([py, "-c", probe, "console", str(db)], [py, "-c", probe, "bare", "-"],
                                       rounds, want="FRAME", then="READY")
    out = {"rounds": rounds, "help_s": help_s, "import_argparse_s": argparse_s, "help_ratio": help_s / argparse_s,
           "console_first_frame_s": console_s, "bare_textual_first_frame_s": bare_s,
           "first_frame_ratio": console_s / bare_s, "console_ready_s": ready_s, "ready_ratio": ready_s / bare_s,
           "load_avg": os.getloadavg(), "cores": os.cpu_count()}
    print(f"dpo-tui --help {help_s:.3f}s vs python -c 'import argparse' {argparse_s:.3f}s: "
          f"{out['help_ratio']:.1f}x (goal <= 8x)")
    print(f"console first frame (header + tabs, demo campaign) {console_s:.2f}s vs bare Textual Header+Footer "
          f"{bare_s:.2f}s: {out['first_frame_ratio']:.1f}x (goal <= 3x)")
    print(f"console ready (session open, every pane mounted) {ready_s:.2f}s: {out['ready_ratio']:.1f}x the bare app")
    print(f"medians of {rounds} alternating runs; load average {', '.join(f'{x:.2f}' for x in out['load_avg'])} "
          f"on {out['cores']} cores")
    return out


def demo_campaign(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from dpo_tui.campaign.plan import demo_plan_path
    from dpo_tui.campaign.runner import run_campaign

    db = tmp / "demo.db"
    assert run_campaign(demo_plan_path(), db, until="pairs", yes=True).exit_code == 0
    return db


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--db", type=Path, help="campaign to open (default: the demo run through pairs)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-start-"))
    try:
        db = args.db.resolve() if args.db else demo_campaign(tmp)
        out = bench_start(db, args.rounds)
        if args.json:
            print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
