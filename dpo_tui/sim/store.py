"""Simulator state: JSON collections (and file blobs) under --state-dir, or in memory.

Every mutation is written through atomically (temp file + rename), so a restarted
simulator knows the files, jobs, tuned models and endpoints of the previous run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

COLLECTIONS = ("files", "jobs", "models", "endpoints", "deployments", "adapters", "meta")


class Store:
    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(state_dir) if state_dir else None
        self.lock = threading.RLock()
        self.data: dict[str, dict[str, Any]] = {c: {} for c in COLLECTIONS}
        self._blobs: dict[str, bytes] = {}
        if self.dir is not None:
            (self.dir / "blobs").mkdir(parents=True, exist_ok=True)
            for c in COLLECTIONS:
                p = self.dir / f"{c}.json"
                if p.is_file():
                    self.data[c] = json.loads(p.read_text(encoding="utf-8"))

    def __getitem__(self, collection: str) -> dict[str, Any]:
        return self.data[collection]

    def save(self, collection: str) -> None:
        if self.dir is None:
            return
        with self.lock:
            p = self.dir / f"{collection}.json"
            tmp = p.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.data[collection], indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, p)

    def put(self, collection: str, key: str, obj: Any) -> None:
        with self.lock:
            self.data[collection][key] = obj
            self.save(collection)

    def delete(self, collection: str, key: str) -> None:
        with self.lock:
            self.data[collection].pop(key, None)
            self.save(collection)

    def put_blob(self, key: str, content: bytes) -> None:
        if self.dir is None:
            self._blobs[key] = content
            return
        p = self.dir / "blobs" / key
        tmp = p.with_name(key + ".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, p)

    def get_blob(self, key: str) -> bytes | None:
        if self.dir is None:
            return self._blobs.get(key)
        p = self.dir / "blobs" / key
        return p.read_bytes() if p.is_file() else None

    def delete_blob(self, key: str) -> None:
        if self.dir is None:
            self._blobs.pop(key, None)
        else:
            (self.dir / "blobs" / key).unlink(missing_ok=True)
