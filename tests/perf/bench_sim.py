"""Chat calls/s the simulator serves through AsyncTogether, against a bare aiohttp server.

Each level alternates simulator and bare twice and keeps each one's best rate, since
other work on a shared machine skews a single pass. Both servers run in their own subprocess on loopback (so the client's event loop does not
share a GIL with them); the bare server answers every POST with one fixed chat-completion
body. The figure is the ratio simulator / bare at each concurrency (target >= 0.5 at 64).

    python tests/perf/bench_sim.py            or    pytest tests/perf/bench_sim.py -s
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from together import AsyncTogether

LEVELS = ((1, 150), (16, 600), (64, 1200))   # (concurrency, calls): bounded loops
MODEL = "Qwen/Qwen2.5-7B-Instruct-Turbo"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]

BARE = r'''
import json, sys
from aiohttp import web
BODY = json.dumps({"id": "chatcmpl-bare", "object": "chat.completion", "created": 1732400000,
    "model": "Qwen/Qwen2.5-7B-Instruct-Turbo", "prompt": [],
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop",
                 "logprobs": None}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}).encode()
async def chat(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    import asyncio
    await asyncio.Event().wait()
import asyncio
asyncio.run(main())
'''


def _start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"server did not start: {url!r}")
    return proc, url


async def _rate(base_url: str, concurrency: int, calls: int) -> float:
    client = AsyncTogether(api_key="sim-key", base_url=base_url, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            r = await client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=i % 7)
            assert r.choices[0].message.content

    await asyncio.gather(*(one(i) for i in range(min(calls, 2 * concurrency))))  # warm-up, connections
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return calls / elapsed


def run() -> dict[int, tuple[float, float, float]]:
    sim, sim_url = _start([sys.executable, "-m", "dpo_tui.cli", "sim", "serve", "--port", "0"])
    bare, bare_url = _start([sys.executable, "-c", BARE])
    out = {}
    try:
        for conc, calls in LEVELS:  # alternate twice and keep each server's best (load on a shared box)
            s = b = 0.0
            for _round in range(2):
                s = max(s, asyncio.run(_rate(sim_url, conc, calls)))
                b = max(b, asyncio.run(_rate(bare_url, conc, calls)))
            out[conc] = (s, b, s / b)
            print(f"concurrency {conc:3d}: simulator {s:8.1f} calls/s   bare aiohttp {b:8.1f} calls/s   "
                  f"ratio {s / b:.2f}", flush=True)
    finally:
        for p in (sim, bare):
            p.terminate()
            p.wait(10)
    return out


def test_simulator_throughput_vs_bare_server():
    res = run()
    assert res[64][2] >= 0.5, f"simulator/bare ratio at concurrency 64 is {res[64][2]:.2f} (< 0.5)"


if __name__ == "__main__":
    print(f"cpus: {os.cpu_count()}  (client, simulator and bare server share them)")
    r = run()
    print(json.dumps({str(k): {"sim": round(v[0], 1), "bare": round(v[1], 1), "ratio": round(v[2], 3)}
                      for k, v in r.items()}))
    sys.exit(0 if r[64][2] >= 0.5 else 1)
