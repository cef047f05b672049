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
from tests.tui.conftest import copy_campaign, split_template  # noqa: F401 - the session's split campaign

ROOT = Path(__file__).resolve().parents[2]
TWINS = (("split", "propose"), ("split", "move"), ("split", "exclude"), ("split", "approve"),
         ("split", "unfreeze"), ("cancel",), ("override",))


def _head(db: Path) -> int:
    with Campaign.open(db, readonly=True) as c:
        return c.state.last_seq


def _since(db: Path, seq: int) -> list[tuple]:
    """What was appended after `seq`, as comparable across two copies (no seq, time or hash)."""
    with Campaign.open(db, readonly=True) as c:
        return [(e.type, e.payload, e.actor) for e in c.store.read(seq) if e.type != "chain.checkpoint"]


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


@pytest.mark.parametrize("twin", TWINS, ids=" ".join)
def test_each_twin_has_help_and_a_readme_row(twin, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*twin, "--help"])
    assert exit_.value.code == 0 and "--db" in capsys.readouterr().out
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `dpo-tui ")]
    name = " ".join(twin)
    assert any(re.match(rf"\| `dpo-tui {re.escape(name)}\b", r) or
               (twin[0] == "split" and re.match(r"\| `dpo-tui split [a-z|\\]*" + twin[1], r)) for r in rows), name


def test_the_twins_load_no_sdk_for_help():
    import subprocess
    import sys

    code = "import sys, dpo_tui.campaign.twins\nprint(sorted(m for m in ('together', 'textual') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
