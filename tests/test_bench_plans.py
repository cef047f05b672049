"""The plans the benchmarks under tests/perf write load as plans: a plan field that changed
under them (bench_scale asked for a dedicated 7B once the catalogue had none) fails here, in
the default run, and not only when someone runs a 15-minute bench."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.campaign.plan import load_plan
from tests.conftest import SHARED

PERF = Path(__file__).resolve().parent / "perf"


@pytest.fixture(autouse=True)
def perf_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PERF))


def _text_plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def _builders(tmp_path: Path):
    import adaptive_alloc
    import adaptive_eval
    import bench_engine
    import bench_estimates
    import bench_scale

    for quick in (True, False):
        yield f"bench_scale quick={quick}", bench_scale.scale_plan(tmp_path, quick)
        for design in ("fixed", "sequential"):
            for null in (True, False):
                yield (f"adaptive_eval {design} null={null} quick={quick}",
                       _text_plan(tmp_path, adaptive_eval.bench_plan(design, null=null, quick=quick)))
        for allocation in ("uniform", "yield"):
            for generator in sorted(adaptive_alloc.GENERATORS):
                text = adaptive_alloc._plan(SHARED / "benchmarks" / "quixbugs", allocation, quick=quick,
                                            generator=generator)
                yield f"adaptive_alloc {allocation} {generator} quick={quick}", _text_plan(tmp_path, text)
    yield "bench_engine", bench_engine.engine_plan(tmp_path, "http://127.0.0.1:9", 2)
    yield "bench_estimates", bench_estimates.quixbugs_plan(tmp_path)


def test_every_bench_plan_loads(tmp_path):
    loaded = []
    for name, path in _builders(tmp_path):
        try:
            load_plan(path)
        except Exception as exc:  # noqa: BLE001 - name the bench whose plan broke
            pytest.fail(f"{name}: {exc}")
        loaded.append(name)
    assert len(loaded) == 2 * (1 + 4 + 2 * 2) + 2
