"""One writer per campaign: the lock file next to the database (stdlib only, so the console
takes it before anything heavy is imported)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from dpo_tui.errors import StoreError


@contextlib.contextmanager
def campaign_lock(db: Path) -> Iterator[None]:
    """One writer per campaign: a second run on the same file is refused, not interleaved."""
    lock_path = db.with_name(f"{db.name}.lock")
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StoreError(f"{db}: another dpo-tui run is writing this campaign (lock {lock_path}); "
                         f"wait for it, or open it with `dpo-tui tui --db {db} --readonly`") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
