"""A property test over random sequences of pair decisions on a real campaign (the demo plan,
smaller, run through the pairs stage on the embedded simulator): operators accept and reject
pairs, export, and training asks for its file. After every step, whatever training would
upload holds no rejected pair: either the export is current, or training refuses it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpo_tui.campaign import pairs as pairs_stage
from dpo_tui.campaign.pairs import read_manifest
from dpo_tui.campaign.plan import load_plan
from dpo_tui.campaign.runner import run_campaign
from dpo_tui.campaign.suites import load_plan_tasks
from dpo_tui.campaign.train import StaleExport, fresh_export
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.tokenizer import get_tokenizer
from tests.conftest import small_demo_plan


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pairs-property")
    plan = d / "plan.toml"
    plan.write_text(small_demo_plan())
    db = d / "c.db"
    result = run_campaign(plan, db, until="pairs", yes=True)
    assert result.exit_code == 0, result.message
    return plan, db


ops = st.lists(st.one_of(st.tuples(st.sampled_from(["accept", "reject"]), st.integers(0, 40)),
                         st.tuples(st.just("export"), st.none()), st.tuples(st.just("train"), st.none())),
               min_size=1, max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops)
def test_no_training_file_ever_holds_a_rejected_pair(exported, actions):
    plan_path, template = exported
    plan = load_plan(plan_path)
    tasks, tok = load_plan_tasks(plan), get_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "c.db"
        for suffix in ("", "-wal"):
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", f"{db}{suffix}")
        with Campaign.open(db) as c:
            ids = [p["pair_id"] for p in c.state.part("pairs").built["pairs"]]
            for kind, arg in actions:
                if kind in ("accept", "reject"):
                    pairs_stage.decide(c, plan, tasks, tok, ids[arg % len(ids)], kind, reason="property",
                                       actor="operator:alice")
                elif kind == "export":
                    pairs_stage.export_decided(c, plan, tasks, tok, actor="operator:alice", reason="property")
                try:
                    x = fresh_export(c)
                except StaleExport:
                    continue  # training refuses: nothing is uploaded
                rejected = {pid for pid, d in c.state.part("pairs").decisions.items() if d == "reject"}
                in_file = {line["pair_id"] for line in read_manifest(x["manifest_path"])}
                assert not in_file & rejected
