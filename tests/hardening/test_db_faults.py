"""Disk and database faults on the real store and the real CLI: disk full while appending
(a 2 MB tmpfs; RLIMIT_FSIZE in a child process where mounting is not allowed), the database
locked by another writer, a second `dpo-tui run` on the same campaign, a WAL left by a
killed process, a truncated database file. Each gets one clear line, no traceback, and no
half-written events (what is there passes `audit`)."""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.events.audit import audit
from dpo_tui.events.store import create_campaign, open_store
from tests.conftest import run_dpo_tui


def one_line_error(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert res.returncode == code, (res.returncode, res.stderr[-800:])
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("dpo-tui: error")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def audit_ok(db: Path) -> int:
    with open_store(db, readonly=True) as store:
        rep = audit(store)
        n = store.count()
    assert rep.ok, rep.problems
    return n


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB file system: a tmpfs (as root), else None (the caller falls back to RLIMIT_FSIZE)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.environ.get("DPO_TUI_NO_TMPFS"):  # exercise the fallback on a machine that can mount
        yield None
        return
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# A child process that appends batches of 10 large notes until the store refuses; prints
# the successful batches and the refusal. With FSIZE set it limits its own file size first.
APPENDER = textwrap.dedent("""
    import os, resource, signal, sys
    from dpo_tui.errors import StoreError
    from dpo_tui.events.store import NewEvent, open_store
    db, fsize = sys.argv[1], int(sys.argv[2])
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    ok = 0
    with open_store(db) as store:
        for i in range(1000):
            try:
                store.append_batch([NewEvent("note.added", {"text": f"{i}/{j} " + os.urandom(20000).hex(),
                                                            "stage": None}, "operator:fill") for j in range(10)])
                ok += 1
            except StoreError as exc:
                print("refused:", exc)
                break
    print("batches", ok)
""")


LIMITED_CLI = textwrap.dedent("""
    import resource, signal, sys
    from dpo_tui.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.exit(main(["note", "--db", sys.argv[2], "--text", "x" * 99_000]))
""")


def test_disk_full_while_appending_refuses_whole_batches_with_one_line_and_audit_passes(tmp_path, small_fs):
    where = small_fs or tmp_path
    db = where / "full.db"
    create_campaign(db, name="disk full", actor="operator:test").close()
    fsize = 0 if small_fs else 2 * 1024 * 1024
    res = subprocess.run([sys.executable, "-c", APPENDER, str(db), str(fsize)], capture_output=True, text=True,
                         timeout=120)
    print(f"\ndisk full via {'a 2 MB tmpfs' if small_fs else 'RLIMIT_FSIZE 2 MB'}: {res.stdout.strip()}")
    assert "Traceback" not in res.stderr, res.stderr
    refused = [ln for ln in res.stdout.splitlines() if ln.startswith("refused:")]
    assert refused and ("disk is full" in refused[0] or "disk I/O" in refused[0] or "too large" in refused[0]), res.stdout
    assert "nothing was written" in refused[0] or "SQLite error" in refused[0], refused[0]
    batches = int(res.stdout.split("batches")[-1])
    assert batches >= 1
    # nothing half-written: every batch of 10 is all there or not at all, and the chain verifies
    n = audit_ok(db)
    assert n == 1 + 10 * batches, (n, batches)
    # the CLI on the full disk: fill what the child's close freed, then one line, exit 2, nothing appended
    filler = where / "filler"
    if small_fs:
        with open(filler, "wb") as fh:
            try:
                for _ in range(64):
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        for _ in range(20):  # the WAL's already allocated pages still take a few notes
            cli = run_dpo_tui("note", "--db", db, "--text", os.urandom(49_000).hex())
            if cli.returncode != 0:
                break
            n += 1
    else:
        cli = subprocess.run([sys.executable, "-c", LIMITED_CLI, str(64 * 1024), str(db)],
                             capture_output=True, text=True, timeout=60)
    one_line_error(cli, 2, str(db), "full")
    assert audit_ok(db) == n
    if small_fs:  # recovery on the spot: free space, carry on
        filler.unlink()
        assert run_dpo_tui("note", "--db", db, "--text", "space freed").returncode == 0
        n += 1
        assert audit_ok(db) == n
    # recovery: free space (here: move the file to a roomy disk) and carry on
    roomy = tmp_path / "moved.db"
    shutil.copy(db, roomy)
    for suffix in ("-wal",):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", f"{roomy}{suffix}")
    assert run_dpo_tui("note", "--db", roomy, "--text", "after recovery").returncode == 0
    assert audit_ok(roomy) == n + 1


def test_a_database_locked_by_another_writer_is_one_line_after_the_wait(tmp_path):
    db = tmp_path / "locked.db"
    create_campaign(db, name="locked", actor="operator:test").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        res = run_dpo_tui("note", "--db", db, "--text", "waits, then gives up")
        one_line_error(res, 2, "locked by another process", "try again")
        readable = run_dpo_tui("replay", "--db", db, "--json")  # readers are not blocked
        assert readable.returncode == 0, readable.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run_dpo_tui("note", "--db", db, "--text", "now it goes").returncode == 0
    assert audit_ok(db) == 2


def test_a_second_run_on_the_same_campaign_is_refused_while_the_first_holds_the_lock(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(demo_plan_path().read_text())
    db = tmp_path / "c.db"
    first = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "budget", "--yes", timeout=120)
    assert first.returncode == 0, first.stderr
    before = audit_ok(db)
    with open(f"{db}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running `dpo-tui run` holds
        res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "split", "--yes")
    one_line_error(res, 2, "another dpo-tui run is writing this campaign")
    assert audit_ok(db) == before  # the refused run appended nothing


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from dpo_tui.events.store import NewEvent, open_store
    store = open_store(sys.argv[1])
    for i in range(50):
        store.append_batch([NewEvent("note.added", {"text": f"note {i}", "stage": None}, "operator:crash")])
    os.kill(os.getpid(), signal.SIGKILL)   # no close, no checkpoint: the events live in the WAL
""")


def test_a_wal_left_by_a_killed_writer_is_recovered_and_a_copy_without_it_is_a_consistent_prefix(tmp_path):
    db = tmp_path / "crashed.db"
    create_campaign(db, name="wal", actor="operator:test").close()
    res = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], capture_output=True, text=True, timeout=60)
    assert res.returncode == -9, res.stderr
    wal = Path(f"{db}-wal")
    assert wal.exists() and wal.stat().st_size > 0, "the killed writer left no WAL"
    both = tmp_path / "copy" / "crashed.db"  # copy db + -wal, as a backup taken after the crash would
    both.parent.mkdir()
    shutil.copy(db, both)
    shutil.copy(wal, f"{both}-wal")
    assert audit_ok(both) == 51
    rep = run_dpo_tui("audit", "--db", both, "--json")
    assert rep.returncode == 0 and '"ok": true' in rep.stdout, rep.stdout
    only_db = tmp_path / "nowal" / "crashed.db"  # the WAL lost: the main file alone, an older prefix
    only_db.parent.mkdir()
    shutil.copy(db, only_db)
    n = audit_ok(only_db)
    assert 1 <= n <= 51
    assert run_dpo_tui("note", "--db", db, "--text", "the original carries on").returncode == 0
    assert audit_ok(db) == 52


@pytest.mark.parametrize("keep", ["header", "odd"])
def test_a_truncated_database_file_is_one_line_and_nothing_is_written(tmp_path, keep):
    db = tmp_path / "t.db"
    with create_campaign(db, name="truncate", actor="operator:test") as store:
        for i in range(300):
            store.append("note.added", {"text": f"note {i} " + "y" * 400, "stage": None}, actor="operator:t")
        store.checkpoint()
    size = db.stat().st_size
    cut = {"zero": 0, "header": 50, "half": size // 2, "odd": size - 1234}[keep]
    with open(db, "r+b") as fh:
        fh.truncate(cut)
    for args in (("audit", "--db", db), ("replay", "--db", db), ("note", "--db", db, "--text", "x")):
        res = run_dpo_tui(*args)
        assert res.returncode in (1, 2), (args, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr, res.stderr
        said = (res.stderr + res.stdout).strip()
        assert said.count("\n") <= 1 and (str(db) in said or "first bad event" in said), said
    assert db.stat().st_size == cut, "a command wrote to the truncated file"
