"""The console's budget and pairs actions as commands (scripts and CI are operators too):
`dpo-tui cap` and `dpo-tui pairs list|accept|reject|thresholds|build|export`.

Each takes the campaign's writer lock, is logged as `operator:<name>` (--actor, default the
login name) and goes through the same service function as the console, so it refuses what
the console refuses with the same message. Imports are lazy: `--help` loads no SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dpo_tui.errors import EXIT_OK

PLAN_HELP = ("plan file (TOML); default: the plan the campaign recorded (plan.recorded: its file when unchanged, "
             "else the copy in the log)")


@contextlib.contextmanager
def _writer(db: str, busy: str = "") -> Iterator[Any]:
    """The campaign opened for writing under its writer lock (refused while another process
    holds it; `busy` is added to that refusal)."""
    from dpo_tui.campaign.runner import campaign_lock
    from dpo_tui.errors import InputError, StoreError
    from dpo_tui.events.campaign import Campaign

    path = Path(db).expanduser().resolve()
    if not path.exists():
        raise InputError(f"{db}: no such campaign file (dpo-tui init creates one)")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(campaign_lock(path))
        except StoreError as exc:
            if not busy:
                raise
            raise StoreError(f"{exc.message}. {busy}") from None
        yield stack.enter_context(Campaign.open(path))


def _actor(args: argparse.Namespace) -> str:
    from dpo_tui.events.commands import operator_actor

    return operator_actor(args.actor)


def open_plan(campaign: Any, plan_arg: str | None, *, actor: str):
    """(plan, tasks) to act with: --plan (recorded when it differs, as the console does), else
    the plan the campaign recorded last."""
    from dpo_tui.campaign.plan import Plan, load_plan
    from dpo_tui.campaign.runner import record_plan
    from dpo_tui.campaign.state.plan import PLAN
    from dpo_tui.campaign.suites import load_plan_tasks
    from dpo_tui.errors import InputError
    from dpo_tui.provider.prices import load_prices

    recorded = campaign.state.part(PLAN)
    if plan_arg is not None:
        path = Path(plan_arg)
        plan = load_plan(path, prices=load_prices())
        if recorded.hash != plan.hash():
            record_plan(campaign, plan, path, actor=actor)
    elif recorded.plan is not None:
        seq = max(row[0] for row in campaign.store.rows(types=["plan.recorded"]))
        path = Path(campaign.store.event_at(seq).payload["path"])
        plan = load_plan(path, prices=load_prices()) if path.exists() else None
        if plan is None or plan.hash() != recorded.hash:
            plan = Plan.model_validate(recorded.plan)
    else:
        raise InputError("this campaign has no plan yet: pass --plan PLAN.toml (or run it with `dpo-tui run --plan`)")
    return plan, load_plan_tasks(plan)


def cmd_cap(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.budget import set_operator_cap

    actor = _actor(args)
    with _writer(args.db) as campaign:
        cap = set_operator_cap(campaign, args.usd, args.reason, actor=actor)
        seq = campaign.state.last_seq
    print(f"budget cap set to ${cap:.2f} by {actor} (event {seq}); every later call is held against it")
    return EXIT_OK


def cmd_pairs_list(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.pairs import pair_rows
    from dpo_tui.campaign.state.pairs import PAIRS
    from dpo_tui.events.campaign import Campaign

    with Campaign.open(args.db, readonly=True) as campaign:
        rows = pair_rows(campaign)
        state = campaign.state.part(PAIRS)
        stale = state.stale_reason
    if args.json:
        sys.stdout.write(json.dumps({"pairs": rows}, indent=2) + "\n")
        return EXIT_OK
    if not rows:
        print("no pairs built yet")
        return EXIT_OK
    print(f"{'id':<44} {'chosen':>6} {'rej.':>5} {'filter':<12} {'decision':<8} {'status':<8} exported")
    for r in rows:
        print(f"{r['id']:<44} {r['chosen_score']:>6.2f} {r['rejected_score']:>5.2f} {r['filter'] or '-':<12} "
              f"{r['decision'] or '-':<8} {r['status']:<8} {'yes' if r['exported'] else 'no'}")
    kept = sum(1 for r in rows if r["status"] == "kept")
    print(f"{len(rows)} pairs, {kept} kept, {sum(r['exported'] for r in rows)} in the current export"
          + (f"; the export is stale: {stale}" if stale else ""))
    return EXIT_OK


def cmd_pairs_decide(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import pairs as pairs_stage
    from dpo_tui.campaign.state.pairs import PAIRS
    from dpo_tui.provider.secrets import operator_text
    from dpo_tui.provider.tokenizer import get_tokenizer

    actor = _actor(args)
    with _writer(args.db) as campaign:
        plan, tasks = open_plan(campaign, args.plan, actor=actor)
        pairs_stage.decide(campaign, plan, tasks, get_tokenizer(), args.pair, args.decision,
                           reason=operator_text(args.reason), actor=actor)
        stale = campaign.state.part(PAIRS).stale_reason
    print(f"pair {args.pair}: {args.decision}ed by {actor}")
    if stale:
        print(f"the export is now stale ({stale}); training waits for `dpo-tui pairs export --db {args.db}`",
              file=sys.stderr)
    return EXIT_OK


def cmd_pairs_thresholds(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import pairs as pairs_stage
    from dpo_tui.campaign.state.pairs import PAIRS
    from dpo_tui.provider.secrets import operator_text
    from dpo_tui.provider.tokenizer import get_tokenizer

    actor = _actor(args)
    with _writer(args.db) as campaign:
        plan, tasks = open_plan(campaign, args.plan, actor=actor)
        funnel = pairs_stage.set_thresholds(campaign, plan, tasks, get_tokenizer(), min_margin=args.min_margin,
                                            per_task_cap=args.per_task_cap, reason=operator_text(args.reason),
                                            actor=actor)
        stale = campaign.state.part(PAIRS).stale_reason
    print(f"pair thresholds set by {actor}: min margin {args.min_margin:g}, per-task cap {args.per_task_cap}; "
          + (f"the funnel rebuilt: {funnel.get('manual', 0)} kept" if funnel else "the next build uses them"))
    if stale:
        print(f"the export is now stale ({stale}); training waits for `dpo-tui pairs export --db {args.db}`",
              file=sys.stderr)
    return EXIT_OK


def cmd_pairs_build(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import outlook
    from dpo_tui.campaign import pairs as pairs_stage
    from dpo_tui.campaign.state.pairs import PAIRS
    from dpo_tui.provider.tokenizer import get_tokenizer

    actor = _actor(args)
    with _writer(args.db) as campaign:
        plan, tasks = open_plan(campaign, args.plan, actor=actor)
        unfinished = outlook.rollout_stage(campaign, plan)["unfinished"]
        pairs_stage.build(campaign, plan, tasks, get_tokenizer(), actor=actor)
        built = campaign.state.part(PAIRS).built
    if unfinished:
        print(f"warning: {unfinished}", file=sys.stderr)
    kept = sum(1 for x in built["pairs"] if x["dropped_by"] is None) if built else 0
    print(f"pairs built by {actor} from the finished rollouts: {kept} kept of {len(built['pairs']) if built else 0}")
    return EXIT_OK


def cmd_pairs_export(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import outlook
    from dpo_tui.campaign import pairs as pairs_stage
    from dpo_tui.provider.secrets import operator_text
    from dpo_tui.provider.tokenizer import get_tokenizer

    actor = _actor(args)
    with _writer(args.db) as campaign:
        plan, tasks = open_plan(campaign, args.plan, actor=actor)
        unfinished = outlook.rollout_stage(campaign, plan)["unfinished"]
        x = pairs_stage.export_decided(campaign, plan, tasks, get_tokenizer(), actor=actor,
                                       reason=operator_text(args.reason))
    if unfinished:
        print(f"warning: {unfinished}", file=sys.stderr)
    out = {k: x[k] for k in ("pairs", "together_path", "together_sha256", "trl_path", "manifest_path",
                             "decisions_sha256", "supersedes")}
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        print(f"exported {x['pairs']} pairs to {x['together_path']} (sha256 {x['together_sha256'][:12]})"
              + (f", replacing the stale export {x['supersedes'][:12]}" if x["supersedes"] else ""))
        print("files written:\n" + "\n".join(f"  {f}" for f in outlook.exported_files(x)))
    return EXIT_OK


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="campaign file")
    p.add_argument("--actor", help="operator name (default: your login name); logged as operator:<name>")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cap", help="set the budget cap (the console's c on Budget)",
                       description="Set the budget cap every later call is held against, with a reason; logged as "
                       "budget.cap_set by operator:<name>. Works on a campaign without a plan yet (dpo-tui init, "
                       "then cap, then run --plan). Takes the campaign's writer lock.")
    _common(p)
    p.add_argument("--usd", required=True, help="the new cap in USD (e.g. 2.50)")
    p.add_argument("--reason", required=True, help="why (logged with your name)")
    p.set_defaults(func=cmd_cap)

    p = sub.add_parser("pairs", help="list, build, accept, reject or export pairs (the console's Pairs pane)",
                       description="The operator's pair actions, headless. accept/reject/export take the "
                       "campaign's writer lock and are logged as operator:<name>; a decision after an export "
                       "makes it stale, and training waits for `pairs export`.")
    psub = p.add_subparsers(dest="pairs_command", metavar="ACTION", required=True)
    q = psub.add_parser("list", help="every built pair with its id, scores, filter, status and exported",
                        description='Every built pair: id (the manifest\'s pair_id), task_id, scores, filter (the '
                        'one that dropped it, null when kept), decision, status (kept, dropped, rejected) and '
                        'exported. --json prints {"pairs": [...]}.')
    q.add_argument("--db", required=True, help="campaign file (read only)")
    q.add_argument("--json", action="store_true", help='print {"pairs": [...]}')
    q.set_defaults(func=cmd_pairs_list)
    for decision in ("accept", "reject"):
        q = psub.add_parser(decision, help=f"{decision} one pair (with a reason)",
                            description=f"{decision.capitalize()} pair ID; the funnel is rebuilt with it. Needs the "
                            "plan (its filters): " + PLAN_HELP + ".")
        _common(q)
        q.add_argument("--pair", required=True, help="the pair id (`dpo-tui pairs list`)")
        q.add_argument("--reason", required=True, help="why (logged with your name)")
        q.add_argument("--plan", help=PLAN_HELP)
        q.set_defaults(func=cmd_pairs_decide, decision=decision)
    q = psub.add_parser("thresholds", help="set the pair thresholds as a decision (the console's T on Pairs)",
                        description="Log pairs.thresholds_set (min margin, per-task cap, reason, by operator:<name>) "
                        "and rebuild the funnel with them; every later build uses them over the plan's. Needs the "
                        "plan: " + PLAN_HELP + ".")
    _common(q)
    q.add_argument("--min-margin", type=float, required=True, help="least score gap between chosen and rejected, 0..1")
    q.add_argument("--per-task-cap", type=int, required=True, help="pairs per task at most, 1 or more")
    q.add_argument("--reason", required=True, help="why (logged with your name)")
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_pairs_thresholds)
    q = psub.add_parser("build", help="build the pairs from the finished rollouts (the console's b on Pairs)",
                        description="Build every pair the finished train rollouts give and run the funnel "
                        "(pairs.built, by operator:<name>). Needs the plan (its filters): " + PLAN_HELP + ".")
    _common(q)
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_pairs_build)
    q = psub.add_parser("export", help="export the kept pairs (again, when a decision made the export stale)",
                        description="Write Together's and TRL's JSONL and the manifest, logging the decision and the "
                        "pair decisions the export reflects. Needs the plan: " + PLAN_HELP + ".")
    _common(q)
    q.add_argument("--plan", help=PLAN_HELP)
    q.add_argument("--reason", default="exported with dpo-tui pairs export", help="logged with the decision")
    q.add_argument("--json", action="store_true",
                   help='print {"pairs", "together_path", "together_sha256", "trl_path", "manifest_path", '
                   '"decisions_sha256", "supersedes"}')
    q.set_defaults(func=cmd_pairs_export)
