"""The campaign's append-only event log in a SQLite file (WAL mode).

`create_campaign()` makes a new file atomically (built beside the target, then renamed);
`open_store()` opens an existing one and refuses, in one line naming the file and the
problem, anything that is not a dpo-tui campaign it can read. Appends are transactional
(`BEGIN IMMEDIATE`), so a batch of events from one operator action lands whole or not at
all, and each row carries the hash chain (see chain.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from dpo_tui import __version__
from dpo_tui.errors import InputError, IntegrityError, StoreError
from dpo_tui.events import checkpoint as checkpoints
from dpo_tui.events import migrate
from dpo_tui.events.chain import APPLICATION_ID, GENESIS_HASH, canonical_json, event_hash, has_control_chars
from dpo_tui.events.types import NewerSchemaError, Payload, upcast, validate_new

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
ACTOR_RE = re.compile(r"^(operator:[A-Za-z0-9._@+-]{1,64}|plan|system)$")
_COLUMNS = "seq, campaign_id, type, schema_version, actor, ts, payload, prev_hash, hash"
_REASONS: dict[str, str | None] = {}  # event type -> why it is checkpointed at once (None: it is not)
_UNSEEN = object()


def _batch_reason(prepared: Sequence[tuple]) -> str | None:
    """Why a batch is checkpointed at once (a decision, a stage's end), or None."""
    for ev in prepared:
        reason = _REASONS.get(ev[0], _UNSEEN)
        if reason is _UNSEEN:
            reason = _REASONS[ev[0]] = checkpoints.needs_checkpoint(ev[0])
        if reason is not None:
            return reason
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    payload: Payload | dict[str, Any]
    actor: str


class StoredEvent(NamedTuple):
    """An event as read back: `payload` is upcast to the type's current version.
    (A NamedTuple: immutable and the cheapest record to build a million times on replay.)"""

    seq: int
    campaign_id: str
    type: str
    schema_version: int  # as stored
    actor: str
    ts: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


def check_actor(actor: str) -> str:
    if not ACTOR_RE.match(actor):
        raise InputError(f"actor {actor!r} is not operator:<name> (letters, digits, ._@+-), plan or system")
    return actor


@contextlib.contextmanager
def db_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn SQLite's exceptions into one line naming the file and the problem."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            raise StoreError(f"{path}: database is locked by another process while {doing}; try again when it is done") from None
        if "disk is full" in msg or "disk I/O" in msg:
            raise StoreError(f"{path}: {msg} while {doing}; nothing was written (the transaction rolled back)") from None
        if "readonly" in msg or "read-only" in msg:
            raise StoreError(f"{path}: cannot write ({msg}) while {doing}") from None
        if "unable to open" in msg:
            raise StoreError(f"{path}: cannot open the database file ({msg})") from None
        raise StoreError(f"{path}: SQLite error while {doing}: {msg}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: database file is corrupt or not SQLite ({exc}) while {doing}") from None


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _where(after_seq: int, *, upto_seq: int | None = None, types: Sequence[str] | None = None,
           type_prefixes: Sequence[str] | None = None, actor: str | None = None,
           text: str | None = None) -> tuple[str, list]:
    """The WHERE clause and its parameters for rows() and count()."""
    where, params = "seq > ?", [after_seq]
    if upto_seq is not None:
        where += " AND seq <= ?"
        params.append(upto_seq)
    if types:
        where += f" AND type IN ({','.join('?' * len(types))})"
        params.extend(types)
    if type_prefixes:
        where += " AND (" + " OR ".join("substr(type, 1, ?) = ?" for _ in type_prefixes) + ")"
        for p in type_prefixes:
            params.extend((len(p), p))
    if actor:
        where += " AND instr(actor, ?) > 0"
        params.append(actor)
    if text:  # LIKE ignores ASCII case, as lower() does, and scans ~3x faster than instr(lower(...))
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where += " AND (payload LIKE ? ESCAPE '\\' OR instr(type, ?) > 0)"
        params.extend((f"%{escaped}%", text.lower()))
    return where, params


class EventStore:
    """One open campaign file. Thread-safe for appends; use `read()` to fold from any seq."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool,
                 clock: Callable[[], datetime] = utc_now, checkpoint_every: int | None = None) -> None:
        self.path = path
        self.readonly = readonly
        self._conn = conn
        self._clock = clock
        self._lock = threading.RLock()  # a listener may append (re-entrant)
        self._listeners: list[Callable[[list[StoredEvent]], None]] = []
        self.campaign_id = self._first_campaign_id()
        self.checkpoint_every = checkpoints.checkpoint_every() if checkpoint_every is None else checkpoint_every
        self._key: bytes | None = None  # loaded (or created) by the first append, never by a reader
        self._last_checkpoint: tuple[int, int] | None = None  # (head seq when known, last checkpoint seq)

    # -- reading -----------------------------------------------------------------------

    def _first_campaign_id(self) -> str:
        with db_errors(self.path, "reading the first event"):
            row = self._conn.execute("SELECT campaign_id, type FROM event WHERE seq = 1").fetchone()
        if row is None:
            raise StoreError(f"{self.path}: the campaign log is empty (no campaign.created event)")
        if row[1] != "campaign.created":
            raise IntegrityError(f"{self.path}: event 1 is {row[1]}, not campaign.created", seq=1, rule="first-event")
        return row[0]

    def head(self) -> tuple[int, str]:
        with db_errors(self.path, "reading the head of the log"):
            row = self._conn.execute("SELECT seq, hash FROM event ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def count(self, after_seq: int = 0, **match: Any) -> int:
        """Events after `after_seq`, all or those `match` keeps (the keywords of rows(): what
        SQLite counts without handing a payload to Python)."""
        where, params = _where(after_seq, **match)
        with db_errors(self.path, "counting events"):
            return self._conn.execute(f"SELECT count(*) FROM event WHERE {where}", params).fetchone()[0]

    def rows(self, after_seq: int = 0, *, newest_first: bool = False, batch: int = 1000,
             **match: Any) -> Iterator[tuple]:
        """Raw rows after `after_seq` in seq order, or newest first, fetched in batches
        (constant memory), all or those `match` keeps: `upto_seq` (those at or before it),
        `types` (those types), `type_prefixes` (a type starting with one of them), `actor` (a
        part of the actor, case kept), `text` (in the type or payload, ignoring ASCII case:
        SQLite's LIKE, its % and _ escaped)."""
        where, params = _where(after_seq, **match)
        with db_errors(self.path, "reading events"):
            cur = self._conn.execute(
                f"SELECT {_COLUMNS} FROM event WHERE {where} ORDER BY seq{' DESC' if newest_first else ''}", params)
            while chunk := cur.fetchmany(batch):
                yield from chunk

    def read(self, after_seq: int = 0, *, verify: bool = True,
             prev: tuple[int, str] | None = None, types: Sequence[str] | None = None) -> Iterator[StoredEvent]:
        """Events after `after_seq`, upcast; with `verify`, the chain is checked as it goes
        and the first bad event raises IntegrityError naming its seq. `types` (unverified
        reads only: the chain needs every row) keeps those types, through the type index."""
        if types and verify:
            raise ValueError("read(types=...) cannot verify the chain (it needs every row): pass verify=False")
        if types:
            for row in self.rows(after_seq, types=types):
                yield self._decode(*row)
            return
        if prev is None:
            prev = (0, GENESIS_HASH) if after_seq == 0 else self._hash_at(after_seq)
        expect_seq, prev_hash = prev[0] + 1, prev[1]
        for seq, cid, type_, version, actor, ts, text, row_prev, row_hash in self.rows(after_seq):
            if verify:
                if seq != expect_seq:
                    raise IntegrityError(f"{self.path}: event {expect_seq} is missing (next stored seq is {seq})",
                                         seq=expect_seq, rule="seq-order")
                if row_prev != prev_hash:
                    raise IntegrityError(f"{self.path}: event {seq}: prev_hash does not match event {seq - 1}'s hash",
                                         seq=seq, rule="prev-hash")
                if event_hash(row_prev, seq, cid, type_, version, actor, ts, text) != row_hash:
                    raise IntegrityError(f"{self.path}: event {seq} ({type_}): hash mismatch, the row was changed after it was written",
                                         seq=seq, rule="hash")
                if cid != self.campaign_id:
                    raise IntegrityError(f"{self.path}: event {seq}: campaign id {cid} differs from the log's {self.campaign_id}",
                                         seq=seq, rule="campaign-id")
                expect_seq, prev_hash = seq + 1, row_hash
            yield self._decode(seq, cid, type_, version, actor, ts, text, row_prev, row_hash)

    def _decode(self, seq, cid, type_, version, actor, ts, text, row_prev, row_hash) -> StoredEvent:
        try:
            payload = json.loads(text)
        except (ValueError, TypeError):
            raise IntegrityError(f"event {seq} ({type_}): payload is not valid JSON", seq=seq, rule="payload-json") from None
        if not isinstance(payload, dict):
            raise IntegrityError(f"event {seq} ({type_}): payload is not a JSON object", seq=seq, rule="payload-json")
        try:
            _, payload = upcast(type_, version, payload)
        except NewerSchemaError as exc:
            raise StoreError(f"{self.path}: event {seq}: {exc}") from None
        return StoredEvent(seq, cid, type_, version, actor, ts, payload, row_prev, row_hash)

    def trigger_names(self) -> set[str]:
        """The triggers on the event table (audit checks the append-only ones are there)."""
        with db_errors(self.path, "reading the schema"):
            rows = self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'event'").fetchall()
        return {r[0] for r in rows}

    def event_at(self, seq: int) -> StoredEvent:
        """One event by seq (not chain-verified on its own: the fold that found it was)."""
        with db_errors(self.path, "reading an event"):
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM event WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no event {seq}")
        return self._decode(*row)

    def _hash_at(self, seq: int) -> tuple[int, str]:
        with db_errors(self.path, "reading events"):
            row = self._conn.execute("SELECT hash FROM event WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no event {seq}")
        return seq, row[0]

    # -- writing -----------------------------------------------------------------------

    def subscribe(self, listener: Callable[[list[StoredEvent]], None]) -> None:
        """Call `listener(events)` after each committed append (the live fold)."""
        self._listeners.append(listener)

    def append(self, type_: str, payload: Payload | dict[str, Any], *, actor: str) -> StoredEvent:
        return self.append_batch([NewEvent(type_, payload, actor)])[0]

    def append_batch(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Append all of `events` in one transaction, or none of them (with any checkpoint
        they call for: see checkpoint.py). Returns the caller's events, without checkpoints."""
        prepared = [self._prepare(ev) for ev in events]
        if not prepared:
            return []
        return self._append(prepared, seal=None)

    def seal(self, reason: str = "seal") -> StoredEvent | None:
        """Checkpoint the head now (a stage's end), unless it is already a checkpoint."""
        return (self._append([], seal=reason) or [None])[0]

    def _audit_key(self) -> bytes:
        if self._key is None:
            self._key = checkpoints.load_or_create_key()
        return self._key

    def _append(self, prepared: list[tuple[str, int, str, dict[str, Any], str]], *,
                seal: str | None) -> list[StoredEvent]:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; nothing can be appended")
        key = self._audit_key()
        ts = format_ts(self._clock())
        every, cid = self.checkpoint_every, self.campaign_id
        with self._lock, db_errors(self.path, "appending events"):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT seq, hash, type FROM event ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev, head_type = row if row else (0, GENESIS_HASH, "")
                if self._last_checkpoint is not None and self._last_checkpoint[0] == seq:
                    last_cp = self._last_checkpoint[1]
                else:  # first append, or another writer appended since: ask the log (type is indexed)
                    last_cp = conn.execute("SELECT max(seq) FROM event WHERE type = ?",
                                           (checkpoints.CHECKPOINT_TYPE,)).fetchone()[0] or 0
                rows: list[tuple] = []
                stored: list[StoredEvent] = []
                added = 0  # checkpoints among `stored`

                def add_checkpoint(reason: str) -> None:  # rare: not on the per-event path
                    nonlocal seq, prev, last_cp, added
                    payload = checkpoints.checkpoint_payload(key, cid, seq, prev, every=every, reason=reason)
                    text = canonical_json(payload)
                    seq += 1
                    digest = event_hash(prev, seq, cid, checkpoints.CHECKPOINT_TYPE, 1, "system", ts, text)
                    rows.append((seq, cid, checkpoints.CHECKPOINT_TYPE, 1, "system", ts, text, prev, digest))
                    stored.append(StoredEvent(seq, cid, checkpoints.CHECKPOINT_TYPE, 1, "system", ts, payload,
                                              prev, digest))
                    prev, last_cp, added = digest, seq, added + 1

                for type_, version, actor, payload, text in prepared:
                    seq += 1
                    digest = event_hash(prev, seq, cid, type_, version, actor, ts, text)
                    rows.append((seq, cid, type_, version, actor, ts, text, prev, digest))
                    stored.append(StoredEvent(seq, cid, type_, version, actor, ts, payload, prev, digest))
                    prev = digest
                    if seq - last_cp >= every:
                        add_checkpoint("interval")
                reason = seal if seal is not None and head_type != checkpoints.CHECKPOINT_TYPE and seq else None
                reason = reason or _batch_reason(prepared)
                if reason and last_cp != seq:
                    add_checkpoint(reason)
                if rows:
                    conn.executemany(f"INSERT INTO event ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._last_checkpoint = (seq, last_cp)
            # folded under the same lock, so appends from two threads (the eval's endpoint
            # meter beside a provisioning poll) fold in seq order, never interleaved
            if stored:
                for listener in self._listeners:
                    listener(stored)
        if not prepared:
            return stored
        return [e for e in stored if e.type != checkpoints.CHECKPOINT_TYPE] if added else stored

    def _prepare(self, ev: NewEvent) -> tuple[str, int, str, dict[str, Any], str]:
        check_actor(ev.actor)
        version, payload = validate_new(ev.type, ev.payload)
        try:
            text = canonical_json(payload)
        except ValueError as exc:
            raise InputError(f"{ev.type} payload cannot be stored as JSON: {exc}") from None
        return ev.type, version, ev.actor, payload, text

    # -- lifecycle ---------------------------------------------------------------------

    def checkpoint(self) -> None:
        with db_errors(self.path, "checkpointing the WAL"):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _inspect(path: Path, conn: sqlite3.Connection) -> str:
    """Return the file's schema revision, or raise StoreError saying what the file is."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    if app_id != APPLICATION_ID or "alembic_version" not in tables or "event" not in tables:
        shown = ", ".join(tables[:8]) or "none"
        raise StoreError(f"{path}: a SQLite database but not a dpo-tui campaign (application_id {app_id}, tables: {shown})")
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if row is None:
        raise StoreError(f"{path}: campaign schema version is missing (alembic_version is empty)")
    head, known = migrate.known_revisions()
    if row[0] not in known:
        raise StoreError(f"{path}: schema revision {row[0]} is newer than this dpo-tui {__version__} knows "
                         f"(head {head}); upgrade dpo-tui to open it")
    return row[0]


def open_store(path: str | os.PathLike[str], *, readonly: bool = False,
               clock: Callable[[], datetime] = utc_now) -> EventStore:
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise StoreError(f"{path}: no such campaign file (create one with: dpo-tui init --db {path} --name NAME)")
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a campaign file")
    with open(path, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        what = "an empty file" if not header else "not a SQLite database"
        raise StoreError(f"{path}: {what}, not a dpo-tui campaign")
    with db_errors(path, "opening the campaign"):
        conn = _connect(path, readonly=readonly)
        try:
            revision = _inspect(path, conn)
            if revision != migrate.known_revisions()[0]:
                if readonly:
                    raise StoreError(f"{path}: schema {revision} needs an upgrade; open it once without --readonly")
                conn.close()
                migrate.upgrade(path)
                conn = _connect(path, readonly=False)
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            return EventStore(path, conn, readonly=readonly, clock=clock)
        except BaseException:
            conn.close()
            raise


def create_campaign(path: str | os.PathLike[str], *, name: str, actor: str, force: bool = False,
                    clock: Callable[[], datetime] = utc_now, campaign_id: str | None = None) -> EventStore:
    """Create a campaign file holding its `campaign.created` event, atomically."""
    path = Path(path).expanduser().resolve()
    check_actor(actor)
    if not name.strip() or has_control_chars(name):
        raise InputError("campaign name must be non-empty text without control characters")
    if path.exists() and not force:
        raise InputError(f"{path}: already exists; refusing to overwrite it (pass --force to replace it)")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such directory")
    checkpoints.load_or_create_key()  # the first command that appends makes the operator's audit key
    campaign_id = campaign_id or uuid.uuid4().hex
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
    try:
        with db_errors(tmp, "creating the campaign"):
            migrate.upgrade(tmp)
            conn = _connect(tmp, readonly=False)
            conn.execute("PRAGMA journal_mode = WAL")
            # The first event is written before the store exists (the store reads its id from it).
            ts = format_ts(clock())
            version, payload = validate_new("campaign.created", {
                "campaign_id": campaign_id, "name": name.strip(), "created_at": ts, "dpo_tui_version": __version__,
                "checkpointed": True})
            text = canonical_json(payload)
            digest = event_hash(GENESIS_HASH, 1, campaign_id, "campaign.created", version, actor, ts, text)
            conn.execute(f"INSERT INTO event ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                         (1, campaign_id, "campaign.created", version, actor, ts, text, GENESIS_HASH, digest))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return open_store(path, clock=clock)
