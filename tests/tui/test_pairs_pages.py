"""Issue 20 (tables page instead of holding every row): the Pairs table holds one page of
built pairs; `]` and `[` page through all of them in the funnel's order, the funnel line says
which, and a decision on a later page changes that row in place on that page. The page is
shrunk here so the demo's pairs span several."""

from __future__ import annotations

import pytest

from dpo_tui.events.campaign import Campaign
from dpo_tui.tui.screens import pairs as pairs_screen
from tests.tui.conftest import ACTOR, events_of, make_app, settle, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio

PAGE = 10


def table_ids(app) -> list[str]:
    t = app.query_one("#pairs-table")
    return [t.coordinate_to_cell_key((i, 0)).row_key.value for i in range(t.row_count)]


async def test_the_pairs_table_pages_through_every_built_pair_and_decides_on_a_later_page(demo_db, monkeypatch):
    monkeypatch.setattr(pairs_screen, "PAGE", PAGE)
    with Campaign.open(demo_db, readonly=True) as c:
        every = [p["pair_id"] for p in c.state.part("pairs").built["pairs"]]
    assert len(every) > 2 * PAGE, "the demo should build pairs over three pages or more"
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: table_ids(app) == every[:PAGE])
        assert f"table: pairs 1-{PAGE} of {len(every)}" in screen_text(app)
        seen = []
        for _ in range(-(-len(every) // PAGE) + 1):  # one press past the last page stays on it
            seen.append(table_ids(app))
            await pilot.press("right_square_bracket")
            await pilot.pause()
        pages = [ids for i, ids in enumerate(seen) if i == 0 or ids != seen[i - 1]]
        assert [pid for page in pages for pid in page] == every
        last_first = (len(every) - 1) // PAGE * PAGE + 1
        assert f"table: pairs {last_first}-{len(every)} of {len(every)}" in screen_text(app)
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: table_ids(app) == every[last_first - 1 - PAGE:last_first - 1])
        target = every[last_first - 1 - PAGE + 2]  # on that page, not its first row
        table = app.query_one("#pairs-table")
        table.move_cursor(row=table.get_row_index(target))
        await pilot.pause()
        await pilot.press("x")
        await settle(pilot)
        assert table_ids(app) == every[last_first - 1 - PAGE:last_first - 1]  # still that page
        assert str(table.get_cell(target, "decision")) == "reject"
    decided = events_of(demo_db, "pairs.decided")
    assert [(e.payload["pair_id"], e.payload["decision"], e.actor) for e in decided] == [(target, "reject", ACTOR)]
