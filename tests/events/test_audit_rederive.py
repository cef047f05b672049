"""Audit re-derives the export and the spend by stage from the log alone, performed on a real
finished campaign (the small demo on the embedded simulator) with the attacker's tools of
test_audit_trust: rows edited with the triggers dropped, the chain re-hashed, no key at hand."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store
from tests.events.test_audit_trust import audit_json, finished, forge, last_index, no_key, rules  # noqa: F401 - fixtures




def _export(db: Path) -> dict:
    with open_store(db, readonly=True) as store:
        return next(e.payload for e in store.read() if e.type == "pairs.exported" and not e.payload["label_swap"])


@pytest.fixture
def files_gone(finished: Path):
    """The export's three files moved away for the test (they belong to the shared template)."""
    x = _export(finished)
    moved = []
    for kind in ("together", "trl", "manifest"):
        path = Path(x[f"{kind}_path"])
        aside = path.with_name(path.name + ".aside")
        path.rename(aside)
        moved.append((aside, path))
    yield x
    for aside, path in moved:
        aside.rename(path)


# -- the export, rebuilt from the log alone -------------------------------------------------

def test_the_export_rebuilt_from_the_log_hashes_to_the_logged_sha256_with_its_files_gone(finished, files_gone, cli):
    code, report = audit_json(cli, finished)
    assert code == 0, report["problems"]
    assert not [w for w in report["warnings"] if w["rule"] == "export-derivation"], report["warnings"]


def test_the_rebuilt_bytes_are_the_bytes_the_writer_wrote(finished, finished_demo_template):
    from dpo_tui.campaign.rederive import rebuilt_export

    x = _export(finished)
    c = Campaign.open(finished, readonly=True)
    try:
        blobs = rebuilt_export(c.state, x)
    finally:
        c.close()
    for kind in ("together", "trl", "manifest"):
        assert blobs[kind] == Path(x[f"{kind}_path"]).read_bytes()


def test_a_forged_export_hash_fails_with_the_files_gone(finished, files_gone, cli, no_key):
    def edit(rows):
        p = rows[last_index(rows, "pairs.exported")]["payload"]
        p["together_sha256"] = hashlib.sha256(b"another file").hexdigest()
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "export-derivation" in rules(report) and not rules(report) & {"hash", "prev-hash"}
    assert any("rebuilt from the log" in p["message"] for p in report["problems"])


def test_a_forged_pair_program_fails_with_the_files_gone(finished, files_gone, cli, no_key):
    chosen = None

    def edit(rows):
        nonlocal chosen
        built = rows[last_index(rows, "pairs.built")]["payload"]
        pair = next(x for x in built["pairs"] if x["pair_id"] == files_gone["pair_ids"][0])
        chosen = pair["chosen"]
        i = next(i for i, r in enumerate(rows) if r["type"] == "rollout.finished"
                 and r["payload"]["rollout_id"] == chosen)
        rows[i]["payload"]["final_program"] += "\n# trained on, but never produced\n"
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "export-derivation" in rules(report)


def test_a_forged_baseline_report_changes_the_rebuilt_prompt_and_fails(finished, files_gone, cli, no_key):
    def edit(rows):
        built = rows[last_index(rows, "pairs.built")]["payload"]
        task = next(x for x in built["pairs"] if x["pair_id"] == files_gone["pair_ids"][0])["task_id"]
        i = next(i for i, r in enumerate(rows) if r["type"] == "task.baseline" and r["payload"]["task_id"] == task)
        rows[i]["payload"]["report"]["output"] += "\nnot what the model saw"
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "export-derivation" in rules(report)


# -- spend by stage, re-derived -------------------------------------------------------------

def test_spend_by_stage_is_rederived_from_calls_and_billing_and_matches_the_fold(finished):
    from dpo_tui.campaign.rederive_spend import SPEND_DERIVATION

    c = Campaign.open(finished, readonly=True)
    try:
        again = c.state.part(SPEND_DERIVATION).spend_by_stage()
        spend = c.state.part("spend")
    finally:
        c.close()
    assert set(again) >= {"pilot", "rollouts", "training", "eval", "endpoint", "management"}
    # the pilot is part of the rollouts stage; the demo's dedicated generator bills minutes, its calls $0 per token
    assert again["rollouts"] > again["pilot"] >= 0
    assert again["management"] == 0.0  # the API's management calls are not billed
    for stage, usd in spend.by_stage.items():
        assert again[stage] == pytest.approx(usd, abs=1e-9)


def test_a_forged_pilot_cost_fails_under_spend_by_stage(finished, cli, no_key):
    def edit(rows):
        rows[last_index(rows, "budget.pilot_calibrated")]["payload"]["pilot"]["cost_per_rollout"] += 0.01
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "spend-by-stage" in rules(report) and not rules(report) & {"hash", "prev-hash"}
    assert any("pilot" in p["message"] for p in report["problems"])


def test_a_forged_remaining_budget_fails_under_spend_by_stage(finished, cli, no_key):
    def edit(rows):
        rows[last_index(rows, "train.price_estimated")]["payload"]["remaining_budget_usd"] += 1.0
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "spend-by-stage" in rules(report)


def test_dropped_endpoint_billing_fails_under_spend_by_stage(finished, cli, no_key):
    def drop(rows):
        ep = rows[last_index(rows, "endpoint.stopped")]["payload"]["endpoint_id"]
        return [r for r in rows if not (r["type"] in ("endpoint.billed", "endpoint.stopped")
                                        and r["payload"]["endpoint_id"] == ep)]

    forge(finished, drop)
    code, report = audit_json(cli, finished)
    assert code == 1 and "spend-by-stage" in rules(report)
    assert any("served calls" in p["message"] for p in report["problems"] if p["rule"] == "spend-by-stage")


def test_a_forged_endpoint_billing_figure_fails_under_spend_by_stage(finished, cli, no_key):
    def edit(rows):
        rows[last_index(rows, "endpoint.billed")]["payload"]["cost_usd"] = 1.0
        return rows

    forge(finished, edit)
    code, report = audit_json(cli, finished)
    assert code == 1 and "spend-by-stage" in rules(report)
