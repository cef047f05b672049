"""`dpo-tui sim serve`: run the Together API simulator in the foreground."""

from __future__ import annotations

import argparse
import sys

from dpo_tui.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="the loopback simulator of the Together API")
    sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    serve = sub.add_parser("serve", help="serve the simulated Together API until interrupted",
                           description="Serve a simulation of the Together HTTP API. Point the together SDK at the "
                           "printed base URL (no /v1 suffix). Every response carries X-Simulated: true.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless --allow-remote)")
    serve.add_argument("--port", type=int, default=8765, help="port (0 = any free port; default 8765)")
    serve.add_argument("--faults", default="", metavar="SPEC",
                       help="KIND=RATE comma list; KIND in 429,503,500,timeout,reset,malformed,slow; latency=MS")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault generator and ids")
    serve.add_argument("--state-dir", default=None, metavar="DIR", help="keep files, jobs, models, endpoints here")
    serve.add_argument("--job-stage-seconds", type=float, default=2.0, help="seconds per fine-tune job status")
    serve.add_argument("--provision-seconds", type=float, default=3.0, help="seconds to start or stop a deployment")
    serve.add_argument("--replica-slots", type=int, default=8,
                       help="requests one replica of a dedicated deployment serves at once (more wait; default 8)")
    serve.add_argument("--serving-scale", type=float, default=0.01,
                       help="a dedicated request's time as a share of the published serving time (0: at once)")
    serve.add_argument("--references", action="append", default=[], metavar="SPEC",
                       help="a task suite (quixbugs:PATH, humanevalfix:PATH, jsonl:PATH) whose reference fixes the "
                       "simulated models perceive; repeatable (the packaged fixtures are always known)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow binding to a non-loopback address (needs --api-key)")
    serve.add_argument("--api-key", default=None, metavar="KEY",
                       help="the key clients must send as Authorization: Bearer KEY (default: any key, loopback only)")
    serve.set_defaults(func=cmd_serve)
    sim.set_defaults(func=lambda args: (sim.print_help(sys.stderr), 2)[1])


def cmd_serve(args: argparse.Namespace) -> int:
    from dpo_tui.sim.server import check_host, serve_forever
    from dpo_tui.sim.state import SimState

    if not 0 <= args.port <= 65535:
        raise InputError(f"port {args.port} is out of range")
    if args.job_stage_seconds < 0 or args.provision_seconds < 0:
        raise InputError("durations must be >= 0")
    if args.serving_scale < 0:
        raise InputError("--serving-scale must be >= 0")
    if args.replica_slots < 1:
        raise InputError("--replica-slots must be >= 1")
    check_host(args.host, args.allow_remote, args.api_key)
    state = SimState(seed=args.seed, faults=args.faults, state_dir=args.state_dir,
                     job_stage_seconds=args.job_stage_seconds, provision_seconds=args.provision_seconds,
                     references=args.references, replica_slots=args.replica_slots,
                     serving_scale=args.serving_scale)

    def ready(url: str) -> None:
        print(url, flush=True)
        print(f"dpo-tui simulator (simulated Together API) listening on {url}; Ctrl-C to stop", file=sys.stderr,
              flush=True)

    try:
        serve_forever(args.host, args.port, state, ready, api_key=args.api_key)
    except OSError as exc:
        raise InputError(f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0
