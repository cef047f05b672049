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
  checkpoint      each chain.checkpoint names the event just before it and that event's hash;
                  with the operator's key its HMAC verifies; every decision.* event is
                  under a checkpoint, and no more than `every` events pass without one
  anchor          (with --anchor) the log still holds the anchored prefix: the event at the
                  anchor's seq has the anchor's hash (and campaign id, and MAC under the key)
  ... plus every invariant that stages register with `fold.invariant` (the re-derivations
  among them: gate-derivation, funnel-derivation, spend-derivation, spend-by-stage,
  export-derivation).
Unknown event types are warnings, not failures: a newer dpo-tui may have written them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dpo_tui.events import checkpoint as checkpoints
from dpo_tui.events.chain import GENESIS_HASH, event_hash
from dpo_tui.events.fold import Note, apply, invariants_for, new_state
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
class Checkpoints:
    """What audit could check of the keyed checkpoints."""

    key_id: str | None = None  # the key audit had (None: no key at its path)
    count: int = 0
    verified: int = 0
    other_key: int = 0  # made under another key than the one audit had: not verified
    last_seq: int | None = None  # the last event a checkpoint covers

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AuditReport:
    events: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    anchor: dict | None = None  # the anchor checked, when one was given
    state: Any = field(default=None, repr=False, compare=False)  # the audit's own fold (not in to_json)

    @property
    def keyed(self) -> bool:
        """True when every checkpoint in the log verified under the operator's key."""
        c = self.checkpoints
        return c.key_id is not None and c.count > 0 and c.verified == c.count

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def limits(self) -> list[str]:
        """What this audit could not rule out, in plain words."""
        out = []
        if not self.keyed:
            why = ("no audit key at its path" if self.checkpoints.key_id is None else
                   "no checkpoint in the log" if not self.checkpoints.count else
                   f"{self.checkpoints.other_key} checkpoint(s) made under another key")
            out.append(f"not keyed ({why}): a history rewritten and re-hashed with the published formula "
                       "cannot be ruled out")
        elif self.checkpoints.last_seq is not None and self.checkpoints.last_seq < self.events:
            out.append(f"events after seq {self.checkpoints.last_seq} (the last checkpoint) are covered by the "
                       "hash chain only")
        if self.anchor is None:
            out.append("no anchor: a missing tail (the newest events deleted) cannot be ruled out")
        return out

    def to_json(self) -> dict:
        return {"ok": self.ok, "first_bad_seq": self.first_bad_seq, "events": self.events,
                "head_hash": self.head_hash, "keyed": self.keyed, "checkpoints": self.checkpoints.to_json(),
                "anchor": self.anchor, "cannot_rule_out": self.limits(),
                "problems": [asdict(p) for p in self.problems],
                "warnings": [asdict(p) for p in self.warnings]}


def _check_triggers(store: EventStore, report: AuditReport) -> None:
    names = store.trigger_names()
    for name in ("event_no_update", "event_no_delete"):
        if name not in names:
            report.problems.append(Problem(None, "append-only", f"trigger {name} is missing: the log could be edited"))


class _CheckpointCheck:
    """Checkpoints as audit meets them: each verified at its own seq, and the log's coverage."""

    def __init__(self, report: AuditReport, key: bytes | None, campaign_id: str, problem) -> None:
        self.report, self.key, self.cid, self.problem = report, key, campaign_id, problem
        self.key_id = checkpoints.key_id(key) if key is not None else None
        report.checkpoints.key_id = self.key_id
        self.last_cp, self.every = 0, checkpoints.DEFAULT_EVERY
        self.uncovered: int | None = None  # the first decision not yet under a checkpoint
        # coverage (a checkpoint after every decision, none missing) is required of a log its
        # campaign.created says was checkpointed, and of an older log from its first checkpoint on
        self.required = False

    def event(self, seq: int, type_: str, payload: dict) -> None:
        if seq == 1 and type_ == "campaign.created":
            self.required = bool(payload.get("checkpointed"))
        if self.required and checkpoints.needs_checkpoint(type_) == "decision" and self.uncovered is None:
            self.uncovered = seq

    def checkpoint(self, seq: int, row_prev: str, payload: dict) -> None:
        c = self.report.checkpoints
        c.count += 1
        covered, head, every = payload["seq"], payload["head_hash"], payload["every"]
        if covered != seq - 1 or head != row_prev:
            self.problem(seq, "checkpoint", f"the checkpoint names event {covered} with hash {head[:16]}, but the "
                                            f"event before it is {seq - 1} with hash {row_prev[:16]}: the history "
                                            "before it was rewritten")
        elif self.key is not None and payload["key_id"] == self.key_id:
            if checkpoints.verify_mac(self.key, self.cid, covered, head, payload["mac"]):
                c.verified += 1
            else:
                self.problem(seq, "checkpoint", f"the checkpoint's HMAC does not verify under key {self.key_id}: "
                                                f"the history up to seq {covered} was rewritten (or the checkpoint forged)")
        elif self.key is not None:
            c.other_key += 1
            self.report.warnings.append(Problem(seq, "checkpoint", f"made under key {payload['key_id']}, not the key "
                                                                   f"at hand ({self.key_id}): not verified"))
        if self.required and seq - self.last_cp - 1 > every:
            self.problem(seq, "checkpoint", f"{seq - self.last_cp - 1} events since the previous checkpoint (at seq "
                                            f"{self.last_cp}), more than the writer's interval {every}: checkpoints "
                                            "were removed")
        self.last_cp, self.every, self.uncovered, self.required = seq, every, None, True
        c.last_seq = covered

    def end(self, last_seq: int) -> None:
        if not self.required:
            return
        if self.uncovered is not None:
            self.problem(self.uncovered, "checkpoint", "a decision with no checkpoint after it (the writer checkpoints "
                                                       "every decision in its own transaction): checkpoints were removed")
        if last_seq - self.last_cp > self.every:
            self.problem(last_seq, "checkpoint", f"{last_seq - self.last_cp} events after the last checkpoint (seq "
                                                 f"{self.last_cp}), more than the interval {self.every}: checkpoints "
                                                 "were removed")


def _check_anchor(report: AuditReport, anchor: dict, key: bytes | None, campaign_id: str,
                  found: tuple[int, str] | None, problem) -> None:
    seq = anchor["seq"]
    report.anchor = {"seq": seq, "head_hash": anchor["head_hash"], "mac_verified": None}
    if anchor["campaign_id"] != campaign_id:
        problem(seq, "anchor", f"the anchor is of campaign {anchor['campaign_id']}, not {campaign_id}")
        return
    if found is None:
        problem(seq, "anchor", f"the log ends at seq {report.events}, before the anchor's seq {seq}: "
                               f"its newest events were deleted")
        return
    if found[1] != anchor["head_hash"]:
        problem(seq, "anchor", f"event {seq} has hash {found[1][:16]}, not the anchor's {anchor['head_hash'][:16]}: "
                               "the history up to it is not the one anchored")
        return
    if anchor.get("checkpoint_mac") and key is not None:
        ok = checkpoints.verify_mac(key, campaign_id, seq, anchor["head_hash"], anchor["checkpoint_mac"])
        report.anchor["mac_verified"] = ok
        if not ok:
            problem(seq, "anchor", "the anchor's checkpoint_mac does not verify under the audit key: it was not "
                                   "made with this key")


def audit(store: EventStore, *, key: bytes | None = None, anchor: dict | None = None) -> AuditReport:
    """Check the log. `key`: the operator's audit key (None: checkpoints are checked for
    structure only); `anchor`: a parsed anchor file whose prefix the log must still hold."""
    report = AuditReport()
    _check_triggers(store, report)
    state = new_state()
    expect_seq, prev_hash = 1, GENESIS_HASH

    def problem(seq: int | None, rule: str, message: str) -> None:
        if len(report.problems) < MAX_PROBLEMS:
            report.problems.append(Problem(seq, rule, message))

    cps = _CheckpointCheck(report, key, store.campaign_id, problem)
    anchored: tuple[int, str] | None = None
    last_seq = 0

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
        expect_seq, prev_hash, last_seq = seq + 1, row_hash, seq
        report.head_hash = row_hash
        if anchor is not None and seq == anchor["seq"]:
            anchored = (seq, row_hash)
        event = _decode(seq, cid, type_, version, actor, ts, text, row_prev, row_hash, problem, report)
        if event is None:
            continue
        if type_ == checkpoints.CHECKPOINT_TYPE:
            cps.checkpoint(seq, row_prev, event.payload)
        else:
            cps.event(seq, type_, event.payload)
        try:
            apply(state, event)
        except Exception as exc:  # a payload that validates but breaks a stage's fold
            problem(seq, "fold", f"{type_}: the fold failed: {type(exc).__name__}: {exc}")
            continue
        for rule, check in invariants_for(type_):
            message = check(state, event)
            if isinstance(message, Note):
                report.warnings.append(Problem(seq, rule, str(message)))
            elif message:
                problem(seq, rule, message)
    cps.end(last_seq)
    report.state = state
    if anchor is not None:
        _check_anchor(report, anchor, key, store.campaign_id, anchored, problem)
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
