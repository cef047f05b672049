"""End to end: the real `dpo-tui tui` in tmux at 80x24, driven by key presses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from dpo_tui.campaign.plan import demo_plan_path
from tests.tui.tmux import Tmux, count

pytestmark = pytest.mark.slow
TUI = [sys.executable, "-m", "dpo_tui.cli", "tui"]


@pytest.fixture
def term():
    opened: list[Tmux] = []

    def start(*args: str, cwd) -> Tmux:
        t = Tmux([*TUI, *args], cwd=cwd)
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


def test_keys_1_to_7_show_every_stage(demo_db, term):
    t = term("--db", str(demo_db), cwd=demo_db.parent)
    t.wait_for(lambda s: all(x in s for x in ("$ est", "[simulated]", "calls", "rollouts")))
    # Each pane is waited on until everything it must show is drawn: a pane is mounted before
    # its table is filled, so waiting on its title alone races the rest of the frame.
    expect = {
        "2": ("leak", "frozen", "suite fixtures", " train "),
        "3": ("result", "fail", "pass", "/r0"),
        "4": ("Funnel",),
        "5": ("Train:", "not run yet"),
        "6": ("decision:", "not run yet"),
        "7": ("chain: ok",),
    }
    for key, texts in expect.items():
        t.keys(key)
        t.wait_for(lambda s, texts=texts: all(x in s for x in texts))
    t.keys("/")
    t.type("type:call.completed")
    t.keys("Escape")
    screen = t.wait_for(lambda s: s.count("call.completed") >= 5)
    t.keys("1")
    t.wait_for("$ est")
    t.keys("q")
    end = time.monotonic() + 10
    while not t.dead() and time.monotonic() < end:
        time.sleep(0.2)
    assert t.dead()
    assert "Traceback" not in t.capture()


def test_question_mark_on_each_pane_lists_every_key_at_80x24_and_esc_closes(demo_db, term):
    """`?` on each pane: every binding of that pane, hidden ones too, with the console's own
    (down to the last row, `tab`), all on one 80x24 screen; Escape closes it."""
    from dpo_tui.tui.app import STAGES

    t = term("--db", str(demo_db), cwd=demo_db.parent)
    t.wait_for(lambda s: "$ est" in s and "[simulated]" in s)
    for i, (key, label, pane) in enumerate(STAGES, start=1):
        t.keys(str(i))
        t.wait_for(lambda s, label=label: f"{label.split()[1]} pane" not in s and "esc or ? closes" not in s)
        t.keys("?")
        wanted = [b.tooltip or b.description for b in pane.BINDINGS]
        screen = t.wait_for(lambda s, key=key: f"{key.capitalize()} pane" in s and "next control in the pane" in s)
        flat = " ".join(screen.split())
        missing = [w for w in wanted if " ".join(w.split()) not in flat]
        assert not missing, f"{key}: {missing} not listed:\n{screen}"
        assert "esc or ? closes" in flat and "switch stage" in flat
        t.keys("Escape")
        t.wait_for(lambda s: "esc or ? closes" not in s)


def test_escape_out_of_an_input_then_a_digit_switches_panes(demo_db, term):
    """A digit typed in the Budget's roll/task input is text; after Escape the pane's keys
    are back (the footer shows them) and a digit switches panes."""
    t = term("--db", str(demo_db), cwd=demo_db.parent)
    t.wait_for(lambda s: "$ est" in s and "c Set cap" in s.splitlines()[-1])
    t.keys("Tab")  # the first input, iters: its footer has only what works in a text field
    t.wait_for(lambda s: "c Set cap" not in s.splitlines()[-1])
    t.type("5")
    t.wait_for(lambda s: re.search(r"iters 5 ", s) and "$ est" in s)  # text in the field, still on Budget
    t.keys("Escape")
    t.wait_for(lambda s: "c Set cap" in s.splitlines()[-1])  # the pane's keys are back
    t.keys("2")
    t.wait_for(lambda s: "Approve" in s.splitlines()[-1] and "leak" in s)


def test_approve_split_and_start_rollouts_by_keys_then_the_log_shows_the_operator(split_db, term):
    t = term("--db", str(split_db), cwd=split_db.parent)
    t.wait_for("$ est")
    t.keys("2", "A")
    t.wait_for("Approve the split?")
    t.keys("y")
    t.wait_for("split:frozen")
    t.keys("3", "r")
    screen = t.wait_for("Run the pilot?")
    assert "12 rollouts, estimated $" in screen  # 8, one per task, and the second of 4
    t.keys("y")
    t.wait_for("pilot: waiting", timeout=90)  # the pilot ran; the rest waits for the operator's go
    t.keys("r")
    screen = t.wait_for("Start the rollouts?")
    assert "calibrated by the pilot" in screen and "cap" in screen
    t.keys("y")
    t.wait_for(lambda s: (count(r"rollouts (\d+)/\d+", s) or 0) > 8, timeout=90)
    t.keys("q")  # work is running: it asks first
    t.wait_for("Quit while work is running?")
    t.keys("n")
    t.wait_for(lambda s: "Quit while work is running?" not in s)  # the dialog is gone: keys reach the panes again
    t.keys("7")
    t.wait_for("chain:")  # the Log pane is up before its filter is focused
    def typed(s: str) -> bool:  # the field holds exactly the filter: no placeholder, no stray '/'
        return "filter: type:call.completed" not in s and any(
            line.strip() == "actor:operator" for line in s.splitlines())

    def footer(s: str) -> str:
        return s.splitlines()[-1] if s.strip() else ""

    # every key waits for what the screen shows it did: the Log pane's keys in the footer before
    # `/`; the footer reduced to a text field's keys before typing (a key never beats the focus)
    t.wait_for(lambda s: "/ Filter" in footer(s) and "v Verify chain" in footer(s))
    t.keys("/")
    t.wait_for(lambda s: "v Verify chain" not in footer(s))
    t.keys("C-u")
    t.type("actor:operator")
    t.wait_for(typed, timeout=60)
    t.keys("Escape")
    t.wait_for(lambda s: "v Verify chain" in footer(s))
    screen = t.wait_for("decision.recorded", timeout=120)
    assert "split.approved" in screen
    t.keys("q")
    if not t.dead():
        screen = t.wait_for(lambda s: "Quit while work is running?" in s or t.dead())
        if "Quit while work is running?" in screen:
            t.keys("y")
    end = time.monotonic() + 30
    while not t.dead() and time.monotonic() < end:
        time.sleep(0.2)
    assert t.dead() and "Traceback" not in t.capture()
    out = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "events", "--db", str(split_db), "--jsonl"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [json.loads(line) for line in out.splitlines()]
    mine = [(e["type"], e["payload"].get("decision")) for e in events if e["actor"].startswith("operator:")]
    assert ("split.approved", None) in mine
    assert ("decision.recorded", "run_pilot") in mine and ("decision.recorded", "approve_rollouts") in mine
    assert sum(e["type"] == "rollout.finished" for e in events) > 8
    audit = subprocess.run([sys.executable, "-m", "dpo_tui.cli", "audit", "--db", str(split_db)],
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_readonly_follows_a_headless_run(split_db, term, tmp_path):
    run = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(demo_plan_path()),
                            "--db", str(split_db), "--yes", "--until", "rollouts"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = term("--db", str(split_db), "--readonly", cwd=tmp_path)
        t.wait_for("[read-only]")
        t.keys("3")
        first = t.wait_for(lambda s: (count(r"rollouts (\d+)/\d+", s) or 0) >= 1, timeout=90)
        n1 = count(r"rollouts (\d+)/\d+", first)
        second = t.wait_for(lambda s: (count(r"rollouts (\d+)/\d+", s) or 0) > n1, timeout=90)
        assert count(r"rollouts (\d+)/\d+", second) > n1
        assert count(r"roll:(?:pilot )?(\d+)/\d+", second) is not None
    finally:
        run.kill()
        run.wait(timeout=30)


def test_header_and_body_progress_agree_during_a_run(split_db, term, tmp_path):
    """A headless run followed read-only: the header's `roll:` and the Rollouts line show the
    same finished/planned (the plan's 12-rollout pilot, then 52) in one frame, mid-run."""

    run = subprocess.Popen([sys.executable, "-m", "dpo_tui.cli", "run", "--plan", str(demo_plan_path()),
                            "--db", str(split_db), "--yes", "--until", "rollouts"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def agree(s: str) -> bool:
        head = re.search(r"roll:((?:pilot )?\d+/\d+)", s)
        body = re.search(r"(?m)^ ?((?:pilot|rollouts) \d+/\d+) \(", s)
        if not head or not body:
            return False
        h, b = head.group(1), body.group(1).removeprefix("rollouts ")
        n, planned = map(int, h.removeprefix("pilot ").split("/"))
        return h == b and planned == (12 if h.startswith("pilot") else 52) and 0 < n < planned

    try:
        t = term("--db", str(split_db), "--readonly", cwd=tmp_path)
        t.wait_for("[read-only]")
        t.keys("3")
        t.wait_for(agree, timeout=120)
    finally:
        run.kill()
        run.wait(timeout=30)


def test_dpo_tui_alone_opens_the_campaign_here_or_a_start_screen(demo_db, tmp_path):
    alone = [sys.executable, "-m", "dpo_tui.cli"]
    t = Tmux(alone, cwd=demo_db.parent)
    try:
        t.wait_for("$ est")
        t.keys("2")
        t.wait_for("frozen")
    finally:
        t.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    t = Tmux(alone, cwd=empty)
    try:
        screen = t.wait_for("no campaign (*.db)")
        assert "dpo-tui demo --db demo.db" in screen
        t.keys("q")
    finally:
        t.close()
    # without a terminal: help on stderr, exit 2 (scripts never hang on a full-screen app)
    res = subprocess.run(alone, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "usage: dpo-tui" in res.stderr and "tui" in res.stderr


def test_a_second_writer_is_refused_with_a_pointer_to_readonly(split_db):
    from pathlib import Path

    from dpo_tui.campaign.runner import campaign_lock

    with campaign_lock(Path(split_db)):
        t = Tmux([*TUI, "--db", str(split_db)], cwd=split_db.parent)
        try:
            # the refusal wraps at 80 columns, where its words fall depends on the path's length
            screen = t.wait_for(lambda s: "run is writing this campaign" in s.replace("\n", "")
                                and "--readonly" in s.replace("\n", ""))
            assert "Traceback" not in screen
        finally:
            t.close()


@pytest.mark.parametrize("colorterm, escape", [("truecolor", "38;2;"), ("", "38;5;")])
def test_true_colour_or_256_colours_and_resizing(demo_db, colorterm, escape):
    """In true colour when the terminal says so (COLORTERM), 256 colours otherwise; every
    resize redraws the whole layout (header, tabs, pane, footer) at the new size."""
    t = Tmux([*TUI, "--db", str(demo_db), "--readonly"], cwd=demo_db.parent, env={"COLORTERM": colorterm})
    try:
        # the power line is in (its simulation runs in a thread of its own, seconds under load)
        t.wait_for(lambda s: "$ est" in s and "power (" in s, timeout=180)
        painted = t._tmux("capture-pane", "-p", "-e", "-t", "t")  # with the colour escapes
        assert escape in painted and ("38;5;" if escape == "38;2;" else "38;2;") not in painted
        for width, height in ((120, 40), (80, 24), (100, 30)):
            t._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))
            screen = t.wait_for(lambda s, w=width, h=height: len(s.splitlines()) == h and "q Quit" in s.splitlines()[-1]
                                and "split:frozen" in s and "$ est" in s and "7 Log" in s)
            assert max(len(line) for line in screen.splitlines()) <= width
            assert "total" in screen  # the estimate table's last row: nothing cut at any size
    finally:
        t.close()


def test_the_pairs_list_shows_at_least_8_pairs_at_120x40(demo_db, tmp_path):
    """In a real 120x40 terminal the Pairs table takes its share of the height: 8 pairs or more,
    each named as `task rN>rM`, with the chosen/rejected diff below."""
    import re

    t = Tmux([*TUI, "--db", str(demo_db), "--readonly"], cwd=tmp_path, width=120, height=40)
    try:
        t.wait_for("$ est")
        t.keys("4")
        rows = re.compile(r"(?m)^ \w+ r\d+>r\d+ ")
        screen = t.wait_for(lambda s: len(rows.findall(s)) >= 8 and "rejected" in s)
        assert len(rows.findall(screen)) >= 8
    finally:
        t.close()
