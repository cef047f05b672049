"""The console's split, cancel and override actions as commands (headless twins):
`dpo-tui split propose|move|exclude|approve|unfreeze`, `dpo-tui cancel` and `dpo-tui override`.

Like `cap` and `pairs` (opcli.py) each takes the campaign's writer lock, is logged as
`operator:<name>` (--actor, default the login name) and calls the same service function as
the console, so it refuses what the console refuses with the same message. `--json` prints
the events the command appended. Imports are lazy: `--help` loads no SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from dpo_tui.campaign.opcli import PLAN_HELP, _actor, _common, _writer, open_plan
from dpo_tui.errors import EXIT_OK


def _appended(campaign: Any, after: int) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "type": e.type, "actor": e.actor, "payload": e.payload}
            for e in campaign.store.read(after, verify=False)]


def _report(args: argparse.Namespace, events: list[dict[str, Any]], line: str) -> int:
    if args.json:
        sys.stdout.write(json.dumps({"events": events}, indent=2) + "\n")
    else:
        print(line)
    return EXIT_OK


def _reason(args: argparse.Namespace) -> str:
    from dpo_tui.provider.secrets import operator_text

    return operator_text(args.reason or "")


def cmd_split(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import split

    actor = _actor(args)
    with _writer(args.db) as campaign:
        before = campaign.state.last_seq
        action = args.split_command
        if action in ("propose", "move", "exclude"):
            plan, tasks = open_plan(campaign, args.plan, actor=actor)
        if action == "propose":
            had = campaign.state.part(split.SPLIT).split is not None
            s = split.propose_split(campaign, plan, tasks, actor=actor)
            line = (f"the split is already proposed ({len(s.train)} train, {len(s.test)} test tasks)" if had else
                    f"split proposed by {actor}: {len(s.train)} train, {len(s.test)} test tasks, "
                    f"{len(campaign.state.part(split.SPLIT).findings)} leakage findings")
        elif action == "move":
            to = args.to or split.other_side(campaign, args.task)
            split.move_task(campaign, plan, tasks, args.task, to, actor=actor,
                            reason=_reason(args) or "moved with dpo-tui split move")
            line = f"{args.task} moved to {to} by {actor}"
        elif action == "exclude":
            split.exclude_task(campaign, plan, tasks, args.task, reason=_reason(args), actor=actor)
            line = f"{args.task} excluded by {actor}"
        elif action == "approve":
            s = split.split_to_approve(campaign)
            if s.frozen:
                line = split.already_frozen(s)
            else:
                line = f"split approved and frozen by {actor}: {split.approve_split(campaign, actor=actor)}"
        else:
            previous = split.frozen_split(campaign).frozen_hash
            split.unfreeze_split(campaign, reason=_reason(args), actor=actor)
            line = f"split {previous[:12]} unfrozen by {actor}; approve it again to freeze the new split"
        events = _appended(campaign, before)
    return _report(args, events, line)


def cmd_cancel(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import train

    actor = _actor(args)
    with _writer(args.db, busy=BUSY) as campaign, contextlib.ExitStack() as stack:
        before = campaign.state.last_seq

        def open_mgmt():
            from dpo_tui.campaign.mgmt import mgmt_client
            from dpo_tui.campaign.runner import backend_settings

            plan, _tasks = open_plan(campaign, args.plan, actor=actor)
            settings, _label = stack.enter_context(backend_settings(plan, Path(args.db).expanduser().resolve()))
            return mgmt_client(settings, campaign)

        job_id = train.cancel_training(campaign, open_mgmt, args.run_id, reason=_reason(args), actor=actor)
        events = _appended(campaign, before)
    return _report(args, events, f"cancel requested for job {job_id} by {actor}; the next `dpo-tui run` (or the "
                   "console) follows it to its end")


def cmd_override(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import evaluation

    actor = _actor(args)
    with _writer(args.db) as campaign:
        before = campaign.state.last_seq
        run_id = evaluation.override_gate(campaign, args.decision, reason=_reason(args), actor=actor,
                                          run_id=args.run_id)
        events = _appended(campaign, before)
    return _report(args, events, f"gate of {run_id} overridden by {actor}: {args.decision}")


def cmd_approve(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import approvals
    from dpo_tui.campaign.runs import resumed_run

    actor = _actor(args)
    with _writer(args.db) as campaign:
        before = campaign.state.last_seq
        plan, _tasks = open_plan(campaign, args.plan, actor=actor)
        from dpo_tui.provider.prices import load_prices

        run_id, _overrides, label_swap = resumed_run(campaign, plan)
        p = approvals.approve(campaign, plan, load_prices(), args.stage, args.run_id or run_id, reason=_reason(args),
                              actor=actor, label_swap=label_swap and args.run_id is None)
        events = _appended(campaign, before)
    est = "no estimate logged" if p["estimate_usd"] is None else f"estimated ${p['estimate_usd']:.3f}"
    return _report(args, events, "".join(f"{line}\n" for line in p["commits"]) +
                   f"{p['decision']} approved by {actor} ({est}); `dpo-tui run --plan P --db D` goes on from here")


def cmd_endpoint_stop(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import serving

    actor = _actor(args)
    with _writer(args.db) as campaign, contextlib.ExitStack() as stack:
        before = campaign.state.last_seq
        from dpo_tui.campaign.mgmt import mgmt_client
        from dpo_tui.campaign.runner import backend_settings

        serving.endpoint_record(campaign, args.id)  # an unknown id: refused before any call
        plan, _tasks = open_plan(campaign, args.plan, actor=actor)
        settings, _label = stack.enter_context(backend_settings(plan, Path(args.db).expanduser().resolve()))
        serving.stop(campaign, mgmt_client(settings, campaign), args.id, reason=_reason(args), actor=actor)
        events = _appended(campaign, before)
    return _report(args, events, f"endpoint {args.id} stopped by {actor}")


# the Budget pane's inputs: (flag, plan section, field)
BUDGET_INPUTS = (("avg-iters", "budget", "avg_iters"), ("avg-reflections", "budget", "avg_reflections"),
                 ("prompt-tokens-per-call", "budget", "prompt_tokens_per_call"),
                 ("completion-tokens-per-call", "budget", "completion_tokens_per_call"),
                 ("rollouts-per-task", "rollouts", "rollouts_per_task"))


def cmd_budget_record(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import budget

    actor = _actor(args)
    changes: dict[str, dict[str, str]] = {"budget": {}, "rollouts": {}}
    for flag, section, field in BUDGET_INPUTS:
        value = getattr(args, field)
        if value is not None:
            changes[section][field] = budget.parse_input(field, value)
    with _writer(args.db) as campaign:
        before = campaign.state.last_seq
        plan, tasks = open_plan(campaign, args.plan, actor=actor)
        from dpo_tui.provider.prices import load_prices

        budget.record_what_if(campaign, plan, load_prices(), n_pool=len(tasks.pool), n_heldout=len(tasks.heldout),
                              budget_changes=changes["budget"], rollouts_changes=changes["rollouts"], actor=actor)
        events = _appended(campaign, before)
    total = events[-1]["payload"].get("total_usd") if events else None
    return _report(args, events, f"estimate recorded by {actor}" + (f": ${total:.2f}" if total is not None else ""))


BUSY = ("Cancel the job from the process that holds it (the console: Train, c), or here once that process "
        "has stopped (a stopped run leaves the job running at Together)")
JSON_HELP = 'print {"events": [{"seq", "type", "actor", "payload"}, ...]}: the events this command appended'


def _twin(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="propose, move, exclude, approve or unfreeze the split (the console's Split pane)",
                       description="The operator's split actions, headless. Each takes the campaign's writer lock "
                       "and is logged as operator:<name>; it refuses what the console refuses (a frozen split "
                       "cannot change until it is unfrozen with a reason).")
    ssub = p.add_subparsers(dest="split_command", metavar="ACTION", required=True)
    q = ssub.add_parser("propose", help="propose the plan's seeded split (once)",
                        description="Snapshot the plan's tasks and propose its seeded split with the leakage "
                        "findings (split.proposed). A campaign that has a split keeps it. Needs the plan: "
                        + PLAN_HELP + ".")
    _twin(q)
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_split)
    q = ssub.add_parser("move", help="move a task to train or test",
                        description="Move one task of an unfrozen split (split.task_moved, findings recomputed). "
                        "Needs the plan: " + PLAN_HELP + ".")
    _twin(q)
    q.add_argument("--task", required=True, help="the task id")
    q.add_argument("--to", choices=("train", "test"), help="where to (default: the other side, as the console's m)")
    q.add_argument("--reason", help="why (logged with your name)")
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_split)
    q = ssub.add_parser("exclude", help="exclude a task from train and test, with a reason",
                        description="Exclude one task of an unfrozen split (split.task_excluded). Needs the plan: "
                        + PLAN_HELP + ".")
    _twin(q)
    q.add_argument("--task", required=True, help="the task id")
    q.add_argument("--reason", required=True, help="why (logged with your name)")
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_split)
    q = ssub.add_parser("approve", help="approve and freeze the split (its hash logged)",
                        description="Freeze the split (split.approved with its hash); rollouts and pairs use it. "
                        "Approving a frozen split changes nothing.")
    _twin(q)
    q.set_defaults(func=cmd_split)
    q = ssub.add_parser("unfreeze", help="unfreeze the split, with a written reason",
                        description="Unfreeze the frozen split (split.unfrozen with the previous hash); what was "
                        "done on it stays in the log tied to that hash.")
    _twin(q)
    q.add_argument("--reason", required=True, help="why (logged with your name)")
    q.set_defaults(func=cmd_split)

    p = sub.add_parser("cancel", help="cancel the training job (the console's c on Train)",
                       description="Ask Together to cancel a training run's DPO job (train.cancel_requested is "
                       "logged first, with the reason). Works while no other process holds the campaign's writer "
                       "lock (a running `dpo-tui run` or an open console does: cancel there, or stop it first). "
                       "Needs the plan's backend: " + PLAN_HELP + ".")
    _twin(p)
    p.add_argument("--run-id", help="the training run (default: the newest in the log)")
    p.add_argument("--reason", required=True, help="why (logged with your name)")
    p.add_argument("--plan", help=PLAN_HELP)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("override", help="override the gate's decision, with a written reason (the console's o on Eval)",
                       description="Override the latest eval run's gate decision (decision.gate_overridden, with "
                       "the previous decision and your reason, at least 10 characters).")
    _twin(p)
    p.add_argument("--decision", required=True, choices=("ship", "rollback", "inconclusive"), help="the new decision")
    p.add_argument("--reason", required=True, help="why (logged with your name)")
    p.add_argument("--run-id", help="the eval run (default: the latest)")
    p.set_defaults(func=cmd_override)

    p = sub.add_parser("approve", help="give the go a paid stage waits for (the console's confirmations)",
                       description="Record the decision a stage waits for as operator:<name>, with the estimate the "
                       "console's confirmation shows: rollouts (the pilot first, then the rest), train (the launch, "
                       "after `run --until train` priced it) or eval (the endpoint minutes). Refused, exit 3, when "
                       "the estimate does not fit what the cap leaves; refused, exit 2, when the stage waits for "
                       "no go. Then `dpo-tui run --plan P --db D` goes on without --yes.")
    _twin(p)
    p.add_argument("--stage", required=True, choices=("rollouts", "train", "eval"), help="the stage to approve")
    p.add_argument("--reason", required=True, help="why (logged with your name)")
    p.add_argument("--run-id", help="the training run (default: the newest in the log)")
    p.add_argument("--plan", help=PLAN_HELP)
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("budget", help="record the estimate with edited inputs (the console's ctrl+r on Budget)",
                       description="Budget actions, headless.")
    bsub = p.add_subparsers(dest="budget_command", metavar="ACTION", required=True)
    q = bsub.add_parser("record", help="log the plan's estimate, with any of the Budget pane's inputs changed",
                        description="Log budget.estimated as operator:<name>: the plan's estimate with the inputs "
                        "given here changed (the plan file is not edited; the plan's own validation refuses a bad "
                        "value, naming the field). Needs the plan: " + PLAN_HELP + ".")
    _twin(q)
    for flag, section, field in BUDGET_INPUTS:
        q.add_argument(f"--{flag}", dest=field, help=f"{section}.{field} for this estimate")
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_budget_record)

    p = sub.add_parser("endpoint", help="stop a dedicated endpoint by hand (the console's s on Train)",
                       description="Endpoint actions, headless. Each takes the campaign's writer lock and is logged "
                       "as operator:<name>.")
    esub = p.add_subparsers(dest="endpoint_command", metavar="ACTION", required=True)
    q = esub.add_parser("stop", help="stop one dedicated endpoint (scale to zero, delete, log its billed minutes)",
                        description="Stop one of the campaign's dedicated endpoints, as the console's s on Train "
                        "does. Needs the plan's backend: " + PLAN_HELP + ".")
    _twin(q)
    q.add_argument("--id", required=True, help="the endpoint id (replay --json: endpoint.all)")
    q.add_argument("--reason", required=True, help="why (logged with your name)")
    q.add_argument("--plan", help=PLAN_HELP)
    q.set_defaults(func=cmd_endpoint_stop)
