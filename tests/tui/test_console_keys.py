"""Issue 19: every key discoverable (`?`/F1 per pane, the palette with keys), a history of
everything the console said (`N`) whose toasts never cover a dialog, a log filter that
means what it says, and a read-only console that offers nothing that writes."""

from __future__ import annotations

import pytest

from dpo_tui.tui.screens.log import LogFilter
from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio

PANES = "1234567"


async def test_question_mark_lists_every_key_of_each_pane_at_80x24_and_escape_or_question_mark_closes(demo_db):
    from dpo_tui.tui.app import STAGES
    from dpo_tui.tui.screens.keys import KeysScreen

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        for digit, (stage, _label, cls) in zip(PANES, STAGES, strict=True):
            await pilot.press(digit)
            await pilot.press("question_mark" if digit != "4" else "f1")
            await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen))
            text = screen_text(app)
            for b in cls.BINDINGS:  # every one, the footer's hidden ones too (P, b)
                keys = " / ".join(app.get_key_display(b.with_key(k)) for k in b.key.split(","))  # `+ / =`
                assert f"{keys}  {b.tooltip or b.description}" in text, (stage, b.key, text)
            for must in ("1-7  switch stage", "q  Quit", "N  Notices", "ctrl+p  command palette"):
                assert must in text, (stage, must)
            assert "(esc or ? closes)" in text.splitlines()[0] or "(esc or ? closes)" in text
            await pilot.press("escape" if digit in "135" else "question_mark")
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
            assert app.active_stage == stage  # the digit pressed before it still holds


async def test_the_palette_offers_actions_in_words_with_their_keys(demo_db):
    from dpo_tui.tui.commands import ACTIONS, action_keys

    app = make_app(demo_db)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        keys = action_keys(app)
        missing = [title for title, action, _ in ACTIONS if not keys.get(action)]
        assert missing == []  # every palette entry has a key: nothing only the palette reaches
        assert all("." not in help_.split()[0] for _, _, help_ in ACTIONS)  # no event names as help
        assert keys["pair_decision('reject')"] == "Pairs x" and keys["show_stage('log')"] == "7"
        await pilot.press("ctrl+p")
        await pilot.press(*"reject")
        await wait_for(pilot, lambda: "[key: Pairs x]" in screen_text(app))


async def test_notices_are_kept_with_time_and_severity_and_a_toast_waits_for_the_dialog_to_close(demo_db):
    from dpo_tui.tui.screens.keys import NoticesScreen

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("1", "c")  # the cap dialog
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0])
        app.notify("the pilot finished while you typed", severity="warning")
        await pilot.pause()
        assert not app._notifications  # held: it would cover the dialog's buttons
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        await wait_for(pilot, lambda: "the pilot finished while you typed" in screen_text(app))  # now shown
        app.clear_notifications()
        app.notify("an error to keep", severity="error")
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        body = str(app.screen.query_one("#notices-body").render())
        lines = [ln for ln in body.splitlines() if "while you typed" in ln or "an error to keep" in ln]
        assert len(lines) == 2 and "warning" in lines[0] and "error" in lines[1]
        assert all(ln[:8].count(":") == 2 for ln in lines)  # HH:MM:SS first
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])


def test_log_filter_type_is_a_prefix_stage_is_the_events_and_an_unknown_key_is_an_error():
    f = LogFilter.parse("type:decision")
    assert f.match("decision.recorded", "plan", '{"stage":"split"}')
    assert f.match("decision.gate_overridden", "operator:x", "{}") and not f.match("call.completed", "system", "{}")
    s = LogFilter.parse("stage:split")
    assert s.match("split.approved", "plan", '{"split_sha256":"ab"}')  # by its type
    assert s.match("decision.recorded", "plan", '{"stage":"split"}')  # by its payload
    assert not s.match("call.completed", "system", '{"stage":"rollouts"}')
    assert LogFilter.parse("stage:eval").match("endpoint.billed", "system", '{"minutes":1}')
    bad = LogFilter.parse("typ:call")
    assert bad.error.startswith("unknown filter key 'typ:'") and "type:" in bad.error
    assert not bad.match("call.completed", "system", "{}")
    assert LogFilter.parse("actor:").error.startswith("'actor:' needs a value")
    assert LogFilter.parse("text:r0/1 mean").text == "r0/1 mean"


async def test_the_log_filter_shows_its_error_and_the_placeholders_own_example_matches(demo_db):
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("slash", *"stage:split")
        await wait_for(pilot, lambda: "split.approved" in screen_text(app) and "filtering" not in screen_text(app))
        assert "call.completed" not in screen_text(app)
        app.pane("log").query_one("#log-filter").value = ""
        await pilot.press(*"kind:x")
        await wait_for(pilot, lambda: "filter: unknown filter key 'kind:'" in screen_text(app))
        app.pane("log").query_one("#log-filter").value = ""
        await pilot.press(*"type:decision")
        await wait_for(pilot, lambda: "decision.recorded" in screen_text(app) and "match," in screen_text(app))


async def test_read_only_offers_no_writing_label_or_button(demo_db):
    app = make_app(demo_db, readonly=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "[read-only]" in text and "cap $" in text
        assert "(c sets)" not in text and "Pilot / rollouts" not in text and "ctrl+r records" not in text


def test_free_text_is_filtered_in_sqlite_and_matches_what_the_pane_matches(demo_db):
    """The Log pane's free text goes to the store as a pre-filter (a million payloads are not
    lower-cased in Python): the rows it keeps are exactly the ones the pane's own match keeps."""
    from dpo_tui.events.store import open_store

    flt = LogFilter.parse("APPROVE_split")
    with open_store(demo_db, readonly=True) as store:
        every = [(r[0], r[2], r[4], r[6]) for r in store.rows()]
        kept = [r[0] for r in store.rows(text=flt.text)]
        typed = [r[0] for r in store.rows(type_prefixes=["decision."], text="approve_split")]
    want = [seq for seq, type_, actor, text in every if flt.match(type_, actor, text)]
    assert kept == want and len(want) >= 1
    assert set(typed) <= set(want) and typed


@pytest.mark.parametrize("raw", ["%", "p_u", "\\", "a%c", "APPROVE_split", "zz_top%"])
def test_like_wildcards_in_free_text_are_literal_in_sqlite(demo_db, raw):
    """The store filters free text with LIKE (ASCII case ignored, as the pane's match): its %,
    _ and the escape character itself are matched as written, never as wildcards."""
    from dpo_tui.events.store import open_store

    flt = LogFilter.parse(f"text:{raw}")
    with open_store(demo_db, readonly=True) as store:
        every = [(r[0], r[2], r[4], r[6]) for r in store.rows()]
        kept = [r[0] for r in store.rows(text=flt.text)]
        counted = store.count(text=flt.text)
    want = [seq for seq, type_, actor, text in every if flt.match(type_, actor, text)]
    assert kept == want and counted == len(want)
    assert len(want) < len(every)


async def test_escape_leaves_an_input_the_panes_keys_and_footer_return_and_a_digit_switches(demo_db):
    """A digit typed in an input is text (it does not switch panes); Escape gives focus back
    to the pane (its footer and keys at once), and then a digit switches panes."""
    from textual.widgets import Input

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("1", "tab")
        await wait_for(pilot, lambda: isinstance(app.focused, Input))
        field = app.focused
        await pilot.press("5")
        await pilot.pause()
        assert app.active_stage == "budget" and field.value.endswith("5")  # text, not a pane switch
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.focused, Input))
        await wait_for(pilot, lambda: "Record estimate" in screen_text(app).splitlines()[-1])
        await pilot.press("5")
        await wait_for(pilot, lambda: app.active_stage == "train")
