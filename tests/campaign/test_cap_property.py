"""A property test over random sequences of operator actions on a real campaign file: the
operator sets caps, the plan's own cap is edited and the plan rerun, endpoints bill minute
by minute under the meter (stopped when it says so). After every step: spend never exceeds
the cap in force, and the cap in force is the operator's latest unless the plan's value
changed after it. A cap is refused only below what is spent or committed (a running
endpoint's next minute: lowered under it mid-minute, the minute would start before the meter
could stop the endpoint; hypothesis found that sequence, kept below as an example)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dpo_tui.campaign.cap import EndpointMeter, committed_usd
from dpo_tui.campaign.plan import demo_plan_path, load_plan
from dpo_tui.campaign.runner import apply_plan_cap, record_plan
from dpo_tui.errors import InputError
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import format_ts
from dpo_tui.provider.provider import set_cap

PLAN = load_plan(demo_plan_path())
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

usd = st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
action = st.one_of(st.tuples(st.just("operator_cap"), usd), st.tuples(st.just("plan_cap"), usd),
                   st.tuples(st.just("rerun"), st.none()), st.tuples(st.just("endpoint"), st.integers(1, 4)),
                   st.tuples(st.just("minutes"), st.integers(1, 5)))


class Model:
    """What the cap in force should be, written independently of the product's rule."""

    def __init__(self) -> None:
        self.cap, self.by_operator, self.plan_at_operator_cap, self.plan_seen = None, False, None, None

    def plan_recorded(self, value: float) -> None:
        if self.by_operator and self.plan_at_operator_cap is None:
            self.plan_at_operator_cap = value  # init, cap, then run --plan: not a change
        self.plan_seen = value

    def run(self, value: float) -> None:
        if self.cap is None or (not self.by_operator and value != self.cap) or (
                self.by_operator and self.plan_at_operator_cap is not None and value != self.plan_at_operator_cap):
            self.cap, self.by_operator = value, False

    def operator(self, value: float) -> None:
        self.cap, self.by_operator, self.plan_at_operator_cap = value, True, self.plan_seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=14))
@example([("operator_cap", 0.3), ("endpoint", 2), ("minutes", 1), ("minutes", 2), ("operator_cap", 0.2),
          ("minutes", 1)])
def test_spend_stays_within_the_cap_in_force_and_the_cap_follows_the_one_rule(actions):
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.db"
        model, plan_cap, now, n_endpoints = Model(), PLAN.budget.cap_usd, [T0], 0
        with Campaign.create(db, name="property", actor="operator:alice") as c:
            meter = EndpointMeter(c, clock=lambda: now[0])

            def plan_with(value: float):
                return PLAN.model_copy(update={"budget": PLAN.budget.model_copy(update={"cap_usd": value})})

            for kind, arg in actions:
                committed = committed_usd(c)["total"]  # spend, calls in flight, running endpoints' next minute
                if kind == "operator_cap":
                    try:
                        set_cap(c, arg, reason="property", actor="operator:alice")
                        model.operator(arg)
                    except InputError:
                        assert arg < committed  # only a cap below what is spent or committed is refused
                elif kind in ("plan_cap", "rerun"):
                    plan_cap = arg if kind == "plan_cap" else plan_cap
                    before = c.state.part("plan").hash
                    record_plan(c, plan_with(plan_cap), demo_plan_path())
                    if c.state.part("plan").hash != before:
                        model.plan_recorded(plan_cap)
                    try:
                        apply_plan_cap(c, plan_with(plan_cap))
                        model.run(plan_cap)
                    except InputError:
                        assert plan_cap < committed
                elif (kind == "endpoint" and c.state.part("budget_guard").cap_usd is not None
                      and meter.start_refusal(336 * arg) is None):  # the eval starts one only when it fits
                    n_endpoints += 1
                    c.append("endpoint.started", {
                        "run_id": "run-1", "role": "base", "endpoint_id": f"e{n_endpoints}",
                        "deployment_id": f"d{n_endpoints}", "name": f"e{n_endpoints}", "model": "m",
                        "chat_model": f"p/e{n_endpoints}/d1", "instance": "h100", "price_cents_per_hour": 336 * arg,
                        "started_at": format_ts(now[0])}, actor="system")
                    if meter.tick() is not None:  # its first minute would not fit: stop it at once
                        _stop_all(c, meter, now[0])
                elif kind == "minutes":
                    for _ in range(arg):
                        now[0] += timedelta(seconds=20)
                        if meter.tick() is not None:
                            _stop_all(c, meter, now[0])
                guard = c.state.part("budget_guard").cap_usd
                assert guard == model.cap
                assert c.state.part("budget").cap_usd == model.cap
                if guard is not None:
                    assert c.state.part("spend").total_usd <= guard + 1e-9


def _stop_all(c: Campaign, meter: EndpointMeter, at: datetime) -> None:
    """Stop what runs, as serving.stop does, billing the minutes the meter booked (the stop
    happens within the minute the meter left for it)."""
    for ep in meter.running():
        c.append("endpoint.stopped", {"endpoint_id": ep["endpoint_id"], "stopped_at": format_ts(at),
                                      "minutes": ep.get("billed_minutes", 1), "cost_usd": ep.get("billed_usd", 0.0),
                                      "reason": "the budget cap"}, actor="system")
