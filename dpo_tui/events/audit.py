"""`audit`: verify a campaign log without trusting anything in it.

Checks, each reported with its rule name:
  seq-order       seq runs 1, 2, 3, ... without gaps
  prev-hash       each event names its predecessor's hash (64 zeros for the first)
  hash            each event's hash matches its stored fields
  campaign-id     every row belongs to the campaign of event 1
  first-event     event 1 is campaign.created
  actor, ts       well-formed actor and UTC timestamp
  payload-json    the payload is a JSON object
  schema-version  the payload's version is one this dpo-tui can read
  payload-schema  the (upcast) payload fits its type
  append-only     the UPDATE and DELETE triggers are in place
  ... plus every invariant that stages register with `fold.invariant`.
Unknown event types are warnings, not failures: a newer dpo-tui may have written them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from dpo_tui.events.chain import GENESIS_HASH, event_hash
from dpo_tui.events.fold import apply, invariants_for, new_state
from dpo_tui.events.store import ACTOR_RE, EventStore, StoredEvent
from dpo_tui.events.types import NewerSchemaError, spec_for, upcast, validate_stored

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
MAX_PROBLEMS = 1000


@dataclass
class Problem:
    seq: int | None
    rule: str
    message: str


@dataclass
class AuditReport:
    events: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def to_json(self) -> dict:
        return {"ok": self.ok, "first_bad_seq": self.first_bad_seq, "events": self.events,
                "head_hash": self.head_hash, "problems": [asdict(p) for p in self.problems],
                "warnings": [asdict(p) for p in self.warnings]}


def _check_triggers(store: EventStore, report: AuditReport) -> None:
    names = store.trigger_names()
    for name in ("event_no_update", "event_no_delete"):
        if name not in names:
            report.problems.append(Problem(None, "append-only", f"trigger {name} is missing: the log could be edited"))


def audit(store: EventStore) -> AuditReport:
    report = AuditReport()
    _check_triggers(store, report)
    state = new_state()
    expect_seq, prev_hash = 1, GENESIS_HASH

    def problem(seq: int | None, rule: str, message: str) -> None:
        if len(report.problems) < MAX_PROBLEMS:
            report.problems.append(Problem(seq, rule, message))

    for row in store.rows():
        seq, cid, type_, version, actor, ts, text, row_prev, row_hash = row
        report.events += 1
        if not _row_types_ok(row):  # a damaged file can yield NULLs or wrong types: a finding, not a crash
            problem(seq if isinstance(seq, int) else None, "row",
                    "a column is NULL or of the wrong type (a damaged file? restore it from a copy)")
            expect_seq = (seq + 1) if isinstance(seq, int) else expect_seq + 1
            prev_hash = row_hash if isinstance(row_hash, str) else prev_hash
            continue
        if seq != expect_seq:
            problem(seq, "seq-order", f"expected seq {expect_seq}, found {seq}")
        if row_prev != prev_hash:
            problem(seq, "prev-hash", f"prev_hash does not match the hash of event {expect_seq - 1}")
        if event_hash(row_prev, seq, cid, type_, version, actor, ts, text) != row_hash:
            problem(seq, "hash", f"{type_}: stored hash does not match the row; it was changed after it was written")
        if cid != store.campaign_id:
            problem(seq, "campaign-id", f"belongs to campaign {cid}, not {store.campaign_id}")
        if seq == 1 and type_ != "campaign.created":
            problem(seq, "first-event", f"event 1 is {type_}, not campaign.created")
        if not ACTOR_RE.match(actor):
            problem(seq, "actor", f"actor {actor!r} is not operator:<name>, plan or system")
        if not TS_RE.match(ts):
            problem(seq, "ts", f"timestamp {ts!r} is not UTC ISO 8601 with microseconds")
        expect_seq, prev_hash = seq + 1, row_hash
        report.head_hash = row_hash
        event = _decode(seq, cid, type_, version, actor, ts, text, row_prev, row_hash, problem, report)
        if event is None:
            continue
        try:
            apply(state, event)
        except Exception as exc:  # a payload that validates but breaks a stage's fold
            problem(seq, "fold", f"{type_}: the fold failed: {type(exc).__name__}: {exc}")
            continue
        for rule, check in invariants_for(type_):
            message = check(state, event)
            if message:
                problem(seq, rule, message)
    return report


def _row_types_ok(row: tuple) -> bool:
    seq, cid, type_, version, actor, ts, text, row_prev, row_hash = row
    return (isinstance(seq, int) and isinstance(version, int)
            and all(isinstance(v, str) for v in (cid, type_, actor, ts, text, row_prev, row_hash)))


def _decode(seq, cid, type_, version, actor, ts, text, row_prev, row_hash, problem, report) -> StoredEvent | None:
    try:
        payload = json.loads(text)
    except ValueError:
        problem(seq, "payload-json", f"{type_}: payload is not valid JSON")
        return None
    if not isinstance(payload, dict):
        problem(seq, "payload-json", f"{type_}: payload is not a JSON object")
        return None
    if spec_for(type_) is None:
        report.warnings.append(Problem(seq, "unknown-type", f"{type_} is not known to this dpo-tui (written by a newer one?)"))
    try:
        _, payload = upcast(type_, version, payload)
    except NewerSchemaError as exc:
        problem(seq, "schema-version", str(exc))
        return None
    error = validate_stored(type_, payload)
    if error:
        problem(seq, "payload-schema", f"{type_}: {error}")
        return None
    return StoredEvent(seq, cid, type_, version, actor, ts, payload, row_prev, row_hash)
