"""Bad inputs, fuzzed (hypothesis, bounded so the default run stays fast): the plan file,
the JSONL suite format, model replies, malformed simulator replies (up to always: a clean
give-up), and event payloads of older schema versions. Every input gets a clear one-line
error or a handled path, never another exception. The last test prints how many inputs each
class tried. (The soak, tests/hardening/test_fault_soak.py, runs malformed replies end to end.)"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.errors import DpoTuiError, InputError
from dpo_tui.events.audit import audit
from dpo_tui.events.chain import canonical_json, event_hash
from dpo_tui.events.fold import fold
from dpo_tui.events.store import create_campaign, format_ts, open_store, utc_now
from dpo_tui.events.types import Payload, event_type, upcaster
from dpo_tui.tasks.agent import extract_program
from dpo_tui.tasks.suites import load_jsonl

TRIED: Counter = Counter()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
DEMO = demo_plan_path().read_text()
DEMO_LINES = DEMO.splitlines()


def one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text.strip(), f"not one line: {text!r}"


# -- the plan file ------------------------------------------------------------------------

VALUES = st.sampled_from(['""', "-1", "0", "1e308", "nan", "true", "[]", "{}", '"x"', "[1, \"a\"]", "2.5",
                          '"Qwen/Nope"', "99999999999999999999", '"../../etc/passwd"', "inf", '"\\u0000"'])


@st.composite
def mutated_plan(draw) -> str:
    lines = list(DEMO_LINES)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "delete", "dup", "garbage", "truncate", "section"]))
        if kind == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(VALUES)
        elif kind == "delete":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "garbage":
            lines.insert(i, draw(st.text(max_size=30)))
        elif kind == "truncate":
            lines = lines[:i]
        else:
            lines.insert(i, "[" + draw(st.sampled_from(["campaign", "nosuch", "budget.prices", "decisions"])) + "]")
    return "\n".join(lines)


@FAST
@given(text=mutated_plan())
def test_plan_mutations_give_one_line_input_errors(tmp_path_factory, text):
    TRIED["plan"] += 1
    p = tmp_path_factory.mktemp("plan") / "plan.toml"
    p.write_text(text, encoding="utf-8")
    try:
        load_plan(p)
    except InputError as exc:
        one_line(exc)
        assert str(p) in str(exc) or "plan" in str(exc), str(exc)


@FAST
@given(data=st.binary(max_size=200))
def test_plan_files_of_random_bytes_give_one_line_input_errors(tmp_path_factory, data):
    TRIED["plan"] += 1
    p = tmp_path_factory.mktemp("plan") / "plan.toml"
    p.write_bytes(data)
    try:
        load_plan(p)
    except InputError as exc:
        one_line(exc)


# -- the JSONL suite format -------------------------------------------------------------

GOOD_ROW = {"id": "t1", "description": "add one", "buggy_program": "def f(x):\n    return x\n",
            "test_code": "def test_f():\n    assert f(1) == 2\n"}
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=5)


@st.composite
def jsonl_file(draw) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        row = dict(GOOD_ROW, id=draw(st.sampled_from(["t1", "t2", "t3", "", "a/b"])))
        for key in draw(st.lists(st.sampled_from(sorted(GOOD_ROW) + ["fixed_program", "name", "extra"]), max_size=2)):
            if draw(st.booleans()):
                row.pop(key, None)
            else:
                row[key] = draw(JSON_VALUES)
        rows.append(json.dumps(row))
    if draw(st.booleans()):
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(["{", "[]", "null", "not json", "\"s\""])))
    data = "\n".join(rows).encode()
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return data


@FAST
@given(data=jsonl_file())
def test_jsonl_suites_load_or_give_one_line_input_errors(tmp_path_factory, data):
    TRIED["jsonl suite"] += 1
    p = tmp_path_factory.mktemp("suite") / "suite.jsonl"
    p.write_bytes(data)
    try:
        tasks = load_jsonl(p)
    except InputError as exc:
        one_line(exc)
        assert str(p) in str(exc), str(exc)
    else:
        assert tasks and all(t.buggy_program for t in tasks)


# -- model replies ----------------------------------------------------------------------

FENCE = "```"
REPLY_PARTS = st.sampled_from([FENCE + "python\ndef f(x):\n    return x + 1\n" + FENCE, FENCE + "\nx = 1\n" + FENCE,
                               FENCE + "js\nlet a\n" + FENCE, FENCE + "python\n", "Here is the fix:", "\x00\x01\x02",
                               "\ud800", "def g():\n    pass\n", "```", "\n" * 5, "é" * 10, FENCE + "python\n\n" + FENCE])


@st.composite
def replies(draw) -> str | None:
    kind = draw(st.sampled_from(["parts", "text", "huge", "binary", "none"]))
    if kind == "parts":
        return "\n".join(draw(st.lists(REPLY_PARTS, max_size=6)))
    if kind == "text":
        return draw(st.text(max_size=300))
    if kind == "huge":
        return FENCE + "python\n" + "x = 1\n" * draw(st.integers(10_000, 200_000)) + FENCE
    if kind == "binary":  # invalid UTF-8 decoded leniently, as a transport would
        return draw(st.binary(min_size=1, max_size=300)).decode("utf-8", errors="surrogateescape")
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(reply=replies())
def test_model_replies_of_any_shape_give_a_program_or_a_stated_problem(reply):
    TRIED["model reply"] += 1
    result = extract_program(reply)
    if result.program is None:
        assert result.problem, f"no program and no reason for {reply!r:.80}"
    else:
        assert result.program.strip() and len(result.program) <= len(reply or "")
        result.program.encode("utf-8")  # what reaches the sandbox and the log is valid text


# -- event payloads of older schema versions ---------------------------------------------


@event_type("hardening.renamed", version=3)
class Renamed(Payload):
    full_name: str
    tags: list[str]


@upcaster("hardening.renamed", from_version=1)
def _v1(payload: dict) -> dict:  # written the way upcasters are: trusting the old shape
    return {"full_name": payload["name"], "tag": payload.get("tag", "")}


@upcaster("hardening.renamed", from_version=2)
def _v2(payload: dict) -> dict:
    return {"full_name": payload["full_name"], "tags": [payload["tag"]] if payload["tag"] else []}


def _raw_append(path: Path, type_: str, version: int, payload: object) -> None:
    conn = sqlite3.connect(path)
    seq, prev = conn.execute("SELECT seq, hash FROM event ORDER BY seq DESC LIMIT 1").fetchone()
    cid = conn.execute("SELECT campaign_id FROM event WHERE seq = 1").fetchone()[0]
    ts, text = format_ts(utc_now()), canonical_json(payload)
    digest = event_hash(prev, seq + 1, cid, type_, version, "system", ts, text)
    conn.execute("INSERT INTO event VALUES (?,?,?,?,?,?,?,?,?)", (seq + 1, cid, type_, version, "system", ts, text,
                                                                  prev, digest))
    conn.commit()
    conn.close()


_TEMPLATE: list[Path] = []


def _template(factory) -> Path:
    """One empty campaign (migrations take a while), copied for each example."""
    if not _TEMPLATE:
        db = factory.mktemp("template") / "c.db"
        with create_campaign(db, name="upcast", actor="operator:t") as store:
            store.checkpoint()
        _TEMPLATE.append(db)
    return _TEMPLATE[0]


OLD_PAYLOADS = st.one_of(st.fixed_dictionaries({"name": st.text(max_size=10)}),
                         st.fixed_dictionaries({"name": st.text(max_size=5), "tag": st.text(max_size=5)}),
                         st.dictionaries(st.sampled_from(["name", "tag", "full_name", "x"]), JSON_VALUES, max_size=3))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(rows=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 0]), OLD_PAYLOADS), min_size=1, max_size=3))
def test_older_schema_payloads_upcast_or_are_reported_never_a_crash(tmp_path_factory, rows):
    TRIED["older event payload"] += len(rows)
    db = tmp_path_factory.mktemp("up") / "c.db"
    shutil.copy(_template(tmp_path_factory), db)
    for version, payload in rows:
        _raw_append(db, "hardening.renamed", version, payload)
    with open_store(db, readonly=True) as store:
        report = audit(store)  # never raises: every bad row is a problem with its seq
        assert report.events == 1 + len(rows)
        if report.ok:
            state = fold(store.read())
            assert state.events == 1 + len(rows)
        else:
            assert all(p.seq and p.seq >= 2 for p in report.problems), report.problems
            try:
                fold(store.read())
            except DpoTuiError as exc:  # replay stops at the bad row with one line
                one_line(exc)


# -- simulator replies: malformed bodies, at rates up to always ---------------------------


def test_malformed_simulator_replies_are_logged_retried_or_given_up_never_a_traceback(tmp_path):
    from dpo_tui.provider.provider import CallGaveUp, CallKey
    from dpo_tui.sim.server import SimServer
    from tests.provider.conftest import MODEL, events_of, fast_settings, make_provider, prompt

    outcomes: Counter = Counter()
    with SimServer(seed=3) as sim:
        for rate in (0.2, 0.6, 1.0):
            sim.set_faults(f"malformed={rate}")
            campaign, provider = make_provider(tmp_path / f"m{rate}.db", fast_settings(sim.base_url, max_attempts=4))

            async def one(i: int):
                try:
                    return await provider.chat(CallKey(f"fuzz/{rate}/{i}"), stage="rollouts", model=MODEL,
                                               messages=prompt(i), seed=i, max_tokens=32)
                except CallGaveUp as exc:
                    return exc

            results = _gather(one, 12)
            TRIED["simulator reply"] += 12
            gave_up = [r for r in results if isinstance(r, CallGaveUp)]
            outcomes["given up"] += len(gave_up)
            outcomes["completed"] += len(results) - len(gave_up)
            attempts = events_of(campaign, "call.attempt_failed")
            assert {e.payload["error"] for e in attempts} <= {"JSONDecodeError"}, attempts[:1]
            assert len(events_of(campaign, "call.failed")) == len(gave_up)
            if rate == 1.0:
                assert len(gave_up) == 12 and len(attempts) == 12 * 4, "always malformed: every call gives up after 4"
            with open_store(tmp_path / f"m{rate}.db", readonly=True) as store:
                assert audit(store).ok
            campaign.close()
    print(f"\nmalformed simulator replies: {dict(outcomes)}")


def _gather(one, n: int):
    import asyncio

    async def run():
        return await asyncio.gather(*(one(i) for i in range(n)))

    return asyncio.run(run())


def test_zz_inputs_tried_per_class():
    print("\ninputs tried per class: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())))
    assert sum(TRIED.values()) >= 100, TRIED
