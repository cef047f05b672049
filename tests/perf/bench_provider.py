"""Provider throughput against the SDK called directly, measured in the same run.

    python tests/perf/bench_provider.py [--calls 2000] [--concurrency 32] [--latency-ms 50] [--rounds 2]

The simulator runs in its own process (`dpo-tui sim serve --faults latency=MS`) so that it
does not share the GIL with the client. Then, alternating, `--rounds` times each:
  ideal     concurrency / latency (every slot always busy, zero overhead)
  direct    AsyncTogether.chat.completions.create under an asyncio.Semaphore(concurrency),
            the same client configuration the provider uses (max_retries=0, a keep-alive pool
            of `concurrency` connections), nothing logged
  stock     the same with a stock AsyncTogether (its default pool keeps 20 connections alive)
  provider  Provider.chat with the limiter ceiling at `concurrency`: token estimate, budget
            guard, call.started + call.completed committed to the SQLite event log before
            each result returns, tenacity around each attempt
Target (issue 4): provider >= 80% of direct, with all events written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import together

from dpo_tui.config import load_settings
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.catalog import build_price_book
from dpo_tui.provider.client import async_client
from dpo_tui.provider.events import CALLS
from dpo_tui.provider.provider import CallKey, Provider
from dpo_tui.provider.tokenizer import get_tokenizer

MODEL = "Qwen/Qwen2.5-7B-Instruct-Turbo"
PROGRAM = '''def bitcount(n):
    count = 0
    while n:
        n ^= n - 1
        count += 1
    return count
'''


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You repair Python programs. Answer with the whole fixed program."},
            {"role": "user", "content": f"```python\n{PROGRAM}```\nThe test bitcount({i}) loops forever. Fix it."}]


def start_sim(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--port", "0",
                             "--faults", f"latency={latency_ms:g}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if "http://" in line:
            return proc, "http://" + line.split("http://", 1)[1].split()[0].rstrip(".,)")
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"simulator did not start: {proc.stderr.read() if proc.stderr else ''}")


async def run_direct(client: together.AsyncTogether, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(model=MODEL, messages=messages(i), temperature=0.7, seed=i,
                                                 max_tokens=256)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def run_provider(provider: Provider, n: int, round_no: int) -> float:
    async def one(i: int) -> None:
        await provider.chat(CallKey(f"bench{round_no}/{i}"), stage="bench", model=MODEL, messages=messages(i),
                            temperature=0.7, seed=i, max_tokens=256)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


def bench(args: argparse.Namespace, base_url: str, tmp: Path) -> dict[str, list[float]]:
    settings = load_settings(None, env={}, base_url=base_url, api_key="sim-dummy-key",
                             concurrency=args.concurrency, timeout_s=30)
    campaign = Campaign.create(tmp / "bench.db", name="bench", actor="system")
    provider = Provider(settings, campaign, build_price_book(None), get_tokenizer())
    direct_client = async_client(settings)
    stock = together.AsyncTogether(api_key="sim-dummy-key", base_url=base_url, max_retries=0)
    out: dict[str, list[float]] = {"direct": [], "stock": [], "provider": []}

    async def main() -> None:
        await run_direct(direct_client, 200, args.concurrency)  # warm both pools and the server
        await run_provider(provider, 200, -1)
        for r in range(args.rounds):
            out["direct"].append(await run_direct(direct_client, args.calls, args.concurrency))
            out["provider"].append(await run_provider(provider, args.calls, r))
            out["stock"].append(await run_direct(stock, args.calls, args.concurrency))

    asyncio.run(main())
    calls = campaign.state.part(CALLS)
    expected = args.calls * args.rounds + 200
    assert calls.completed == expected and calls.started == expected and not calls.in_flight, calls.to_json()
    # All events are committed: re-read them from the file through a fresh connection.
    reread = Campaign.open(tmp / "bench.db", readonly=True)
    assert reread.state.part(CALLS).completed == expected
    reread.close()
    campaign.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    proc, base_url = start_sim(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="dpo-tui-bench-") as tmp:
            out = bench(args, base_url, Path(tmp))
    finally:
        proc.terminate()
        proc.wait(10)
    ideal = args.concurrency / (args.latency_ms / 1000.0)
    best = {k: max(v) for k, v in out.items()}
    print(f"{args.calls} calls x {args.rounds} rounds, concurrency {args.concurrency}, latency {args.latency_ms:g} ms, "
          f"{os.cpu_count()} CPUs, simulator in its own process")
    print(f"{'variant':<10} {'best calls/s':>12} {'median':>8} {'of ideal':>9} {'of direct':>10}")
    print(f"{'ideal':<10} {ideal:>12.0f} {'':>8} {'100%':>9}")
    for k in ("direct", "stock", "provider"):
        print(f"{k:<10} {best[k]:>12.0f} {statistics.median(out[k]):>8.0f} {best[k] / ideal:>9.0%} "
              f"{best[k] / best['direct']:>10.0%}")
    ratio = statistics.median(out["provider"]) / statistics.median(out["direct"])
    print(f"provider / direct (medians): {ratio:.0%} -> target >= 80%: {'met' if ratio >= 0.8 else 'MISSED'}")
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
