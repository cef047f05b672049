"""Campaign commands: estimate, run, demo."""

from __future__ import annotations

import argparse
import json
import sys

from pathlib import Path

from dpo_tui.campaign.stages import STAGES
from dpo_tui.errors import EXIT_OK, EXIT_ROLLBACK, InputError

# The plan, the runner (with the SDK and the store) and the price table are imported inside
# each command, not here: `dpo-tui --help` and the other commands start without them.


def _rates(db: str | None):  # noqa: ANN202 - RateModel | None
    """The pilot's pass-rate model when `--db` names a campaign whose pilot ran; else None (the prior)."""
    if db is None:
        return None
    from dpo_tui.campaign.power import pilot_rates
    from dpo_tui.events.campaign import Campaign

    with Campaign.open(db, readonly=True) as campaign:
        return pilot_rates(campaign)


def cmd_estimate(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.budget import generator_hardware, plan_estimate, prices_json
    from dpo_tui.campaign.plan import load_checked_plan
    from dpo_tui.campaign.power import plan_power, power_summary
    from dpo_tui.campaign.suites import load_plan_tasks

    plan, prices, offers = load_checked_plan(args.plan, prices_path=args.prices)
    for warning in offers.warnings:
        sys.stderr.write(f"dpo-tui: {warning}\n")
    tasks = load_plan_tasks(plan)
    inp, est = plan_estimate(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout))
    out = est.to_json()
    out["prices"] = prices_json(prices) | {"date": prices.date}
    instance, cents = generator_hardware(plan, prices)
    out["generator"] = {"model": plan.models.generator, "serving": plan.models.generator_serving,
                        "instance": instance, "replicas": plan.models.generator_replicas if instance else None,
                        "usd_per_hour": cents / 100 if instance else None}
    if plan.backend.kind == "simulator":
        out["backend"] = "simulated"
    out["power"] = plan_power(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout),
                              rates=_rates(args.db))
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return EXIT_OK
    label = " (simulated backend; prices from the table)" if plan.backend.kind == "simulator" else ""
    print(f"Estimate for {plan.campaign.name}{label}")
    if instance:
        print(f"  generator {plan.models.generator} on a dedicated endpoint: {instance} x "
              f"{plan.models.generator_replicas}, ${cents / 100:.2f}/h, billed per started minute (rollouts row)")
    print(f"  {inp.tasks} train tasks x {inp.rollouts_per_task} rollouts, {inp.calls_per_rollout:g} calls per rollout "
          f"(avg_iters {inp.avg_iters:g} + avg_reflections {inp.avg_reflections:g})")
    print(f"  {'stage':<10} {'calls':>10} {'tokens':>12} {'usd':>10} {'low':>10} {'high':>10}")
    for stage, s in est.by_stage.items():
        print(f"  {stage:<10} {s.calls:>10,.0f} {s.tokens:>12,.0f} {s.usd:>10.2f} {s.low_usd:>10.2f} {s.high_usd:>10.2f}")
    print(f"  {'total':<10} {est.calls:>10,.0f} {'':>12} {est.total_usd:>10.2f} {est.low_usd:>10.2f} {est.high_usd:>10.2f}")
    print(f"  cap ${plan.budget.cap_usd:.2f}; prices from the {prices.origin} as of {prices.date}: {prices.source}")
    if est.high_usd > plan.budget.cap_usd:
        print(f"  warning: the high end ${est.high_usd:.2f} is above the cap; the cap will stop the run before it is crossed")
    print(f"  {power_summary(out['power'])} (dpo-tui power for the details)")
    return EXIT_OK


def finish(result, fail_on_rollback: bool) -> int:  # noqa: ANN001 - RunResult
    """Print the summary; the exit code, 6 when asked to fail on a rollback the gate decided."""
    code = result.exit_code
    decision = (result.summary.get("eval") or {}).get("decision")
    if code == EXIT_OK and fail_on_rollback and decision == "rollback":
        code = EXIT_ROLLBACK
        result.summary.update(exit_code=code, status="rollback")
    sys.stdout.write(json.dumps(result.summary, indent=2) + "\n")
    if code == EXIT_ROLLBACK:
        sys.stderr.write("dpo-tui: rollback: the eval gate decided rollback (exit 6, --fail-on-rollback)\n")
    elif code:
        sys.stderr.write(f"dpo-tui: {result.status}: {result.message}\n")
    return code


def cmd_power(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.plan import load_checked_plan
    from dpo_tui.campaign.power import plan_power, power_lines
    from dpo_tui.campaign.suites import load_plan_tasks

    if args.trials < 50:
        raise InputError(f"--trials: {args.trials} is too few to estimate a rate (at least 50)")
    plan, prices, _offers = load_checked_plan(args.plan, prices_path=args.prices)
    tasks = load_plan_tasks(plan)
    out = plan_power(plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout), trials=args.trials,
                     rates=_rates(args.db))
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        print("\n".join(power_lines(out, plan.campaign.name)))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.runner import run_campaign

    result = run_campaign(Path(args.plan), Path(args.db), until=args.until, yes=args.yes)
    return finish(result, args.fail_on_rollback)


def cmd_train(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.runner import run_campaign

    overrides = {k: v for k, v in (("dpo_beta", args.dpo_beta), ("learning_rate", args.learning_rate),
                                   ("n_epochs", args.epochs)) if v is not None}
    result = run_campaign(Path(args.plan), Path(args.db), yes=args.yes, run_id=args.run_id,
                          training_overrides=overrides, label_swap=args.label_swap_control, control=args.control)
    return finish(result, args.fail_on_rollback)


def program_name() -> str:
    """How to call dpo-tui again from this shell: `dpo-tui` when PATH finds this very program,
    else its path (`.venv/bin/dpo-tui` after the README's setup, which does not touch PATH)."""
    import os
    import shutil

    here = Path(sys.executable).parent / "dpo-tui"
    found = shutil.which("dpo-tui")
    if found and Path(found).resolve() == here.resolve():
        return "dpo-tui"
    try:
        return os.path.relpath(here) if not os.path.relpath(here).startswith("..") else str(here)
    except ValueError:
        return str(here)


def cmd_demo(args: argparse.Namespace) -> int:
    from dpo_tui.campaign.plan import demo_plan_path
    from dpo_tui.campaign.runner import run_campaign

    db = Path(args.db).expanduser().resolve()
    if args.fresh:
        for leftover in db.parent.glob(f"{db.name}*"):
            if leftover.is_file():
                leftover.unlink()
            elif leftover.is_dir() and leftover.name == f"{db.name}.sim":
                import shutil

                shutil.rmtree(leftover)
    elif db.exists():
        print(f"dpo-tui: resuming the demo campaign in {db} (--fresh starts over)", file=sys.stderr)
    result = run_campaign(demo_plan_path(), db, yes=True)
    s = result.summary
    if not args.quiet:
        print(json.dumps(s, indent=2))
    prog = program_name()
    print(f"""
Demo {result.status} on the embedded Together simulator (all figures are simulated).
  campaign log: {db}
  spend: ${s['spend']['total_usd']:.4f} of a ${s['budget_cap_usd']:.2f} cap (simulated prices from the dated table)
{_demo_verdict(db, s, prog)}Try next:
  {prog} replay --db {db}          rebuild the state from the log
  {prog} audit --db {db}           verify the hash chain and the invariants
  {prog} report --db {db}          the auditor's report
  {prog} events --db {db} --type decision.recorded
  {prog} tui --db {db} --readonly  browse it in the console""", file=sys.stderr)
    return result.exit_code


def _demo_verdict(db: Path, summary: dict, prog: str) -> str:
    """What the gate decided and, when it could not decide, the power figure that says why."""
    decision = (summary.get("eval") or {}).get("decision")
    if decision is None:
        return ""
    line = f"  gate: {decision}\n"
    if decision != "inconclusive":
        return line
    from dpo_tui.campaign.plan import demo_plan_path, load_plan
    from dpo_tui.campaign.power import campaign_power, power_summary
    from dpo_tui.campaign.suites import load_plan_tasks
    from dpo_tui.events.campaign import Campaign
    from dpo_tui.provider.prices import load_prices

    prices = load_prices()
    plan = load_plan(demo_plan_path(), prices=prices)
    tasks = load_plan_tasks(plan)
    with Campaign.open(db, readonly=True) as campaign:
        out = campaign_power(campaign, plan, prices, n_pool=len(tasks.pool), n_heldout=len(tasks.heldout))
    return (f"{line}  why: {power_summary(out)}\n"
            f"  ({prog} power --plan {demo_plan_path()} --db {db} sizes an eval that could decide)\n")


def cmd_report(args: argparse.Namespace) -> int:
    from dpo_tui.campaign import report

    blocks = report.build_for(args.db)
    text = report.to_html(blocks) if args.format == "html" else report.to_markdown(blocks)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate calls, tokens and dollars per stage for a plan",
                       description="The budget before any spend: per stage, with a low/high range.")
    p.add_argument("--plan", required=True, help="plan file (TOML)")
    p.add_argument("--prices", help="price table (default: the shipped, dated table)")
    p.add_argument("--db", help="campaign file: once its pilot ran, power uses the pilot's per-task pass rates")
    p.add_argument("--json", action="store_true",
                   help='print {"total_usd", "low_usd", "high_usd", "calls", "by_stage", "power"}')
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("power", help="what the planned eval can detect, per suite, before any spend",
                       description="Per eval suite: tasks, seeds, the MDE of the gate's own test at the plan's alpha "
                       "and 80%% power, the tasks needed for min_improvement + 5 points, the gate's A/A ship and "
                       "rollback rates for this design (simulated, seeded), and the eval cost of that design.")
    p.add_argument("--plan", required=True, help="plan file (TOML)")
    p.add_argument("--prices", help="price table (default: the shipped, dated table)")
    p.add_argument("--trials", type=int, default=1000, help="simulated evals per estimate (default 1000)")
    p.add_argument("--db", help="campaign file: once its pilot ran, its per-task pass-rate variance replaces the prior")
    p.add_argument("--json", action="store_true",
                   help='print {"alpha", "suites": {name: {"tasks", "seeds", "mde", "detectable", "tasks_needed", '
                        '"aa_ship_rate", "aa_rollback_rate", "cost_usd", "sequential", ...}}}')
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("run", help="run a campaign from a plan, headless",
                       description="Run the stages in order; running it again resumes. Progress on stderr, a JSON "
                       "summary on stdout. Exit: 0 done, 2 bad input, 3 budget cap, 4 waiting for a decision, "
                       "5 a stage failed, 6 the gate decided rollback (with --fail-on-rollback).")
    p.add_argument("--plan", required=True, help="plan file (TOML)")
    p.add_argument("--db", required=True, help="campaign file (created if missing, resumed if present)")
    p.add_argument("--headless", action="store_true", help="no TUI (the only mode of `run`; accepted for scripts)")
    p.add_argument("--until", choices=STAGES, help="stop after this stage")
    p.add_argument("--yes", action="store_true", help="take the decisions the plan's [decisions] allow (actor: plan)")
    p.add_argument("--fail-on-rollback", action="store_true", help="exit 6 when the eval gate decides rollback")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="another training run (and its eval and gate) from the same frozen pairs",
                       description="Train and evaluate run RUN_ID on the campaign's frozen export, without paying for "
                       "rollouts again; each run has its own job, endpoints, eval and gate decision.")
    p.add_argument("--plan", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--run-id", required=True, help="e.g. run-2 (run-1 is the plan's own run)")
    p.add_argument("--dpo-beta", type=float)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--label-swap-control", action="store_true",
                   help="train on the same pairs with preferred and non-preferred exchanged (a control)")
    p.add_argument("--control", metavar="RUN_ID",
                   help="also train a label-swap control of this run under RUN_ID, in this command; both are "
                   "evaluated on one base endpoint (with adapters: one deployment)")
    p.add_argument("--yes", action="store_true", help="take the plan's decisions (actor: plan)")
    p.add_argument("--fail-on-rollback", action="store_true", help="exit 6 when this run's gate decides rollback")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="an auditor's report of a campaign, from its log alone",
                       description="Spend vs estimate, decisions, split and leakage, funnel, lineage, eval, gate.")
    p.add_argument("--db", required=True)
    p.add_argument("--format", choices=["md", "html"], default="md")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the offline demo campaign on the embedded simulator",
                       description="Run the demo plan (fixtures suite, simulated Together API) end to end.")
    p.add_argument("--db", default="demo-campaign.db", help="campaign file (default: ./demo-campaign.db)")
    p.add_argument("--fresh", action="store_true", help="delete an earlier demo campaign at --db first")
    p.add_argument("--quiet", action="store_true", help="no JSON summary on stdout")
    p.set_defaults(func=cmd_demo)
