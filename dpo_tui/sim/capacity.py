"""What a dedicated deployment can serve at once: replicas x slots, each request holding a
slot for its service time; requests beyond that wait their turn, and beyond `queue_factor`
times the slots the deployment answers 503 (overloaded).

A replica batches `replica_slots` requests at full speed (a simulator choice, the knee of a
real GPU's batching curve), and a request's service time is the profile's published figures,
time-to-first-token plus completion tokens at the decoding speed (catalog.py
`performanceBenchmarks`), scaled by `serving_scale` (0.01: a hundred times faster than the
published speed, so a demo's eval takes seconds; 0: no service time, every call answers at
once). So throughput grows with concurrency up to the slots and then only latency does:
what the eval's concurrency controller (campaign/concurrency.py) has to find.
Serverless models have no capacity here (Together's dynamic rate limits model them,
faults.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

TTFT_MS = 180.0  # catalog.py performanceBenchmarks: timeToFirstTokenMs
DECODE_TPS = 120.0  # catalog.py performanceBenchmarks: decodingSpeedTps


@dataclass
class _Deployment:
    busy: int = 0
    waiting: int = 0
    served: int = 0
    peak: int = 0  # the most served at once
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)


class Capacity:
    def __init__(self, *, replica_slots: int = 8, serving_scale: float = 0.01, queue_factor: float = 8.0) -> None:
        if replica_slots < 1 or serving_scale < 0 or queue_factor < 0:
            raise ValueError("replica_slots >= 1, serving_scale >= 0 and queue_factor >= 0")
        self.replica_slots, self.serving_scale, self.queue_factor = replica_slots, serving_scale, queue_factor
        self._deps: dict[str, _Deployment] = {}

    def service_seconds(self, completion_tokens: int) -> float:
        return (TTFT_MS / 1000 + completion_tokens / DECODE_TPS) * self.serving_scale

    def stats(self, deployment_id: str) -> dict[str, int]:
        d = self._deps.get(deployment_id, _Deployment())
        return {"busy": d.busy, "waiting": d.waiting, "served": d.served, "peak": d.peak}

    async def serve(self, deployment_id: str, replicas: int, completion_tokens: int) -> str | None:
        """Hold one of the deployment's slots for the request's service time, waiting for one
        while all are busy. Returns why it refused instead (the queue is already
        `queue_factor` x slots long: the route answers 503), else None once served."""
        seconds = self.service_seconds(completion_tokens)
        if seconds <= 0:
            return None
        d = self._deps.setdefault(deployment_id, _Deployment())
        slots = max(1, replicas) * self.replica_slots
        if d.busy >= slots and d.waiting >= self.queue_factor * slots:
            return f"{d.waiting} requests are queued for its {slots} slots"
        async with d.freed:
            d.waiting += 1
            try:
                await d.freed.wait_for(lambda: d.busy < slots)
            finally:
                d.waiting -= 1
            d.busy += 1
            d.peak = max(d.peak, d.busy)
        try:
            await asyncio.sleep(seconds)
        finally:
            async with d.freed:
                d.busy -= 1
                d.served += 1
                d.freed.notify_all()
        return None
