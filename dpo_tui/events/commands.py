"""CLI commands over the event log: init, note, replay, audit, anchor, events."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from dpo_tui.errors import EXIT_CHECK_FAILED, EXIT_OK, InputError

# The store, the audit and the checkpoint key are imported inside each command, not here:
# `dpo-tui --help` and every other command then start without SQLAlchemy and Alembic.


def operator_actor(name: str | None) -> str:
    """`operator:<name>`, from --actor or the login name."""
    if name is None:
        try:
            name = getpass.getuser()
        except Exception:  # no login name in some containers
            name = "unknown"
        name = re.sub(r"[^A-Za-z0-9._@+-]", "_", name)[:64] or "unknown"
    return name if name.startswith("operator:") else f"operator:{name}"


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def cmd_init(args: argparse.Namespace) -> int:
    from dpo_tui.events.campaign import Campaign

    with Campaign.create(args.db, name=args.name, actor=operator_actor(args.actor), force=args.force) as c:
        info = c.state.to_json()["campaign"]
        print(f"created campaign {info['name']!r} ({info['id']}) in {c.store.path}")
    return EXIT_OK


def cmd_note(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.decisions import add_note, check_note  # the service the console's notes go through
    from dpo_tui.events.campaign import Campaign

    check_note(args.text)
    with Campaign.open(args.db) as c:
        actor = operator_actor(args.actor)
        seq = add_note(c, args.text, stage=args.stage, actor=actor)
        print(f"note added as event {seq} by {actor}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from dpo_tui.events.campaign import Campaign

    with Campaign.open(args.db, readonly=True) as c:
        state = c.state.to_json()
    if args.json:
        _print_json(state)
        return EXIT_OK
    camp = state["campaign"]
    print(f"campaign   {camp['name']} ({camp['id']})")
    print(f"created    {camp['created_at']} by {camp['created_by']}")
    print(f"events     {state['events']}  head {state['head_hash'][:16]}")
    spend = state["spend"]
    stages = ", ".join(f"{k} ${v:.4f}" for k, v in spend["by_stage"].items()) or "nothing yet"
    print(f"spend      ${spend['total_usd']:.4f} ({stages})")
    print(f"notes      {state['notes']['count']}")
    for note in state["notes"]["recent"][-5:]:
        print(f"  #{note['seq']} {note['ts']} {note['actor']}: {note['text']}")
    if state["unknown_types"]:
        print(f"unknown    {state['unknown_types']} (kept, not folded: written by a newer dpo-tui?)")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from dpo_tui.events import checkpoint as checkpoints
    from dpo_tui.events.anchor import read_anchor
    from dpo_tui.events.audit import audit
    from dpo_tui.events.store import open_store

    anchor = read_anchor(args.anchor) if args.anchor else None
    key = checkpoints.load_key()  # never created here: audit only reads
    with open_store(args.db, readonly=True) as store:
        report = audit(store, key=key, anchor=anchor)
    if args.json:
        _print_json(report.to_json())
    else:
        for w in report.warnings[:20]:
            print(f"warning: seq {w.seq}: {w.rule}: {w.message}", file=sys.stderr)
        c = report.checkpoints
        if report.ok:
            print(f"ok: {report.events} events, hash chain and invariants hold (head {report.head_hash[:16]})")
            if report.keyed:
                print(f"keyed: {c.verified} checkpoint(s) verified under key {c.key_id} (last covers seq {c.last_seq})")
            if report.anchor is not None:
                print(f"anchor: the log still holds the anchored prefix up to seq {report.anchor['seq']}")
            for limit in report.limits():  # what a clean audit could not rule out (moot once it failed)
                print(f"note: {limit}")
        else:
            first = next(p for p in report.problems if p.seq == report.first_bad_seq) \
                if report.first_bad_seq is not None else report.problems[0]
            where = f"seq {first.seq}" if first.seq is not None else "schema"
            print(f"FAILED: first bad event {where}: {first.rule}: {first.message}")
            for p in report.problems[1:20]:
                print(f"  also seq {p.seq}: {p.rule}: {p.message}")
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def cmd_anchor(args: argparse.Namespace) -> int:
    from dpo_tui.events import checkpoint as checkpoints
    from dpo_tui.events.anchor import anchor_line, make_anchor
    from dpo_tui.events.store import open_store

    key = checkpoints.load_key()
    with open_store(args.db, readonly=True) as store:
        line = anchor_line(make_anchor(store, key))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(line + "\n")
            os.replace(tmp, out)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot write the anchor ({exc.strerror or exc})") from None
        print(f"anchor written to {out}: keep it where the campaign's writer cannot edit it", file=sys.stderr)
    print(line)
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    from dpo_tui.events.store import open_store

    with open_store(args.db, readonly=True) as store:
        types = args.type or None
        out = sys.stdout
        for seq, _cid, type_, version, actor, ts, text, prev, digest in store.rows(types=types):
            if args.jsonl:
                out.write(json.dumps({"seq": seq, "type": type_, "actor": actor, "ts": ts, "schema_version": version,
                                      "payload": json.loads(text), "prev_hash": prev, "hash": digest},
                                     ensure_ascii=False) + "\n")
            else:
                short = text if len(text) <= 100 else text[:97] + "..."
                out.write(f"{seq:>7}  {ts}  {type_:<22} {actor:<20} {short}\n")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a campaign file", description="Create a new campaign database.")
    p.add_argument("--db", required=True, help="path of the campaign file to create")
    p.add_argument("--name", required=True, help="campaign name")
    p.add_argument("--actor", help="operator name (default: your login name)")
    p.add_argument("--force", action="store_true", help="replace an existing file at --db")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("note", help="append an operator note", description="Append an annotation for auditors.")
    p.add_argument("--db", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--stage", choices=["budget", "split", "rollouts", "pairs", "train", "eval"],
                   help="the stage the note is about")
    p.add_argument("--actor", help="operator name (default: your login name)")
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("replay", help="rebuild the campaign state from its log",
                       description="Fold the log from seq 1 (verifying the hash chain) and print the state.")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("audit", help="verify the log: hash chain, order, invariants",
                       description="Exit 0 when every check holds, 1 naming the first bad event.")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true",
                   help='print {"ok", "first_bad_seq", "keyed", "checkpoints", "anchor", "problems", ...}')
    p.add_argument("--anchor", metavar="FILE", help="an anchor file (dpo-tui anchor): fail unless the log still "
                                                    "holds that prefix")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("anchor", help="print the log's head as an anchor to keep elsewhere",
                       description="Print {campaign_id, seq, head_hash, checkpoint_mac?, ts} as one JSON line; "
                                   "`audit --anchor FILE` later proves the log still holds that prefix.")
    p.add_argument("--db", required=True)
    p.add_argument("--out", metavar="FILE", help="also write the anchor to FILE")
    p.set_defaults(func=cmd_anchor)

    p = sub.add_parser("events", help="dump events for other tools", description="Print events in seq order.")
    p.add_argument("--db", required=True)
    p.add_argument("--type", action="append", help="only this event type (repeatable)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_events)
