"""DPO's whole knob set from the plan to the simulator's job, and the training metrics as
events: one small demo campaign up to training, through the real SDK and the simulator."""

from __future__ import annotations

import json

import pytest
import together

from dpo_tui.campaign.runner import run_campaign
from dpo_tui.events.store import open_store
from dpo_tui.sim.server import SimServer
from tests.conftest import run_dpo_tui, small_demo_plan

KNOBS = ("dpo_beta", "rpo_alpha", "simpo_gamma", "dpo_normalize_logratios_by_length", "dpo_reference_free",
         "n_evals", "n_checkpoints", "validation_share", "random_seed", "n_epochs", "batch_size", "learning_rate")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("knobs")
    plan = folder / "plan.toml"
    # a learning rate too small to move the policy: the loss stays at ln 2, a failure sign
    plan.write_text(small_demo_plan(**{"random_seed = 42": "random_seed = 42\nrpo_alpha = 0.25\n"
                                       "validation_share = 0.25\nn_evals = 2\nn_checkpoints = 2",
                                       "learning_rate = 1e-5": "learning_rate = 1e-8"}))
    db = folder / "c.db"
    result = run_campaign(plan, db, until="train", yes=True)
    assert result.exit_code == 0, result.message
    return db, result


def test_every_knob_is_logged_sent_and_the_validation_file_holds_back_whole_train_tasks(trained):
    db, _ = trained
    replay = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    hp = replay["training"]["hyperparameters"]
    assert set(KNOBS) <= set(hp), set(KNOBS) - set(hp)
    assert (hp["rpo_alpha"], hp["simpo_gamma"], hp["dpo_normalize_logratios_by_length"], hp["n_evals"],
            hp["n_checkpoints"], hp["validation_share"]) == (0.25, 0.0, False, 2, 2, 0.25)
    with open_store(db, readonly=True) as store:
        events = list(store.read())
    up = next(e.payload for e in events if e.type == "train.file_uploaded")
    assert up["validation_file_id"] and up["held_back_tasks"]
    exported = next(e.payload for e in events if e.type == "pairs.exported")
    manifest = [json.loads(x) for x in open(exported["manifest_path"]) if x.strip()]
    train_tasks = {m["task_id"] for m in manifest}
    assert set(up["held_back_tasks"]) < train_tasks  # some, never all, and only train tasks
    held_lines = sum(m["task_id"] in up["held_back_tasks"] for m in manifest)
    assert up["bytes"] < (db.parent / exported["together_path"]).stat().st_size
    requested = next(e.payload for e in events if e.type == "train.job_requested")
    assert requested["validation_file_id"] == up["validation_file_id"] and held_lines > 0
    job_id = next(e.payload["job_id"] for e in events if e.type == "train.job_created")
    with SimServer(state_dir=db.with_name(f"{db.name}.sim")) as sim:  # what the simulator was sent
        client = together.Together(api_key="sim-key", base_url=sim.base_url, max_retries=0)
        job = client.fine_tuning.retrieve(job_id)
    assert job.validation_file == up["validation_file_id"] and job.n_evals == 2 and job.n_checkpoints == 2
    method = job.training_method.model_dump()
    assert method["rpo_alpha"] == 0.25 and method["simpo_gamma"] == 0.0 and method["dpo_beta"] == 0.1


def test_knobs_at_their_defaults_are_logged_and_sent_explicitly():
    from dpo_tui.campaign.plan import demo_plan_path, load_plan
    from dpo_tui.campaign.train import hyperparameters, sdk_hyperparameters

    plan = load_plan(demo_plan_path())
    hp, sent = hyperparameters(plan), sdk_hyperparameters(plan)
    assert set(KNOBS) <= set(hp)
    assert {k: sent[k] for k in ("rpo_alpha", "simpo_gamma", "dpo_normalize_logratios_by_length", "n_evals",
                                 "n_checkpoints")} == {"rpo_alpha": 0.0, "simpo_gamma": 0.0,
                                                       "dpo_normalize_logratios_by_length": False, "n_evals": 0,
                                                       "n_checkpoints": 1}
    simpo = plan.model_copy(update={"training": plan.training.model_copy(update={"simpo_gamma": 0.5})})
    assert hyperparameters(simpo)["dpo_reference_free"] and hyperparameters(simpo)["dpo_normalize_logratios_by_length"]


@pytest.mark.parametrize("field,value,needle", [
    ("batch_size", 64, "training.batch_size: 64 is outside Qwen/Qwen2.5-7B-Instruct's DPO limits [8, 16]"),
    ("n_checkpoints", 11, "training.n_checkpoints: 11 is outside"),
    ("lora_r", 128, "training.lora_r: 128 is outside"),
    ("max_seq_length", 16384, "training.max_seq_length: 16384 is outside"),
])
def test_knobs_outside_the_model_limits_name_the_field(field, value, needle):
    from together.types import FinetuneModelLimits

    from dpo_tui.campaign.plan import demo_plan_path, load_plan
    from dpo_tui.campaign.train import check_limits
    from dpo_tui.errors import EXIT_USAGE, InputError
    from dpo_tui.sim import catalog

    plan = load_plan(demo_plan_path())
    limits = FinetuneModelLimits.model_validate(catalog.model_limits(catalog.base_model(plan.models.policy_base)))
    check_limits(plan, limits)  # the demo fits
    bad = plan.model_copy(update={"training": plan.training.model_copy(update={field: value})})
    with pytest.raises(InputError) as exc:
        check_limits(bad, limits)
    assert needle in exc.value.message and exc.value.exit_code == EXIT_USAGE


def test_metrics_become_events_and_the_flat_loss_is_a_warning_in_the_summary_and_the_report(trained):
    db, result = trained
    with open_store(db, readonly=True) as store:
        events = list(store.read())
    metrics = [e for e in events if e.type == "training.metrics"]
    assert metrics and metrics[-1].payload["final"]
    finished = next(i for i, e in enumerate(events) if e.type == "train.job_finished")
    assert events.index(metrics[-1]) < finished  # read before the job's end is logged
    rows = [r for e in metrics for r in e.payload["rows"]]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, len(train_rows) + 1)) and len(train_rows) >= 3
    assert sum("eval_loss" in r for r in rows) == 2  # n_evals = 2 on the validation file
    assert all({"loss", "accuracy", "kl", "lr", "grad_norm"} <= set(r) for r in train_rows)
    assert all(r["lr"] == 1e-8 for r in train_rows)
    summary = result.summary["training_metrics"]
    assert any(w.startswith("loss flat at ln 2") for w in summary["warnings"]), summary
    assert summary["steps"] == len(train_rows) and summary["final"] and summary["last"]["step"] == len(train_rows)
    replay = json.loads(run_dpo_tui("replay", "--db", db, "--json").stdout)
    assert replay["training_metrics"]["run-1"]["warnings"] == summary["warnings"]
    report = run_dpo_tui("report", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "Training metrics" in report.stdout and "Warning: loss flat at ln 2" in report.stdout
