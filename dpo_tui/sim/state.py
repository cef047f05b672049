"""Everything the simulator knows, shared by the route modules (one instance per server)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from dpo_tui.provider.prices import PriceTable, load_prices
from dpo_tui.provider.tokenizer import QwenTokenizer, get_tokenizer
from dpo_tui.sim.capacity import Capacity
from dpo_tui.sim.faults import FaultInjector
from dpo_tui.sim.references import References
from dpo_tui.sim.store import Store


class SimState:
    """Options (seconds are wall-clock; tests make them small):

    job_stage_seconds: time a fine-tune job spends in each status before the next one.
    provision_seconds: time a deployment spends PROVISIONING (and STOPPING) before READY (STOPPED).
    replica_slots, serving_scale: a dedicated deployment's capacity (capacity.py): requests a
        replica serves at once, and the published serving time's scale (0: calls answer at once).
    references: suite specs whose reference fixes the simulated models perceive (references.py);
        the packaged fixtures are always known.
    """

    def __init__(self, *, seed: int = 0, faults: Any = None, state_dir: Any = None,
                 job_stage_seconds: float = 1.0, provision_seconds: float = 1.0,
                 prices: PriceTable | None = None, tokenizer: QwenTokenizer | None = None,
                 clock: Any = time.time, references: Any = (), replica_slots: int = 8,
                 serving_scale: float = 0.01) -> None:
        self.seed = seed
        self.references = References(references or ())
        self.faults = FaultInjector(faults, seed)
        self.store = Store(state_dir)
        self.prices = prices or load_prices()
        self.tokenizer = tokenizer or get_tokenizer()
        self.job_stage_seconds = float(job_stage_seconds)
        self.provision_seconds = float(provision_seconds)
        self.clock = clock
        self.capacity = Capacity(replica_slots=replica_slots, serving_scale=serving_scale)
        self.lock = threading.RLock()
        # ids are never reused, as Together's are not: a simulator restarted on the same state
        # (a resumed campaign) draws its ids from a stream of its own, one per start
        starts = int(self.store["meta"].get("starts", 0))
        self.store.put("meta", "starts", starts + 1)
        self._rng = random.Random(f"ids:{seed}" if starts == 0 else f"ids:{seed}:{starts}")

    def now(self) -> float:
        return float(self.clock())

    def new_id(self, prefix: str, n: int = 12) -> str:
        with self.lock:
            return prefix + uuid.UUID(int=self._rng.getrandbits(128), version=4).hex[:n]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
