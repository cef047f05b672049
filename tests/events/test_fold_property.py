"""Property: folding events as they are appended equals replaying the stored log; the chain
verifies; editing any stored payload is caught by audit at exactly that seq."""

from __future__ import annotations

import sqlite3
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpo_tui.events.audit import audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.fold import fold
from dpo_tui.events.store import NewEvent, open_store

actors = st.sampled_from(["system", "plan", "operator:alice", "operator:bob.b"])
texts = st.text(min_size=1, max_size=40)
notes = st.builds(lambda a, t, s: NewEvent("note.added", {"text": t, "stage": s}, a),
                  actors, texts, st.sampled_from([None, "budget", "split", "eval"]))
batches = st.lists(st.lists(notes, min_size=1, max_size=6), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches, data=st.data())
def test_live_fold_equals_replay_and_tampering_is_caught_at_its_seq(tmp_path, batches, data):
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    with Campaign.create(path, name="prop", actor="operator:alice") as live:
        for batch in batches:
            live.append_batch(batch)
        live_json = live.state.to_json()

    with open_store(path, readonly=True) as store:
        replayed = fold(store.read(verify=True))
        assert replayed.to_json() == live_json
        assert replayed.events == 1 + sum(len(b) for b in batches)
        report = audit(store)
        assert report.ok, report.problems

    victim = data.draw(st.integers(min_value=1, max_value=replayed.events), label="tampered seq")
    new_payload = data.draw(st.sampled_from(['{}', '{"text":"forged"}', '{"text": "x"}']), label="payload")
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER event_no_update")
    conn.execute("UPDATE event SET payload = ? WHERE seq = ?", (new_payload, victim))
    conn.commit()
    conn.close()
    with open_store(path, readonly=True) as store:
        report = audit(store)
    assert not report.ok
    assert report.first_bad_seq == victim
    assert {p.rule for p in report.problems if p.seq == victim} >= {"hash"}
    assert any(p.rule == "append-only" for p in report.problems)
