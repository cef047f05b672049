"""Every console action of the split, training and gate and its headless twin log the same
events: each step runs once through the console's Session (the service the console calls)
on one copy of a session campaign and once through `dpo-tui split|cancel|override`
(in-process, the real parser) on another copy; the events appended (types, payloads, actor
form) and the refusals (the message) are the same. The README lists every twin, and --help
works on each. (The twins on an evaluated campaign, override and cancel of a finished job,
are in tests/tui/test_eval_pane.py, beside the session campaign they share.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dpo_tui.campaign.plan import demo_plan_path
from dpo_tui.cli import main
from dpo_tui.errors import DpoTuiError
from dpo_tui.events.campaign import Campaign
from tests.tui.conftest import copy_campaign, demo_template, split_template  # noqa: F401 - the session's campaigns

ROOT = Path(__file__).resolve().parents[2]
TWINS = (("cap",), ("pairs", "list"), ("pairs", "build"), ("pairs", "accept"), ("pairs", "reject"), ("pairs", "export"), ("note",),
         ("split", "propose"), ("split", "move"), ("split", "exclude"), ("split", "approve"), ("split", "unfreeze"),
         ("cancel",), ("override",), ("train",), ("approve",), ("budget", "record"), ("endpoint", "stop"))


def _head(db: Path) -> int:
    with Campaign.open(db, readonly=True) as c:
        return c.state.last_seq


def _since(db: Path, seq: int) -> list[tuple]:
    """What was appended after `seq`, as comparable across two copies (no seq, time or hash;
    the files an export writes beside the campaign are named after it: `<db>` stands for that)."""
    with Campaign.open(db, readonly=True) as c:
        return [(e.type, json.loads(json.dumps(e.payload).replace(f"/{db.stem}.", "/<db>.")), e.actor)
                for e in c.store.read(seq) if e.type != "chain.checkpoint"]


class Twins:
    """One campaign copied twice: `console` acts through the Session, `cli` through dpo-tui."""

    def __init__(self, src: Path, tmp: Path, capsys, *, plan: Path | None = None) -> None:
        from dpo_tui.tui.session import Session

        self.a, self.b = copy_campaign(src, tmp, "console.db"), copy_campaign(src, tmp, "cli.db")
        self.start = _head(src)
        self.capsys = capsys
        self.session = Session(self.a, plan_path=plan, actor="operator:alice")

    def step(self, console, *args: str) -> tuple[str | None, str]:
        """Run one action both ways; returns (refusal, the CLI's stdout) once both agree."""
        refused = None
        try:
            console(self.session)
        except DpoTuiError as exc:
            refused = exc.message
        self.capsys.readouterr()
        code = main([*args, "--db", str(self.b), "--actor", "alice"])
        out, err = self.capsys.readouterr()
        if refused is None:
            assert code == 0, err
        else:
            assert (code, err) == (2, f"dpo-tui: error: {refused}\n")
        assert _since(self.a, self.start) == _since(self.b, self.start)
        return refused, out

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def twins(tmp_path, capsys):
    made: list[Twins] = []

    def make(src: Path, plan: Path | None = None) -> Twins:
        made.append(Twins(src, tmp_path / str(len(made)), capsys, plan=plan))
        return made[-1]

    for d in range(3):
        (tmp_path / str(d)).mkdir()
    yield make
    for t in made:
        t.close()


def test_cap_pairs_and_note_log_the_same_events_headless(demo_template, twins):
    """The Budget pane's cap, the Pairs pane's accept, reject and export, and the notes the
    console logs on a running stage, each against `dpo-tui cap|pairs|note`."""
    from dpo_tui.campaign.pairs import pair_rows

    t = twins(demo_template)
    with Campaign.open(demo_template, readonly=True) as c:
        rows = pair_rows(c)
    exported = next(r["id"] for r in rows if r["exported"])
    dropped = next(r["id"] for r in rows if r["filter"] == "low_margin")
    t.step(lambda s: s.set_cap("2.50", "more rollouts"), "cap", "--usd", "2.50", "--reason", "more rollouts")
    assert t.step(lambda s: s.set_cap("lots", "r"), "cap", "--usd", "lots", "--reason", "r")[0] == \
        "budget cap: 'lots' is not a number of USD"
    assert t.step(lambda s: s.set_cap("3", " "), "cap", "--usd", "3", "--reason", " ")[0] == \
        "a reason is required (it is logged with your name)"
    t.step(lambda s: s.decide_pair(exported, "reject", "chosen side is wrong"), "pairs", "reject", "--pair", exported,
           "--reason", "chosen side is wrong")
    t.step(lambda s: s.decide_pair(dropped, "accept", "the margin is real"), "pairs", "accept", "--pair", dropped,
           "--reason", "the margin is real")
    refused, _ = t.step(lambda s: s.decide_pair("nope", "accept", "r"), "pairs", "accept", "--pair", "nope",
                        "--reason", "r")
    assert refused and "nope" in refused
    t.step(lambda s: s.build_pairs(), "pairs", "build")
    t.step(lambda s: s.export_pairs(), "pairs", "export", "--reason", "exported in the TUI")
    t.step(lambda s: s.note("rollouts paused by the operator", "rollouts"), "note", "--text",
           "rollouts paused by the operator", "--stage", "rollouts")
    assert t.step(lambda s: s.note("  ", "rollouts"), "note", "--text", "  ", "--stage", "rollouts")[0] == \
        "--text is empty: a note needs text"
    got = _since(t.b, t.start)
    types = [e[0] for e in got]
    assert types == ["budget.cap_set", "pairs.decided", "pairs.built", "pairs.decided", "pairs.built", "pairs.built",
                     "decision.recorded", "pairs.exported", "note.added"], types
    assert {e[2] for e in got} == {"operator:alice"}
    assert got[7][1]["supersedes"] and "<db>" in got[7][1]["together_path"]


def test_split_actions_log_the_same_events_headless(split_template, twins):
    t = twins(split_template)
    with Campaign.open(split_template, readonly=True) as c:
        split = c.state.part("split").split
    a, b, x = split.train[0], split.test[0], split.train[1]
    t.step(lambda s: s.move(a, "test", "leaks into test"), "split", "move", "--task", a, "--to", "test",
           "--reason", "leaks into test")
    _, out = t.step(lambda s: s.move(b, None, "back to train"), "split", "move", "--task", b,
                    "--reason", "back to train", "--json")
    (moved,) = json.loads(out)["events"]
    assert (moved["type"], moved["actor"], moved["payload"]["to"]) == ("split.task_moved", "operator:alice", "train")
    t.step(lambda s: s.exclude(x, "flaky tests"), "split", "exclude", "--task", x, "--reason", "flaky tests")
    assert t.step(lambda s: s.exclude(a, " "), "split", "exclude", "--task", a, "--reason", " ")[0] == \
        "excluding a task needs a reason"
    assert t.step(lambda s: s.move("nope", "train"), "split", "move", "--task", "nope", "--to", "train",
                  "--reason", "r")[0] == "unknown task 'nope'"
    assert t.step(lambda s: s.unfreeze_split("r"), "split", "unfreeze", "--reason", "r")[0] == "the split is not frozen"
    t.step(lambda s: s.approve_split(), "split", "approve")
    refused, _ = t.step(lambda s: s.move(a, "train", "r"), "split", "move", "--task", a, "--to", "train",
                        "--reason", "r")
    assert refused.startswith("the split is frozen (")
    _, out = t.step(lambda s: s.approve_split(), "split", "approve", "--json")
    assert json.loads(out) == {"events": []}
    t.step(lambda s: s.unfreeze_split("a test task leaked"), "split", "unfreeze", "--reason", "a test task leaked")
    got = _since(t.b, t.start)
    assert [e[0] for e in got] == ["split.task_moved", "split.task_moved", "split.task_excluded", "split.approved",
                                   "split.unfrozen"]
    assert {e[2] for e in got} == {"operator:alice"}


def test_propose_on_a_campaign_without_a_plan_records_it_and_proposes(tmp_path, twins, capsys):
    bare = tmp_path / "bare.db"
    assert main(["init", "--db", str(bare), "--name", "bare"]) == 0
    t = twins(bare, plan=demo_plan_path())
    _, out = t.step(lambda s: s.propose_split(), "split", "propose", "--plan", str(demo_plan_path()))
    assert "split proposed by operator:alice" in out
    assert [e[0] for e in _since(t.b, t.start)] == ["plan.recorded", "tasks.snapshot", "split.proposed"]
    _, out = t.step(lambda s: s.propose_split(), "split", "propose")
    assert "already proposed" in out


def test_cancel_refuses_like_the_console_and_while_the_lock_is_held(split_template, twins, capsys):
    from dpo_tui.campaign.runner import campaign_lock

    t = twins(split_template)
    assert t.step(lambda s: s.cancel_training("wrong beta"), "cancel", "--reason", "wrong beta")[0] == \
        "no DPO job has been launched in this campaign"
    with campaign_lock(t.b.resolve()):  # as an open console or a running `dpo-tui run` holds it
        assert main(["cancel", "--db", str(t.b), "--reason", "wrong beta"]) == 2
    err = capsys.readouterr().err
    assert "another dpo-tui run is writing this campaign" in err
    assert "Cancel the job from the process that holds it (the console: Train, c)" in err
    assert _since(t.b, t.start) == []


def test_override_before_the_gate_decided_is_refused_alike(split_template, twins):
    t = twins(split_template)
    assert t.step(lambda s: s.override_gate("ship", "the held-out suite is fine"), "override", "--decision", "ship",
                  "--reason", "the held-out suite is fine")[0] == "the gate has not decided yet: nothing to override"


def test_approvals_and_the_recorded_estimate_log_the_same_events_headless(split_template, twins, capsys):
    """The confirmations' go (pilot, then the rest of the rollouts) and Budget's ctrl+r, each
    against `dpo-tui approve` and `dpo-tui budget record`; a go the cap cannot hold is refused
    alike (exit 3), and so is a stage that waits for no go."""
    from dpo_tui.campaign import outlook

    t = twins(split_template)
    t.step(lambda s: s.approve_split(), "split", "approve")
    t.step(lambda s: s.record_what_if({"avg_iters": 2.0}, {"rollouts_per_task": 3}), "budget", "record",
           "--avg-iters", "2", "--rollouts-per-task", "3")
    refused, _ = t.step(lambda s: s.record_what_if({"avg_iters": "two"}, {}), "budget", "record", "--avg-iters", "two")
    assert refused.startswith("budget.avg_iters: ")
    with Campaign.open(t.a, readonly=True) as c:
        pilot = outlook.rollouts(c, t.session.plan.plan)
    t.step(lambda s: s.set_cap("0.001", "a tight cap"), "cap", "--usd", "0.001", "--reason", "a tight cap")
    with pytest.raises(DpoTuiError) as exc:
        t.session.approve("run_pilot", "rollouts", reason="confirmed in the TUI", estimate_usd=pilot["pilot_usd"])
    assert exc.value.exit_code == 3 and "The pilot is estimated at $" in exc.value.message
    capsys.readouterr()
    assert main(["approve", "--db", str(t.b), "--stage", "rollouts", "--reason", "go", "--actor", "alice"]) == 3
    assert capsys.readouterr().err == f"dpo-tui: error: {exc.value.message}\n"
    t.step(lambda s: s.set_cap("5", "room again"), "cap", "--usd", "5", "--reason", "room again")
    _, out = t.step(lambda s: s.approve("run_pilot", "rollouts", reason="pilot approved by alice",
                                        estimate_usd=pilot["pilot_usd"]),
                    "approve", "--stage", "rollouts", "--reason", "pilot approved by alice", "--json")
    (go,) = [e for e in json.loads(out)["events"] if e["type"] != "chain.checkpoint"]  # a decision is checkpointed
    assert (go["type"], go["actor"], go["payload"]["decision"], go["payload"]["estimate_usd"]) == (
        "decision.recorded", "operator:alice", "run_pilot", pilot["pilot_usd"])
    refused, _ = t.step(lambda s: s.approve("run_eval", "eval", reason="r", estimate_usd=None), "approve", "--stage",
                        "eval", "--reason", "r")
    assert refused == "the eval compares base against the tuned model: finish training run-1 first"
    refused, _ = t.step(lambda s: s.stop_endpoint("ep-nope", "r"), "endpoint", "stop", "--id", "ep-nope", "--reason", "r")
    assert refused == "no endpoint 'ep-nope' in this campaign's log"
    got = _since(t.b, t.start)
    assert [e[0] for e in got] == ["split.approved", "budget.estimated", "budget.cap_set", "budget.cap_set",
                                   "decision.recorded"]
    assert {e[2] for e in got} == {"operator:alice"}


@pytest.mark.parametrize("twin", TWINS, ids=" ".join)
def test_each_twin_has_help_and_a_readme_row(twin, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*twin, "--help"])
    assert exit_.value.code == 0 and "--db" in capsys.readouterr().out
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `dpo-tui ")]
    name = " ".join(twin)
    assert any(re.match(rf"\| `dpo-tui {re.escape(name)}\b", r) or
               (len(twin) == 2 and re.match(rf"\| `dpo-tui {twin[0]} [a-z|\\]*\b{twin[1]}\b", r)) for r in rows), name


def test_the_twins_load_no_sdk_for_help():
    import subprocess
    import sys

    code = "import sys, dpo_tui.campaign.twins\nprint(sorted(m for m in ('together', 'textual') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_approving_a_launch_headless_prints_what_the_consoles_confirmation_shows(demo_template, tmp_path, capsys):
    """`approve --stage train` commits the same launch as the console's dialog: it says so in
    the dialog's own lines (pairs against the target, model, hyperparameters, file and hash)."""
    from dpo_tui.campaign.runner import run_campaign
    from dpo_tui.tui.session import Session
    from tests.tui.conftest import copy_with_sim

    db = copy_with_sim(demo_template, tmp_path)
    priced = run_campaign(demo_plan_path(), db, until="train")  # uploaded and priced: waits for the launch's go
    assert priced.status == "waiting", priced.message
    session = Session(db, actor="operator:alice")
    try:
        dialog = session.launch_lines(session.train_plan()["launch"])
    finally:
        session.close()
    capsys.readouterr()
    assert main(["approve", "--db", str(db), "--stage", "train", "--reason", "launch as priced", "--actor", "alice"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == dialog and len(dialog) == 4
    assert dialog[0].startswith("pairs: ") and "against the plan's target of" in dialog[0]
    assert "sha256 " in dialog[3] and out[-1].startswith("launch_training approved by operator:alice (estimated $")
