"""Event store throughput against raw sqlite3, measured in the same run.

    python tests/perf/bench_event_store.py [--events 1000000]

Appends N small events (operator notes of realistic size) in batches of mixed sizes
(1-50 events, as one operator action or one rollout step appends them), then replays
them. Baselines, same rows, same batches, same machine, same run:
  raw insert  sqlite3 executemany of the same column values (json.dumps included) into a
              plain table with the same columns, no validation, no hashing, no triggers
  raw read    SELECT of every row + json.loads of each payload
Ours includes pydantic validation, canonical JSON, the sha256 chain, the keyed checkpoints
(a chain.checkpoint every DPO_TUI_CHECKPOINT_EVERY events, default 1000, under an audit key
made in the temporary folder, never the developer's), the append-only triggers, the type
index, and on replay the chain verification, upcasting and the fold.
Replay's peak memory is measured in a child process (VmHWM).
Targets (issue 2): append >= 30% of raw insert, replay >= 30% of raw read, replay of 1M
events under 500 MB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dpo_tui.events.store import NewEvent, create_campaign, open_store

BATCH_SIZES = [1, 1, 2, 3, 5, 8, 10, 20, 50]


def make_batches(n: int, seed: int = 7) -> list[list[tuple[str, dict]]]:
    rng = random.Random(seed)
    batches, made = [], 0
    while made < n:
        size = min(rng.choice(BATCH_SIZES), n - made)
        batches.append([(rng.choice(["system", "plan", "operator:alice"]),
                         {"text": f"rollout {made + i} step {rng.randrange(10)} ok", "stage": "rollouts"})
                        for i in range(size)])
        made += size
    return batches


def bench_raw_insert(path: Path, batches) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE event (seq INTEGER PRIMARY KEY, campaign_id TEXT, type TEXT, schema_version INT,"
                 " actor TEXT, ts TEXT, payload TEXT, prev_hash TEXT, hash TEXT)")
    seq, t0 = 0, time.perf_counter()
    for batch in batches:
        rows = []
        for actor, payload in batch:
            seq += 1
            rows.append((seq, "c", "note.added", 1, actor, "2026-01-01T00:00:00.000000Z", json.dumps(payload), "", ""))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO event VALUES (?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def bench_ours_append(path: Path, batches) -> float:
    store = create_campaign(path, name="bench", actor="system")
    t0 = time.perf_counter()
    for batch in batches:
        store.append_batch([NewEvent("note.added", payload, actor) for actor, payload in batch])
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def bench_raw_read(path: Path) -> tuple[float, int]:
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    n = 0
    for row in conn.execute("SELECT seq, campaign_id, type, schema_version, actor, ts, payload, prev_hash, hash "
                            "FROM event ORDER BY seq"):
        json.loads(row[6])
        n += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, n


def peak_rss_mb() -> float:
    """This process image's peak resident memory. VmHWM starts fresh at execve, unlike
    getrusage's ru_maxrss, which a child inherits from the parent that spawned it."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replay_child(path: str) -> None:
    from dpo_tui.events.fold import fold

    with open_store(path, readonly=True) as store:
        t0 = time.perf_counter()
        state = fold(store.read(verify=True))
        elapsed = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": elapsed, "events": state.events, "peak_mb": peak_mb}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--replay-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay_child:
        replay_child(args.replay_child)
        return 0
    n = args.events
    batches = make_batches(n)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DPO_TUI_AUDIT_KEY_FILE"] = str(Path(tmp, "audit.key"))  # never the real ~/.config key
        raw_db, our_db = Path(tmp, "raw.db"), Path(tmp, "ours.db")
        raw_ins = bench_raw_insert(raw_db, batches)
        ours_ins = bench_ours_append(our_db, batches)
        raw_rd, rows = bench_raw_read(our_db)
        child = subprocess.run([sys.executable, __file__, "--replay-child", str(our_db)],
                               capture_output=True, text=True, check=True)
        rep = json.loads(child.stdout)
        conn = sqlite3.connect(our_db)
        checkpoints = conn.execute("SELECT count(*) FROM event WHERE type = 'chain.checkpoint'").fetchone()[0]
        conn.close()
        assert rep["events"] == rows == n + 1 + checkpoints and checkpoints >= n // 1001, (rep, rows, checkpoints)
        size_mb = os.path.getsize(our_db) / 2**20
    rates = {  # append: the caller's events per second (its checkpoints ride along in the same time)
        "raw_insert_eps": n / raw_ins, "append_eps": n / ours_ins,
        "raw_read_eps": rows / raw_rd, "replay_eps": rep["events"] / rep["seconds"],
    }
    append_ratio = rates["append_eps"] / rates["raw_insert_eps"]
    replay_ratio = rates["replay_eps"] / rates["raw_read_eps"]
    print(f"events: {n:,} in {len(batches):,} batches (mean {n / len(batches):.1f}/batch), plus {checkpoints:,} "
          f"checkpoints; db {size_mb:.0f} MB")
    print(f"raw sqlite3 insert : {rates['raw_insert_eps']:>10,.0f} events/s")
    print(f"dpo-tui append     : {rates['append_eps']:>10,.0f} events/s  ratio {append_ratio:.2f} (target >= 0.30)")
    print(f"raw SELECT + loads : {rates['raw_read_eps']:>10,.0f} events/s")
    print(f"dpo-tui replay     : {rates['replay_eps']:>10,.0f} events/s  ratio {replay_ratio:.2f} (target >= 0.30)")
    print(f"replay peak memory : {rep['peak_mb']:.0f} MB (target < 500 MB)")
    ok = append_ratio >= 0.30 and replay_ratio >= 0.30 and rep["peak_mb"] < 500
    print(json.dumps({"events": n, "checkpoints": checkpoints, **{k: round(v) for k, v in rates.items()}, "append_ratio": round(append_ratio, 3),
                      "replay_ratio": round(replay_ratio, 3), "replay_peak_mb": round(rep["peak_mb"]), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
