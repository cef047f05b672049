"""Run every benchmark under tests/perf/ one after another and print a table.

    .venv/bin/python tests/perf/run_all.py            # the documented sizes (~20-30 min on 2 cores)
    .venv/bin/python tests/perf/run_all.py --quick    # smaller sizes, a few minutes
    .venv/bin/python tests/perf/run_all.py --only event_store,sim

Each benchmark runs as its own process (its figures are ratios against a baseline measured
in the same run, because a shared machine is noisy). The table gives the command, the wall
time, the exit status and the benchmark's own summary lines; the full output of each is
kept in --out (default: a temporary folder). Exit 1 if any benchmark failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# name -> (documented arguments, --quick arguments, regex of the lines that carry the figures)
BENCHES: dict[str, tuple[list[str], list[str], str]] = {
    "event_store": ([], ["--events", "200000"], r"ratio|peak memory|events:"),
    "sim": ([], [], r"^concurrency"),
    "provider": ([], ["--calls", "600", "--rounds", "1"], r"^(ideal|direct|stock|provider)\b|calls x"),
    "runner": ([], ["--skip-busy"], r"pytest .* ours|target"),
    "tui": ([], ["--events", "20000", "--rounds", "1"], r"^(first full frame|round \d|engine events|dpo-tui --help|console first frame)"),
    "learning": ([], ["--seeds", "2", "--rollout-seeds", "1"], r"solved|pass@1|accuracy"),
    "gate": ([], ["--comparisons", "1000"], r"^(comparisons|slowest|A/A|target)"),
}


def machine() -> str:
    mem = ""
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=10).stdout.splitlines()[1]
        mem = " ".join(mem.split()[:2])
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return (f"{os.cpu_count()} cores (nproc), {mem}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (figures are noisier)")
    ap.add_argument("--only", default="", help="comma-separated names: " + ",".join(BENCHES))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    ap.add_argument("--out", type=Path, default=None, help="folder for each benchmark's full output")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"run_all: error: unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    rows = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            rows.append((name, "-", 0.0, "missing", []))
            continue
        extra = BENCHES[name][1] if args.quick else BENCHES[name][0]
        cmd = [sys.executable, str(script.relative_to(ROOT)), *extra]
        shown = " ".join([".venv/bin/python", *cmd[1:]])
        print(f"running {shown} ...", flush=True)
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
            code, text = str(res.returncode), res.stdout + res.stderr
        except subprocess.TimeoutExpired as exc:
            code = "timeout"
            text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        secs = time.monotonic() - t0
        (out / f"{name}.txt").write_text(text)
        lines = [ln.strip() for ln in text.splitlines()
                 if re.search(BENCHES[name][2], ln) and not ln.startswith(("dpo-tui:", "{"))][:8]
        rows.append((name, shown, secs, code, lines))
        print(f"  {name}: exit {code} in {secs:.0f} s", flush=True)
    print()
    print(f"{'benchmark':<12} {'exit':>7} {'seconds':>8}  command / figures")
    for name, shown, secs, code, lines in rows:
        print(f"{name:<12} {code:>7} {secs:>8.0f}  {shown}")
        for ln in lines:
            print(f"{'':<30}{ln}")
    print(f"\nfull outputs: {out}")
    return 0 if all(r[3] == "0" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
