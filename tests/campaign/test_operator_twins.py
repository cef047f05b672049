"""Pairs bind, and the console's budget and pairs actions as commands, through the real
`dpo-tui` program (subprocess): an export reflects the pair decisions in force, a later
accept or reject makes it stale, training never uploads a stale export (run --yes
re-exports when the plan allows, else waits), audit flags a job trained on a stale file,
and `cap` / `pairs list|accept|reject|export` are logged with --actor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.domain.export import sha256
from dpo_tui.events.campaign import Campaign
from tests.conftest import run_dpo_tui
from tests.tui.conftest import copy_campaign, demo_template  # noqa: F401 - the session's exported demo campaign


def _events(db: Path, *types: str) -> list:
    with Campaign.open(db, readonly=True) as c:
        return [e for e in c.store.read() if not types or e.type in types]


def _pairs(db: Path) -> list[dict]:
    res = run_dpo_tui("pairs", "list", "--db", db, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["pairs"]


def _reject_an_exported_pair(db: Path, actor: str = "ci-bot") -> str:
    pid = next(p["id"] for p in _pairs(db) if p["exported"])
    res = run_dpo_tui("pairs", "reject", "--db", db, "--pair", pid, "--reason", "chosen side is wrong", "--actor", actor)
    assert res.returncode == 0, res.stderr
    assert "stale" in res.stderr
    return pid


def _manifest_ids(export_payload: dict) -> list[str]:
    lines = Path(export_payload["manifest_path"]).read_text().splitlines()
    return [json.loads(line)["pair_id"] for line in lines if line.strip()]


def test_pairs_list_accept_reject_export_are_logged_with_the_actor(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    pairs = _pairs(db)
    row = pairs[0]
    assert set(row) >= {"id", "task_id", "chosen_score", "rejected_score", "filter", "status", "exported"}
    first_export = _events(db, "pairs.exported")[-1].payload
    assert {p["id"] for p in pairs if p["exported"]} == set(_manifest_ids(first_export))
    assert all(p["status"] == "kept" for p in pairs if p["exported"])
    assert any(p["filter"] is not None and p["status"] == "dropped" and not p["exported"] for p in pairs)
    table = run_dpo_tui("pairs", "list", "--db", db)
    assert table.returncode == 0 and row["id"] in table.stdout and "exported" in table.stdout

    rejected = _reject_an_exported_pair(db, actor="ci-bot")
    dropped = next(p["id"] for p in pairs if p["filter"] == "low_margin")
    res = run_dpo_tui("pairs", "accept", "--db", db, "--pair", dropped, "--reason", "the margin is real",
                      "--actor", "alice")
    assert res.returncode == 0, res.stderr
    after = {p["id"]: p for p in _pairs(db)}
    assert after[rejected]["status"] == "rejected" and after[rejected]["decision"] == "reject"
    assert after[dropped]["status"] == "kept" and not after[dropped]["exported"]

    res = run_dpo_tui("pairs", "export", "--db", db, "--actor", "ci-bot", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["supersedes"] == first_export["together_sha256"]
    ids = _manifest_ids(out)
    assert rejected not in ids and dropped in ids
    assert sha256(Path(out["together_path"]).read_bytes()) == out["together_sha256"]

    decided = [(e.payload["pair_id"], e.payload["decision"], e.payload["reason"], e.actor)
               for e in _events(db, "pairs.decided")]
    assert decided == [(rejected, "reject", "chosen side is wrong", "operator:ci-bot"),
                       (dropped, "accept", "the margin is real", "operator:alice")]
    exported = _events(db, "pairs.exported")[-1]
    assert exported.actor == "operator:ci-bot" and exported.payload["supersedes"] == first_export["together_sha256"]
    assert "re-export" in exported.payload["reason"]
    decisions = [(d.payload["decision"], d.actor) for d in _events(db, "decision.recorded")]
    assert decisions[-1] == ("export_pairs:2", "operator:ci-bot")
    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)["pairs"]
    assert state["export_stale"] is False and state["export_sha256"] == out["together_sha256"]
    assert run_dpo_tui("audit", "--db", db).returncode == 0


def test_pair_actions_refuse_what_the_console_refuses(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    res = run_dpo_tui("pairs", "reject", "--db", db, "--pair", "no-such-pair", "--reason", "x")
    assert res.returncode == 2 and res.stderr.startswith("dpo-tui: error: unknown pair 'no-such-pair'")
    pid = _pairs(db)[0]["id"]
    res = run_dpo_tui("pairs", "reject", "--db", db, "--pair", pid, "--reason", "  ")
    assert res.returncode == 2 and "a reason is required" in res.stderr and "Traceback" not in res.stderr
    bare = tmp_path / "bare.db"
    assert run_dpo_tui("init", "--db", bare, "--name", "bare").returncode == 0
    res = run_dpo_tui("pairs", "export", "--db", bare)
    assert res.returncode == 2 and "no plan yet" in res.stderr
    assert [e.type for e in _events(db, "pairs.decided", "pairs.exported")] == ["pairs.exported"]


def test_cap_is_logged_with_the_actor_and_refuses_like_the_console(tmp_path):
    db = tmp_path / "c.db"
    assert run_dpo_tui("init", "--db", db, "--name", "capped", "--actor", "alice").returncode == 0
    res = run_dpo_tui("cap", "--db", db, "--usd", "0", "--reason", "finance", "--actor", "bob")
    assert res.returncode == 2 and res.stderr.strip() == \
        "dpo-tui: error: budget cap must be a positive number of USD, not 0.0"
    res = run_dpo_tui("cap", "--db", db, "--usd", "two", "--reason", "finance")
    assert res.returncode == 2 and "budget cap: 'two' is not a number of USD" in res.stderr
    res = run_dpo_tui("cap", "--db", db, "--usd", "2.5", "--reason", " ")
    assert res.returncode == 2 and "a reason is required (it is logged with your name)" in res.stderr
    res = run_dpo_tui("cap", "--db", db, "--usd", "$2.50", "--reason", "finance said so", "--actor", "bob")
    assert res.returncode == 0, res.stderr
    caps = [(e.payload["cap_usd"], e.payload["reason"], e.actor) for e in _events(db, "budget.cap_set")]
    assert caps == [(2.5, "finance said so", "operator:bob")]
    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)["budget"]
    assert (state["cap_usd"], state["cap_set_by"]) == (2.5, "operator:bob")


def test_twins_refuse_while_another_process_holds_the_writer_lock(tmp_path):
    db = tmp_path / "c.db"
    assert run_dpo_tui("init", "--db", db, "--name", "locked").returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom dpo_tui.campaign.runner import campaign_lock\n"
        f"with campaign_lock(Path({str(db)!r})):\n    print('held', flush=True)\n    sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (("cap", "--usd", "3", "--reason", "r"), ("pairs", "export"),
                     ("pairs", "reject", "--pair", "p", "--reason", "r")):
            res = run_dpo_tui(*args, "--db", db)
            assert res.returncode == 2, (args, res.stderr)
            assert "another dpo-tui run is writing this campaign" in res.stderr, res.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert [e.type for e in _events(db)] == ["campaign.created"]
    assert run_dpo_tui("cap", "--db", db, "--usd", "3", "--reason", "r").returncode == 0


def test_run_yes_re_exports_a_stale_export_and_trains_without_the_rejected_pair(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    stale = _events(db, "pairs.exported")[-1].payload
    rejected = _reject_an_exported_pair(db)
    assert rejected in _manifest_ids(stale)
    res = run_dpo_tui("run", "--plan", demo_plan_path(), "--db", db, "--until", "train", "--yes", timeout=600)
    assert res.returncode == 0, res.stderr
    assert "pairs: re-exported" in res.stderr and stale["together_sha256"][:12] in res.stderr
    (upload,) = _events(db, "train.file_uploaded")
    trained = next(e.payload for e in _events(db, "pairs.exported")
                   if e.payload["together_sha256"] == upload.payload["export_sha256"])
    assert trained["supersedes"] == stale["together_sha256"] and rejected not in _manifest_ids(trained)
    assert sha256(Path(trained["together_path"]).read_bytes()) == upload.payload["export_sha256"]
    # what the launch commits to, said as the console's confirmation says it (issue 19, point 5)
    assert f"pairs: {trained['pairs']} against the plan's target of " in res.stderr and "base model: " in res.stderr
    assert "hyperparameters: n_epochs=" in res.stderr
    up = upload.payload
    assert f"training file: {up['filename']} (file {up['file_id']}, sha256 {up['sha256'][:16]})" in res.stderr
    assert ("export_pairs:2", "plan") in [(e.payload["decision"], e.actor) for e in _events(db, "decision.recorded")]
    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    assert state["training"]["export_sha256"] == upload.payload["export_sha256"] != stale["together_sha256"]
    assert state["training"]["status"] == "completed"
    assert run_dpo_tui("audit", "--db", db).returncode == 0


def test_run_waits_on_a_stale_export_when_the_plan_does_not_allow_exporting(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    _reject_an_exported_pair(db)
    plan = tmp_path / "plan.toml"
    text = demo_plan_path().read_text()
    assert "export_pairs = true" in text
    plan.write_text(text.replace("export_pairs = true", "export_pairs = false"))
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "train", "--yes", timeout=600)
    assert res.returncode == 4, res.stderr
    assert "re-export the pairs" in res.stderr and "stale" in res.stderr and "decisions.export_pairs" in res.stderr
    assert json.loads(res.stdout)["status"] == "waiting"
    assert _events(db, "train.file_uploaded") == [] and len(_events(db, "pairs.exported")) == 1


def test_audit_flags_a_training_job_on_a_stale_file(demo_template, tmp_path):
    db = copy_campaign(demo_template, tmp_path)
    stale = _events(db, "pairs.exported")[-1].payload
    _reject_an_exported_pair(db)
    assert run_dpo_tui("audit", "--db", db).returncode == 0
    with Campaign.open(db) as c:  # what a front end that ignored the staleness would have logged
        split_hash = c.state.part("split").frozen_hash
        c.append("train.file_uploaded", {"export_sha256": stale["together_sha256"], "file_id": "file-stale",
                                         "filename": Path(stale["together_path"]).name, "bytes": 1,
                                         "processing_status": "COMPLETED"}, actor="system")
        c.append("train.job_requested", {"run_id": "run-1", "file_id": "file-stale", "model": "m", "suffix": "s",
                                         "hyperparameters": {}, "plan_hash": c.state.part("plan").hash,
                                         "split_hash": split_hash, "export_sha256": stale["together_sha256"]},
                 actor="operator:mallory")
        seq = c.state.last_seq
    res = run_dpo_tui("audit", "--db", db, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1 and report["first_bad_seq"] == seq
    (problem,) = [p for p in report["problems"] if p["seq"] == seq]
    assert problem["rule"] == "train-export-current" and "stale" in problem["message"]
    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    assert state["training"]["export_sha256"] == stale["together_sha256"]


def test_init_cap_then_run_plan_keeps_the_operators_cap(tmp_path):
    """May fail until the lead's cap rule lands (runner.stage_budget re-applies the plan's cap)."""
    db = tmp_path / "c.db"
    assert run_dpo_tui("init", "--db", db, "--name", "from-init", "--actor", "alice").returncode == 0
    assert run_dpo_tui("cap", "--db", db, "--usd", "1.25", "--reason", "pilot money only",
                       "--actor", "alice").returncode == 0
    res = run_dpo_tui("run", "--plan", demo_plan_path(), "--db", db, "--until", "budget", timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["budget_cap_usd"] == 1.25
    state = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)["budget"]
    assert (state["cap_usd"], state["cap_set_by"]) == (1.25, "operator:alice")


def test_the_twins_module_loads_no_sdk():
    code = "import sys, dpo_tui.campaign.opcli\nprint(sorted(m for m in ('together', 'textual') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
